"""FastAPI dependencies: ``Annotated`` shorthands so a route just declares what it needs."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from services.api.auth import BOOTSTRAP_ACTOR, Principal, Role, TokenAuthority
from services.api.errors import ApiError
from services.api.gauges import DatabaseGauges
from services.api.limits import RateLimiter, client_address
from shared.adapters.metrics import Metrics
from shared.adapters.postgres.bureau import BureauReads
from shared.adapters.postgres.held import HeldWorkers
from shared.adapters.postgres.links import LinkStore
from shared.adapters.postgres.manifests import ManifestStore
from shared.adapters.postgres.read_model import LoopReadModel
from shared.adapters.postgres.subsidies import SubsidyLoops
from shared.adapters.postgres.supervision import SupervisorReads
from shared.adapters.postgres.webhooks import PostgresWebhooks
from shared.domain.model import Rules
from shared.id_encryption import IdNumberCipher
from shared.identity import Pseudonymiser
from shared.service_layer.ports import Publisher
from shared.settings import Settings


@dataclass
class ApiContext:
    """Everything the routes use, built once by ``services.api.app.bootstrap``."""

    read_model: LoopReadModel
    manifests: ManifestStore
    publisher: Publisher
    pseudonymiser: Pseudonymiser
    authority: TokenAuthority
    metrics: Metrics
    # The gauges read from PostgreSQL, refreshed when /metrics is scraped.
    gauges: DatabaseGauges
    rules: Rules
    links: LinkStore
    supervision: SupervisorReads
    bureau: BureauReads
    subsidy_loops: SubsidyLoops
    held: HeldWorkers
    webhooks: PostgresWebhooks
    rate_limiter: RateLimiter
    # Per client address, for requests that bring no valid token.
    unauthenticated_limiter: RateLimiter
    settings: Settings
    # None when RETURNLOOP_ID_ENCRYPTION_KEYS is unset: no full ID number is kept.
    id_cipher: IdNumberCipher | None = None


async def get_context(request: Request) -> ApiContext:
    # async: FastAPI would run a plain ``def`` dependency in a worker thread per request.
    context: ApiContext = request.app.state.context
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]


async def get_principal(
    context: ContextDep, request: Request, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    try:
        principal = await context.authority.authenticate(authorization)
    except ApiError:
        # Only a request with no valid token pays for this (a 429 instead of its 401):
        # a valid token is never slowed or refused by its address's neighbours.
        context.unauthenticated_limiter.check(client_address(request.client))
        raise
    if principal.actor != BOOTSTRAP_ACTOR:
        context.rate_limiter.check(principal.actor)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that lets only ``roles`` through (403 otherwise)."""

    async def check(principal: PrincipalDep) -> Principal:
        if principal.role not in roles:
            raise ApiError(403, "forbidden", f"the {principal.role} role may not do this")
        return principal

    return check


async def audit(
    context: ApiContext,
    principal: Principal,
    *,
    action: str,
    worker_ref: str | None,
    detail: str = "",
) -> None:
    """Record who (the principal's role and token fingerprint) did what, to which worker."""
    await context.links.audit(
        actor=principal.actor,
        role=principal.role,
        action=action,
        worker_ref=worker_ref,
        detail=detail,
    )
