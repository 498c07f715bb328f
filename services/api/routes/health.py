"""Liveness, readiness and metrics (no token needed)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.api.deps import ContextDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(context: ContextDep, response: Response) -> dict[str, object]:
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


@router.get("/metrics")
async def metrics(context: ContextDep) -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(context.metrics.registry), media_type=CONTENT_TYPE_LATEST)
