"""Deciding before recording (contract v1.1): 放行 / 禁止 with every reason, audited."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, model_validator

from services.api.auth import Role
from services.api.deps import ContextDep, PrincipalDep, audit
from services.api.errors import ApiError
from services.api.models import LoopView
from services.api.workers_by_code import Code, IdNumberText, Text, find_worker
from shared.domain.decisions import Reason, decide_checkpoint
from shared.domain.vocabulary import Kind

router = APIRouter(tags=["decisions"])


class DecisionIn(BaseModel):
    kind: Kind
    id_number: IdNumberText | None = None
    code: Code | None = None
    trip_id: Text | None = None
    enterprise_id: Text | None = None

    @model_validator(mode="after")
    def _a_worker(self) -> DecisionIn:
        if self.id_number is None and self.code is None:
            raise ValueError("give id_number or code")
        return self


class ReasonOut(BaseModel):
    code: Reason
    message: str


class WorkerOut(BaseModel):
    worker_ref: str
    id_masked: str
    name: str | None


class DecisionOut(BaseModel):
    kind: Kind
    allow: bool
    reasons: Annotated[list[ReasonOut], Field(description="every reason, allowed or not")]
    worker: WorkerOut
    loop: LoopView


@router.post("/decisions", response_model=DecisionOut)
async def decide(body: DecisionIn, context: ContextDep, principal: PrincipalDep) -> Any:
    """May this worker pass this checkpoint now? Asked before recording the scan."""
    if not principal.may_post(body.kind, body.enterprise_id):
        raise ApiError(403, "forbidden", f"the {principal.role} role may not decide {body.kind}")
    worker_ref = await find_worker(context, id_number=body.id_number, code=body.code)
    found = await context.read_model.decision_facts(worker_ref) if worker_ref else None
    if found is None:
        raise ApiError(404, "not_found", "no worker known by this code or ID number")
    view, facts = found
    decision = decide_checkpoint(
        body.kind,
        facts,
        now=datetime.now(UTC),
        rules=context.rules,
        trip_id=body.trip_id,
        enterprise_id=body.enterprise_id,
    )
    await audit(
        context,
        principal,
        action="decision",
        worker_ref=view["worker_ref"],
        detail=f"{body.kind.value}: allow={decision.allow}"
        + "".join(f" {said.code.value}" for said in decision.reasons),
    )
    if principal.role is Role.GATE and view["enterprise_id"] != principal.enterprise_id:
        # As at POST /v1/gate/decision: what the gate needs to turn the worker away,
        # not another employer's record.
        view = {**view, "trip_id": None, "checkpoints": {}, "alerts": []}
    return {
        "kind": decision.kind,
        "allow": decision.allow,
        "reasons": [{"code": said.code, "message": said.message} for said in decision.reasons],
        "worker": {
            "worker_ref": view["worker_ref"],
            "id_masked": view["id_masked"],
            "name": view["name"],
        },
        "loop": view,
    }
