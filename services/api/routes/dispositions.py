"""After a failed check: dispositions (contract v1.1), recorded as events of the worker."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field

from services.api.auth import Principal, Role
from services.api.deps import ContextDep, audit, require
from services.api.errors import ApiError
from services.api.routes.workers import WORKER_REF
from services.api.scope import may_read_worker
from shared import topics
from shared.contract import aware_in_range, printable
from shared.domain.model import Disposition
from shared.domain.vocabulary import DispositionKind
from shared.service_layer.messages import AcceptedDisposition

router = APIRouter(tags=["dispositions"])

Recorder = Annotated[Principal, Depends(require(Role.HEALTH_STATION, Role.SUPERVISOR, Role.ADMIN))]
# A disposition may be entered late (after a night shift), never ahead of the clock.
CLOCK_SKEW = timedelta(minutes=5)


class DispositionIn(BaseModel):
    kind: DispositionKind
    note: Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(printable)]
    at: Annotated[
        AwareDatetime | None,
        AfterValidator(lambda moment: aware_in_range(moment) if moment else moment),
        Field(description="when it happened (default: now); event time, as for scans"),
    ] = None


class DispositionOut(BaseModel):
    disposition_id: str
    kind: DispositionKind
    at: datetime
    by: str
    note: str


@router.post("/workers/{worker_ref}/dispositions", status_code=201, response_model=DispositionOut)
async def record_disposition(
    worker_ref: str, body: DispositionIn, context: ContextDep, principal: Recorder
) -> Any:
    """Record what happened after a failed check; the tracker folds it into the loop."""
    now = datetime.now(UTC)
    at = (body.at or now).astimezone(UTC)
    if at > now + CLOCK_SKEW:
        raise ApiError(422, "invalid_field", "at must not lie in the future")
    view = (
        await context.read_model.loop_view(worker_ref) if WORKER_REF.fullmatch(worker_ref) else None
    )
    # A district's supervisor records for its district's workers only; others' are not found.
    if view is None or not await may_read_worker(context, principal, view):
        raise ApiError(404, "not_found", "no such worker")
    disposition = Disposition(
        disposition_id="dsp_" + secrets.token_hex(12),
        kind=body.kind,
        at=at,
        by=principal.actor,
        note=body.note,
    )
    message = AcceptedDisposition(worker_ref, view["id_masked"], disposition, received_at=now)
    try:
        await context.publisher.publish(
            topics.DISPOSITIONS, [(message.key(), message.to_bytes(), None)]
        )
    except Exception as error:
        raise ApiError(503, "unavailable", "the event log is unavailable; retry") from error
    await audit(
        context,
        principal,
        action="disposition",
        worker_ref=worker_ref,
        detail=f"{body.kind.value} at {at.isoformat()}: {body.note}",
    )
    return {
        "disposition_id": disposition.disposition_id,
        "kind": disposition.kind,
        "at": disposition.at,
        "by": disposition.by,
        "note": disposition.note,
    }
