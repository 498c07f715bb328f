"""The factory gate's decision: it decides, it does not record (the gate then posts checkin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import AfterValidator, BaseModel, Field, model_validator

from services.api.auth import Principal, Role
from services.api.deps import ContextDep, audit, require
from services.api.errors import ApiError
from services.api.models import LoopView
from services.api.scope import may_read_worker
from services.api.workers_by_code import Code, find_worker
from shared.contract import printable
from shared.domain.gate import GateFacts, decide_gate
from shared.domain.vocabulary import AlertKind, HealthCode

router = APIRouter(tags=["gate"])

Text = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(printable)]


class GateIn(BaseModel):
    code: Code | None = None
    id_number: Text | None = None
    enterprise_id: Text

    @model_validator(mode="after")
    def _one_identifier(self) -> GateIn:
        if (self.code is None) == (self.id_number is None):
            raise ValueError("give exactly one of code or id_number")
        return self


class GateDecisionOut(BaseModel):
    allow: bool
    reasons: list[str]
    loop: LoopView


def facts_from(view: dict[str, Any]) -> GateFacts:
    arrival = view["checkpoints"].get("arrival_check")
    return GateFacts(
        manifest_enterprise_id=view["enterprise_id"],
        arrival_check_passed=None if arrival is None else bool(arrival["passed"]),
        health_code=HealthCode(view["health_code"]) if view["health_code"] else None,
        open_alerts=frozenset(AlertKind(a["kind"]) for a in view["alerts"] if a["open"]),
    )


def _for_another_enterprise(view: dict[str, Any]) -> dict[str, Any]:
    # A gate sees what it needs to turn the worker away, not another employer's record.
    return {**view, "trip_id": None, "checkpoints": {}, "alerts": []}


@router.post("/gate/decision", response_model=GateDecisionOut)
async def gate_decision(
    body: GateIn,
    context: ContextDep,
    principal: Annotated[Principal, Depends(require(Role.GATE, Role.SUPERVISOR, Role.ADMIN))],
) -> Any:
    """May this worker check in at this enterprise? ``allow`` and every reason why not."""
    if principal.role is Role.GATE and body.enterprise_id != principal.enterprise_id:
        raise ApiError(403, "forbidden", "a gate decides for its own enterprise only")
    if principal.district is not None and not await context.bureau.enterprise_visible(
        body.enterprise_id, district=principal.district
    ):
        raise ApiError(403, "forbidden", "a district's supervisor decides for its district only")
    worker_ref = await find_worker(context, id_number=body.id_number, code=body.code)
    view = await context.read_model.loop_view(worker_ref) if worker_ref else None
    if view is None:
        raise ApiError(404, "not_found", "no worker known by this code or ID number")
    decision = decide_gate(facts_from(view), body.enterprise_id)
    await audit(
        context,
        principal,
        action="gate_decision",
        worker_ref=view["worker_ref"],
        detail=f"{body.enterprise_id}: allow={decision.allow}",
    )
    shown = view
    if not await may_read_worker(context, principal, view):
        shown = _for_another_enterprise(view)
    return {"allow": decision.allow, "reasons": list(decision.reasons), "loop": shown}
