"""Liveness, readiness and metrics (no token needed)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from services.api.deps import ContextDep

router = APIRouter(tags=["health"])


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyChecks(BaseModel):
    postgres: bool
    kafka: bool


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: ReadyChecks


@router.get("/healthz", response_model=HealthOut)
async def healthz() -> Any:
    """The process is alive."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "PostgreSQL or Kafka is not reachable"}},
)
async def readyz(context: ContextDep, response: Response) -> Any:
    """PostgreSQL answers and Kafka is reachable."""
    checks: dict[str, bool] = {}
    try:
        checks["postgres"] = bool(await asyncio.wait_for(context.read_model.ping(), 2))
    except Exception:
        checks["postgres"] = False
    checks["kafka"] = await context.publisher.reachable()
    ready = all(checks.values())
    response.status_code = 200 if ready else 503
    return {"status": "ready" if ready else "not_ready", "checks": checks}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(context: ContextDep) -> Response:
    """Prometheus metrics (the gauges read from PostgreSQL at most 5 s old)."""
    await context.gauges.refresh_if_stale()
    return Response(generate_latest(context.metrics.registry), media_type=CONTENT_TYPE_LATEST)
