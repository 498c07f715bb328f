"""Bearer tokens and roles. Only a hash of an issued token is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from services.api.errors import ApiError
from shared.adapters.postgres.tokens import TokenStore
from shared.domain.vocabulary import Kind


class Role(StrEnum):
    RECRUITER = "recruiter"
    HEALTH_STATION = "health_station"
    GATE = "gate"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    # Feeds manifests and health-code colour updates (contract v1.1).
    INTEGRATOR = "integrator"


# Which scan kinds each role may post.
SCAN_KINDS_BY_ROLE: dict[Role, frozenset[Kind]] = {
    Role.RECRUITER: frozenset({Kind.DEPARTURE_CHECK, Kind.BOARDING}),
    Role.HEALTH_STATION: frozenset({Kind.ARRIVAL_CHECK}),
    Role.GATE: frozenset({Kind.CHECKIN}),
    Role.SUPERVISOR: frozenset(),
    Role.INTEGRATOR: frozenset(),
    Role.ADMIN: frozenset(Kind),
}


# The scope each role's token may carry (a scope a role cannot use is refused, never ignored).
ENTERPRISE_SCOPED = frozenset({Role.GATE})
DISTRICT_SCOPED = frozenset({Role.SUPERVISOR})


def scope_fits(role: Role, enterprise_id: str | None, district: str | None) -> bool:
    """Whether a token of ``role`` can be held to this scope: a gate to its one enterprise,
    a supervisor to a district or none, every other role to none."""
    if role is Role.GATE and enterprise_id is None:
        return False
    if enterprise_id is not None and role not in ENTERPRISE_SCOPED:
        return False
    return district is None or role in DISTRICT_SCOPED


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role, for a gate the one enterprise it serves, and for a
    district-scoped supervisor the one district it reads."""

    role: Role
    enterprise_id: str | None = None
    # Who, for audit trails: the role and a fingerprint of the token (never the token).
    actor: str = "unknown"
    district: str | None = None

    def may_post(self, kind: str, enterprise_id: str | None) -> bool:
        if kind not in SCAN_KINDS_BY_ROLE[self.role]:
            return False
        return self.role is not Role.GATE or enterprise_id == self.enterprise_id

    def may_read_enterprise(self, enterprise_id: str | None) -> bool:
        """Whether the role reads this enterprise at all; a district-scoped supervisor's
        district is checked against the data (``services/api/scope.py``)."""
        if self.role in (Role.SUPERVISOR, Role.ADMIN):
            return True
        return self.role is Role.GATE and enterprise_id == self.enterprise_id


@dataclass(frozen=True)
class IssuedToken:
    token: str
    token_id: str
    expires_at: datetime


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# The operator's own token from RETURNLOOP_ADMIN_TOKEN (it feeds demo waves and
# bulk manifests); issued tokens are the ones rate-limited.
BOOTSTRAP_ACTOR = "admin:bootstrap-token"


def expiry(now: datetime, expires_in_hours: float | None, default_hours: float) -> datetime:
    """When a token issued ``now`` expires: after the hours asked for, else the default."""
    hours = expires_in_hours if expires_in_hours is not None else default_hours
    return now + timedelta(hours=hours)


class TokenAuthority:
    """Checks bearer tokens: the bootstrap admin token, or an issued one (which expires
    after ``default_hours`` unless issued with its own lifetime)."""

    def __init__(self, store: TokenStore, admin_token: str | None, default_hours: float) -> None:
        self.store = store
        self.admin_token = admin_token
        self.default_hours = default_hours

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise ApiError(401, "unauthorized", "a bearer token is required")
        token = authorization[7:].strip()
        if self.admin_token and hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return Principal(Role.ADMIN, actor=BOOTSTRAP_ACTOR)
        token_hash = hash_token(token)
        record = await self.store.find_token(token_hash, datetime.now(UTC))
        if record is None:
            raise ApiError(401, "unauthorized", "the token is unknown, expired or revoked")
        role = Role(record.role)
        if not scope_fits(role, record.enterprise_id, record.district):
            # Issued before scopes were checked: honouring it would ignore its scope.
            raise ApiError(
                401, "unauthorized", "the token's scope does not fit its role; issue a new one"
            )
        return Principal(
            role,
            record.enterprise_id,
            actor=f"{role.value}:{token_hash[:12]}",
            district=record.district,
        )

    async def issue(
        self,
        role: Role,
        enterprise_id: str | None,
        expires_in_hours: float | None,
        district: str | None = None,
    ) -> IssuedToken:
        token = "rl_" + secrets.token_urlsafe(32)
        # The token's public name, for listing and revoking; it reveals nothing of the token.
        token_id = "tok_" + secrets.token_hex(8)
        expires_at = expiry(datetime.now(UTC), expires_in_hours, self.default_hours)
        await self.store.save_token(
            token_id, hash_token(token), role.value, enterprise_id, expires_at, district
        )
        return IssuedToken(token, token_id, expires_at)

    async def revoke(self, token_id: str) -> datetime | None:
        """Revoke an issued token (at once: every request checks); None if no such token."""
        return await self.store.revoke_token(token_id)
