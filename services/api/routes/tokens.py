"""Role tokens, issued by an admin."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import AfterValidator, BaseModel, Field, model_validator

from services.api.auth import Principal, Role
from services.api.deps import ContextDep, require
from shared.contract import printable

router = APIRouter(tags=["tokens"])


class TokenIn(BaseModel):
    role: Role
    enterprise_id: (
        Annotated[str, Field(min_length=1, max_length=128), AfterValidator(printable)] | None
    ) = None
    expires_in_hours: Annotated[float, Field(gt=0, le=24 * 366)] | None = None

    @model_validator(mode="after")
    def _gate_needs_enterprise(self) -> TokenIn:
        if self.role is Role.GATE and self.enterprise_id is None:
            raise ValueError("a gate token needs an enterprise_id")
        return self


@router.post("/tokens", status_code=201)
async def issue_token(
    body: TokenIn, context: ContextDep, _: Annotated[Principal, Depends(require(Role.ADMIN))]
) -> dict[str, Any]:
    """Issue a token for a role (a gate token is bound to one enterprise)."""
    token, expires_at = await context.authority.issue(
        body.role, body.enterprise_id, body.expires_in_hours
    )
    return {
        "token": token,
        "role": body.role.value,
        "enterprise_id": body.enterprise_id,
        "expires_at": expires_at.isoformat() if expires_at else None,
    }
