"""Held workers for the supervisor page: who is held, since when, and what was done."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import AfterValidator, BaseModel, Field

from services.api.auth import Principal, Role
from services.api.deps import ContextDep, require
from services.api.errors import ApiError
from services.api.models import DispositionView, Timestamp
from shared.contract import printable
from shared.domain.vocabulary import AlertKind, Stage, Travel

router = APIRouter(tags=["dispositions"])

Reader = Annotated[Principal, Depends(require(Role.GATE, Role.SUPERVISOR, Role.ADMIN))]


class OpenHealthAlertOut(BaseModel):
    kind: AlertKind
    raised_at: Timestamp


class HeldWorkerOut(BaseModel):
    worker_ref: str
    id_masked: str
    name: Annotated[str | None, Field(description="the manifest's name")]
    enterprise_id: str | None
    trip_id: str | None
    travel: Travel
    stage: Stage
    open_alerts: Annotated[
        list[OpenHealthAlertOut], Field(description="the open health alerts that hold them")
    ]
    dispositions: Annotated[
        list[DispositionView], Field(description="what was recorded since, in event time")
    ]
    held_since: Annotated[
        Timestamp | None, Field(description="when the earliest open health alert was raised")
    ]
    days_held: Annotated[
        int | None,
        Field(
            description="calendar days in RETURNLOOP_TIMEZONE from the day of held_since to "
            "today: 0 on the day the hold began, 1 the next day (not 24-hour units)"
        ),
    ]


class HeldOut(BaseModel):
    as_of: Timestamp
    count: int
    workers: Annotated[list[HeldWorkerOut], Field(description="longest held first")]


@router.get("/held", response_model=HeldOut)
async def list_held(
    context: ContextDep,
    principal: Reader,
    enterprise_id: Annotated[
        Annotated[str, AfterValidator(printable)] | None, Query(min_length=1, max_length=128)
    ] = None,
) -> Any:
    """Held workers with their open health alerts, dispositions and days held."""
    if principal.role is Role.GATE:
        if enterprise_id is not None and enterprise_id != principal.enterprise_id:
            raise ApiError(403, "forbidden", "a gate reads its own enterprise's workers only")
        enterprise_id = principal.enterprise_id
    now = datetime.now(UTC)
    workers = await context.held.held(
        zone=context.settings.zone,
        now=now,
        enterprise_id=enterprise_id,
        district=principal.district,
    )
    return {"as_of": now.isoformat(), "count": len(workers), "workers": workers}
