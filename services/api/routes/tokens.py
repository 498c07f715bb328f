"""Role tokens, issued and revoked by an admin."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import AfterValidator, BaseModel, Field, model_validator

from services.api.auth import DISTRICT_SCOPED, ENTERPRISE_SCOPED, Principal, Role
from services.api.deps import ContextDep, audit, require
from services.api.errors import ApiError
from shared.contract import printable

router = APIRouter(tags=["tokens"])

TOKEN_ID = re.compile(r"tok_[0-9a-f]{16}")
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


class TokenIn(BaseModel):
    role: Role
    enterprise_id: (
        Annotated[str, Field(min_length=1, max_length=128), AfterValidator(printable)] | None
    ) = None
    # A supervisor's one district: the token then reads only that district's enterprises.
    district: (
        Annotated[str, Field(min_length=1, max_length=128), AfterValidator(printable)] | None
    ) = None
    expires_in_hours: Annotated[float, Field(gt=0, le=24 * 366)] | None = None

    @model_validator(mode="after")
    def _scopes_fit_the_role(self) -> TokenIn:
        if self.role is Role.GATE and self.enterprise_id is None:
            raise ValueError("a gate token needs an enterprise_id")
        if self.enterprise_id is not None and self.role not in ENTERPRISE_SCOPED:
            raise ValueError(f"a {self.role.value} token cannot be scoped to an enterprise_id")
        if self.district is not None and self.role not in DISTRICT_SCOPED:
            raise ValueError(f"a {self.role.value} token cannot be scoped to a district")
        return self


class TokenOut(BaseModel):
    token: str
    token_id: str
    role: Role
    enterprise_id: str | None
    district: Annotated[str | None, Field(description="present for a district-scoped token")] = None
    expires_at: str | None


class RevokedOut(BaseModel):
    token_id: str
    revoked_at: str


def _described(token_id: str, body: TokenIn, expires_at: datetime) -> str:
    # What the audit keeps of an issued token: its public name and scope, never the token.
    scope = "".join(
        f" {name}={value}"
        for name, value in (("enterprise_id", body.enterprise_id), ("district", body.district))
        if value is not None
    )
    return f"{token_id} {body.role.value}{scope} until {expires_at.isoformat()}"


@router.post("/tokens", status_code=201, response_model=TokenOut, response_model_exclude_unset=True)
async def issue_token(body: TokenIn, context: ContextDep, principal: Admin) -> Any:
    """Issue a token for a role (a gate token is bound to one enterprise, a supervisor's may
    be bound to one district); it expires after ``expires_in_hours`` or the default."""
    if body.enterprise_id is not None and not await context.manifests.known_enterprises(
        [body.enterprise_id]
    ):
        raise ApiError(
            422,
            "unknown_enterprise",
            f"no enterprise {body.enterprise_id!r} is on a manifest; post it first",
        )
    issued = await context.authority.issue(
        body.role, body.enterprise_id, body.expires_in_hours, body.district
    )
    await audit(
        context,
        principal,
        action="issue_token",
        worker_ref=None,
        detail=_described(issued.token_id, body, issued.expires_at),
    )
    return {
        "token": issued.token,
        "token_id": issued.token_id,
        "role": body.role.value,
        "enterprise_id": body.enterprise_id,
        **({"district": body.district} if body.district is not None else {}),
        "expires_at": issued.expires_at.isoformat(),
    }


@router.delete("/tokens/{token_id}", response_model=RevokedOut)
async def revoke_token(token_id: str, context: ContextDep, principal: Admin) -> Any:
    """Revoke an issued token by its ``token_id``; it is refused (401) from then on."""
    revoked_at = await context.authority.revoke(token_id) if TOKEN_ID.fullmatch(token_id) else None
    if revoked_at is None:
        raise ApiError(404, "not_found", "no such token")
    await audit(
        context,
        principal,
        action="revoke_token",
        worker_ref=None,
        detail=token_id,
    )
    return {"token_id": token_id, "revoked_at": revoked_at.isoformat()}
