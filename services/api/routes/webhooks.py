"""Webhook registrations and their delivery logs, managed by an admin.

The secret a registration signs with is shown once, in the answer that creates it.
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Path, Query
from pydantic import AfterValidator, BaseModel, Field

from services.api.auth import Principal, Role
from services.api.deps import ContextDep, audit, require
from services.api.errors import ApiError
from services.api.models import Timestamp
from shared.adapters.postgres.supervision import InvalidCursor
from shared.adapters.postgres.webhooks import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from shared.contract import printable
from shared.domain.webhooks import EVENT_KINDS

router = APIRouter(tags=["webhooks"])

Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
WebhookId = Annotated[
    str, Path(pattern=r"^wh_[0-9a-f]{16}$", description="e.g. wh_0123abcd4567ef89")
]
EventKind = Literal[EVENT_KINDS]  # type: ignore[valid-type]
_SECRET = re.compile(r"[\x21-\x7e]{16,256}")


def _receiver_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must name a host (http://host[:port]/path)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials (the list shows URLs; use the secret)")
    try:
        parts.port  # noqa: B018 (a port out of range raises here)
    except ValueError:
        raise ValueError("has a port that is not a number from 0 to 65535") from None
    if any(c.isspace() for c in value):
        raise ValueError("must not contain spaces (percent-encode them)")
    return value


def _secret(value: str) -> str:
    if not _SECRET.fullmatch(value):
        raise ValueError("must be 16 to 256 printable ASCII characters without spaces")
    return value


def _distinct(kinds: list[str]) -> list[str]:
    return list(dict.fromkeys(kinds))


class WebhookIn(BaseModel):
    url: Annotated[
        str, Field(min_length=1, max_length=2048), AfterValidator(printable),
        AfterValidator(_receiver_url),
    ]  # fmt: skip
    event_kinds: Annotated[
        list[EventKind],
        Field(min_length=1, description='alert kinds and/or "transition"'),
        AfterValidator(_distinct),
    ]
    enterprise_id: (
        Annotated[str, Field(min_length=1, max_length=128), AfterValidator(printable)] | None
    ) = None
    district: (
        Annotated[str, Field(min_length=1, max_length=128), AfterValidator(printable)] | None
    ) = None
    secret: Annotated[
        str | None, Field(description="signing secret; one is generated when absent"),
        AfterValidator(lambda v: v if v is None else _secret(v)),
    ] = None  # fmt: skip


class WebhookOut(BaseModel):
    webhook_id: str
    url: str
    event_kinds: list[str]
    enterprise_id: str | None
    district: str | None
    enabled: bool
    created_at: Timestamp
    created_by: str


class WebhookCreatedOut(WebhookOut):
    secret: Annotated[str, Field(description="shown this once: keep it to verify signatures")]


class WebhookListOut(BaseModel):
    webhooks: list[WebhookOut]


class WebhookDeletedOut(BaseModel):
    webhook_id: str
    deleted: bool


class DeliveryOut(BaseModel):
    delivery_id: str
    message_id: str
    event_kind: str
    status: Literal["pending", "delivered", "dead"]
    attempts: int
    next_attempt_at: Timestamp | None
    last_error: str | None
    last_status_code: int | None
    created_at: Timestamp
    last_attempt_at: Timestamp | None
    finished_at: Timestamp | None
    body: dict[str, Any]


class DeliveryPageOut(BaseModel):
    webhook_id: str
    deliveries: list[DeliveryOut]
    next_cursor: str | None


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "no such webhook")


@router.post("/webhooks", status_code=201, response_model=WebhookCreatedOut)
async def register_webhook(body: WebhookIn, context: ContextDep, principal: Admin) -> Any:
    """Register a receiver URL for event kinds, optionally for one enterprise or district;
    the answer holds the signing secret, shown this once."""
    secret = body.secret or "whsec_" + secrets.token_urlsafe(32)
    registration = await context.webhooks.register(
        url=body.url,
        event_kinds=body.event_kinds,
        enterprise_id=body.enterprise_id,
        district=body.district,
        secret=secret,
        created_by=principal.actor,
    )
    await audit(
        context,
        principal,
        action="register_webhook",
        worker_ref=None,
        detail=f"{registration['webhook_id']} {body.url}",
    )
    return {**registration, "secret": secret}


@router.get("/webhooks", response_model=WebhookListOut)
async def list_webhooks(context: ContextDep, _: Admin) -> Any:
    """Every registration, oldest first (secrets are never shown again)."""
    return {"webhooks": await context.webhooks.registrations()}


async def _set_enabled(
    context: ContextDep, principal: Principal, webhook_id: str, enabled: bool
) -> dict[str, Any]:
    registration = await context.webhooks.set_enabled(webhook_id, enabled)
    if registration is None:
        raise _not_found()
    action = "enable_webhook" if enabled else "disable_webhook"
    await audit(context, principal, action=action, worker_ref=None, detail=webhook_id)
    return registration


@router.post("/webhooks/{webhook_id}/disable", response_model=WebhookOut)
async def disable_webhook(webhook_id: WebhookId, context: ContextDep, principal: Admin) -> Any:
    """Stop delivering: events meanwhile are not queued, pending deliveries wait."""
    return await _set_enabled(context, principal, webhook_id, False)


@router.post("/webhooks/{webhook_id}/enable", response_model=WebhookOut)
async def enable_webhook(webhook_id: WebhookId, context: ContextDep, principal: Admin) -> Any:
    """Deliver again (pending deliveries first)."""
    return await _set_enabled(context, principal, webhook_id, True)


@router.delete("/webhooks/{webhook_id}", response_model=WebhookDeletedOut)
async def delete_webhook(webhook_id: WebhookId, context: ContextDep, principal: Admin) -> Any:
    """Delete a registration and its delivery log."""
    if not await context.webhooks.delete(webhook_id):
        raise _not_found()
    await audit(context, principal, action="delete_webhook", worker_ref=None, detail=webhook_id)
    return {"webhook_id": webhook_id, "deleted": True}


@router.get("/webhooks/{webhook_id}/deliveries", response_model=DeliveryPageOut)
async def list_deliveries(
    webhook_id: WebhookId,
    context: ContextDep,
    _: Admin,
    status: Literal["pending", "delivered", "dead"] | None = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
) -> Any:
    """A page of the registration's deliveries, newest first, with each one's tries, last
    error and body; pass ``next_cursor`` back as ``cursor`` for the next."""
    if not await context.webhooks.exists(webhook_id):
        raise _not_found()
    try:
        page = await context.webhooks.deliveries(
            webhook_id, status=status, cursor=cursor, limit=limit
        )
    except InvalidCursor as problem:
        raise ApiError(400, "invalid_cursor", str(problem)) from None
    return {"webhook_id": webhook_id, **page}
