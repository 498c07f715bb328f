"""One code, one person, one loop: health-code / social-security-card links and resolve."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AfterValidator, BaseModel, Field

from services.api.auth import Principal, Role
from services.api.deps import ContextDep, audit, require
from services.api.errors import ApiError
from services.api.models import LoopView, Timestamp
from services.api.routes.workers import WORKER_REF
from services.api.scope import may_read_worker
from shared.adapters.postgres.links import CodeKey, LinkConflict
from shared.contract import printable
from shared.domain.vocabulary import HealthCode
from shared.identity import (
    MAX_CODE_LENGTH,
    InvalidCode,
    InvalidIdNumber,
    mask_id_number,
    normalise_id_number,
)

router = APIRouter(tags=["links"])

Code = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(printable)]
# A code as shown: any region's health-code id (URLs included, up to 512) or a card number.
ShownCode = Annotated[
    str, Field(min_length=1, max_length=MAX_CODE_LENGTH), AfterValidator(printable)
]


class LinkIn(BaseModel):
    id_number: Code
    health_code_id: ShownCode
    ssc_card_no: Code


class UnlinkIn(BaseModel):
    code: ShownCode
    reason: Annotated[str, Field(min_length=1, max_length=500), AfterValidator(printable)]


# Those who read a worker's loop (as GET /v1/workers/{worker_ref}); an integrator reads no one.
WorkerReader = Annotated[
    Principal,
    Depends(require(Role.RECRUITER, Role.HEALTH_STATION, Role.GATE, Role.SUPERVISOR, Role.ADMIN)),
]


class ResolveIn(BaseModel):
    code: ShownCode


CodeType = Literal["health_code", "ssc_card"]


class LinkedCodes(BaseModel):
    """The codes bound to the worker now; the card number only masked."""

    health_code_id: str | None
    ssc_card_no_masked: str | None


class LinkOut(BaseModel):
    worker_ref: str
    id_masked: str
    linked: LinkedCodes


class UnlinkOut(BaseModel):
    worker_ref: str
    unlinked: CodeType


class ResolveOut(BaseModel):
    worker_ref: str
    id_masked: str
    health_code: HealthCode | None
    linked: LinkedCodes
    loop: LoopView


class LinkRecord(BaseModel):
    """One binding of one code, as the history keeps it (the code shown masked for a card)."""

    code_type: CodeType
    code_shown: str
    linked_at: Timestamp
    linked_by: str
    unlinked_at: Timestamp | None
    unlinked_by: str | None
    unlink_reason: str | None


class LinkHistoryOut(BaseModel):
    worker_ref: str
    links: list[LinkRecord]


class AuditEntry(BaseModel):
    """One access, as logged then; ``role`` and ``action`` are kept as written, not re-checked."""

    audit_id: int
    at: Timestamp
    actor: str
    role: str
    action: str
    worker_ref: str | None
    detail: str | None


class AuditPageOut(BaseModel):
    entries: list[AuditEntry]
    next_after: int | None


def _keys(context: ContextDep, body: LinkIn) -> tuple[str, list[CodeKey]]:
    try:
        id_number = normalise_id_number(body.id_number)
        keys = [
            context.links.health_code_key(body.health_code_id),
            context.links.card_key(body.ssc_card_no),
        ]
    except (InvalidIdNumber, InvalidCode) as problem:
        raise ApiError(422, problem.code, str(problem)) from None
    return id_number, keys


@router.post(
    "/links",
    status_code=201,
    response_model=LinkOut,
    responses={200: {"model": LinkOut, "description": "The same link exists already"}},
)
async def link(
    body: LinkIn,
    context: ContextDep,
    response: Response,
    principal: Annotated[Principal, Depends(require(Role.ADMIN, Role.RECRUITER))],
) -> Any:
    """Bind a worker's health code and social-security card (201; 200 if already bound)."""
    id_number, keys = _keys(context, body)
    worker_ref = context.pseudonymiser.worker_ref(id_number)
    try:
        created = await context.links.link(
            worker_ref,
            mask_id_number(id_number),
            keys,
            principal.actor,
            context.id_cipher.encrypt(id_number) if context.id_cipher else None,
        )
    except LinkConflict as conflict:
        raise ApiError(409, "conflict", str(conflict)) from None
    if not created:
        response.status_code = 200
    await audit(
        context,
        principal,
        action="link",
        worker_ref=worker_ref,
        detail="created" if created else "already linked",
    )
    return {
        "worker_ref": worker_ref,
        "id_masked": mask_id_number(id_number),
        "linked": await context.links.linked(worker_ref),
    }


@router.post("/links/unlink", response_model=UnlinkOut)
async def unlink(
    body: UnlinkIn,
    context: ContextDep,
    principal: Annotated[Principal, Depends(require(Role.ADMIN))],
) -> Any:
    """End a code's binding (card lost, code reissued); the history keeps it (admin)."""
    for key in context.links.keys_for(body.code):
        worker_ref = await context.links.unlink(key, principal.actor, body.reason)
        if worker_ref is not None:
            await audit(
                context,
                principal,
                action="unlink",
                worker_ref=worker_ref,
                detail=f"{key.code_type}: {body.reason}",
            )
            return {"worker_ref": worker_ref, "unlinked": key.code_type}
    raise ApiError(404, "not_found", "no active link for this code")


@router.post("/links/resolve", response_model=ResolveOut)
async def resolve(body: ResolveIn, context: ContextDep, principal: WorkerReader) -> Any:
    """A health-code id or card number → the worker, their colour and their loop."""
    keys = context.links.keys_for(body.code)
    if not keys:
        raise ApiError(422, "invalid_code", "not the shape of a health-code id or card number")
    worker_ref = await context.links.resolve(keys)
    view = await context.read_model.loop_view(worker_ref) if worker_ref else None
    if view is None or not await may_read_worker(context, principal, view):
        raise ApiError(404, "not_found", "no worker is linked to this code")
    await audit(context, principal, action="resolve", worker_ref=worker_ref)
    return {
        "worker_ref": view["worker_ref"],
        "id_masked": view["id_masked"],
        "health_code": view["health_code"],
        "linked": await context.links.linked(view["worker_ref"]),
        "loop": view,
    }


@router.get("/links/{worker_ref}/history", response_model=LinkHistoryOut)
async def link_history(
    worker_ref: str,
    context: ContextDep,
    _: Annotated[Principal, Depends(require(Role.ADMIN))],
) -> Any:
    """Every binding a worker's codes have had, unlinks included (admin)."""
    if not WORKER_REF.fullmatch(worker_ref):
        raise ApiError(404, "not_found", "no such worker")
    return {"worker_ref": worker_ref, "links": await context.links.history(worker_ref)}


@router.get("/audit", response_model=AuditPageOut)
async def read_audit(
    context: ContextDep,
    _: Annotated[Principal, Depends(require(Role.ADMIN))],
    worker_ref: Annotated[str | None, Query(max_length=64)] = None,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Any:
    """Who accessed whose health data, when (admin); page with ``after``."""
    entries = await context.links.read_audit(worker_ref=worker_ref, after_id=after, limit=limit)
    return {
        "entries": entries,
        "next_after": entries[-1]["audit_id"] if len(entries) == limit else None,
    }
