"""A worker's loop view, by pseudonymous reference or by ID number."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import AfterValidator, BaseModel, Field

from services.api.auth import Principal, Role
from services.api.deps import ContextDep, PrincipalDep, audit, require
from services.api.errors import ApiError
from services.api.models import LoopView
from services.api.scope import may_read_worker, reads_every_worker
from shared.adapters.postgres.read_model import AuditedRead
from shared.contract import printable
from shared.id_encryption import IdNumberUnreadable
from shared.identity import InvalidIdNumber, normalise_id_number

router = APIRouter(tags=["workers"])

WORKER_REF = re.compile(r"w_[0-9a-f]{24}")


class Lookup(BaseModel):
    id_number: str


async def _view_for(
    context: ContextDep, principal: Principal, worker_ref: str, *, action: str
) -> dict[str, Any]:
    if principal.role not in (
        Role.GATE,
        Role.SUPERVISOR,
        Role.ADMIN,
        Role.RECRUITER,
        Role.HEALTH_STATION,
    ):
        raise ApiError(403, "forbidden", "this role may not read workers")
    if reads_every_worker(principal):
        # Read and audited in one statement: the entry is written only if the worker exists.
        read = AuditedRead(principal.actor, principal.role, action)
        view = await context.read_model.loop_view(worker_ref, audit=read)
        if view is None:
            raise ApiError(404, "not_found", "no such worker")
        return view
    view = await context.read_model.loop_view(worker_ref)
    # A gate sees only its own enterprise's workers, a district's supervisor its district's;
    # others' are "not found" to them.
    if view is None or not await may_read_worker(context, principal, view):
        raise ApiError(404, "not_found", "no such worker")
    # Who read whose loop is kept (by worker_ref: the ID number a lookup named never is).
    await audit(context, principal, action=action, worker_ref=worker_ref)
    return view


@router.post("/workers/lookup", response_model=LoopView)
async def lookup(body: Lookup, context: ContextDep, principal: PrincipalDep) -> Any:
    """The loop view of the worker with this ID number."""
    try:
        id_number = normalise_id_number(body.id_number)
    except InvalidIdNumber as problem:
        raise ApiError(422, problem.code, str(problem)) from None
    worker_ref = context.pseudonymiser.worker_ref(id_number)
    return await _view_for(context, principal, worker_ref, action="lookup_worker")


@router.get("/workers/{worker_ref}", response_model=LoopView)
async def get_worker(worker_ref: str, context: ContextDep, principal: PrincipalDep) -> Any:
    """The loop view of one worker."""
    if not WORKER_REF.fullmatch(worker_ref):
        raise ApiError(404, "not_found", "no such worker")
    return await _view_for(context, principal, worker_ref, action="read_worker")


class RevealIn(BaseModel):
    reason: Annotated[str, Field(min_length=1, max_length=500), AfterValidator(printable)]


class RevealOut(BaseModel):
    worker_ref: str
    id_number: str


@router.post("/workers/{worker_ref}/reveal", response_model=RevealOut)
async def reveal_id_number(
    worker_ref: str,
    body: RevealIn,
    context: ContextDep,
    principal: Annotated[Principal, Depends(require(Role.ADMIN))],
) -> Any:
    """The worker's full ID number, for an admin who must recover it; every call is audited."""
    known, ciphertext = (
        await context.manifests.encrypted_id_number(worker_ref)
        if WORKER_REF.fullmatch(worker_ref)
        else (False, None)
    )
    if not known:
        raise ApiError(404, "not_found", "no such worker")
    if context.id_cipher is None:
        raise ApiError(
            409, "not_recoverable", "no ID-number encryption key is configured on this API"
        )
    if ciphertext is None:
        raise ApiError(409, "not_recoverable", "no encrypted ID number is kept for this worker")
    try:
        id_number = context.id_cipher.decrypt(ciphertext)
    except IdNumberUnreadable as problem:
        raise ApiError(409, "not_recoverable", str(problem)) from None
    await audit(
        context,
        principal,
        action="reveal_id_number",
        worker_ref=worker_ref,
        detail=body.reason,
    )
    return {"worker_ref": worker_ref, "id_number": id_number}
