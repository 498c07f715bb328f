"""A worker's loop view, by pseudonymous reference or by ID number."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from services.api.auth import Principal, Role
from services.api.deps import ContextDep, PrincipalDep
from services.api.errors import ApiError
from shared.identity import InvalidIdNumber, normalise_id_number

router = APIRouter(tags=["workers"])

WORKER_REF = re.compile(r"w_[0-9a-f]{24}")


class Lookup(BaseModel):
    id_number: str


async def _view_for(context: ContextDep, principal: Principal, worker_ref: str) -> dict[str, Any]:
    if principal.role not in (
        Role.GATE,
        Role.SUPERVISOR,
        Role.ADMIN,
        Role.RECRUITER,
        Role.HEALTH_STATION,
    ):
        raise ApiError(403, "forbidden", "this role may not read workers")
    view = await context.store.loop_view(worker_ref)
    # A gate sees only its own enterprise's workers; others' are "not found" to it.
    if view is None or (
        principal.role is Role.GATE and not principal.may_read_enterprise(view["enterprise_id"])
    ):
        raise ApiError(404, "not_found", "no such worker")
    return view


@router.post("/workers/lookup")
async def lookup(body: Lookup, context: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    """The loop view of the worker with this ID number."""
    try:
        id_number = normalise_id_number(body.id_number)
    except InvalidIdNumber as problem:
        raise ApiError(422, problem.code, str(problem)) from None
    return await _view_for(context, principal, context.pseudonymiser.worker_ref(id_number))


@router.get("/workers/{worker_ref}")
async def get_worker(
    worker_ref: str, context: ContextDep, principal: PrincipalDep
) -> dict[str, Any]:
    """The loop view of one worker."""
    if not WORKER_REF.fullmatch(worker_ref):
        raise ApiError(404, "not_found", "no such worker")
    return await _view_for(context, principal, worker_ref)
