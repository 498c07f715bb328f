"""Webhook registrations and their delivery log in PostgreSQL.

The admin's side (register, list, enable, disable, delete, read the log) and the
webhooks process's side (``shared.service_layer.webhooks.WebhookStore``: match,
write deliveries, claim due ones, record each try).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from shared.adapters.postgres.supervision import InvalidCursor
from shared.domain.webhooks import Registration
from shared.service_layer.webhooks import DueDelivery, NewDelivery

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
DELIVERY_STATUSES = ("pending", "delivered", "dead")

_CURSOR = re.compile(r"[A-Za-z0-9_-]{4,40}")
_CURSOR_BODY = re.compile(r"delivery:([1-9][0-9]{0,18})")
_MAX_ID = 2**63 - 1

_REGISTRATION_COLUMNS = (
    "webhook_id, url, event_kinds, enterprise_id, district, enabled, created_at, created_by"
)


def new_webhook_id() -> str:
    return "wh_" + secrets.token_hex(8)


def _encode_cursor(row_id: int) -> str:
    return base64.urlsafe_b64encode(f"delivery:{row_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    match = None
    if _CURSOR.fullmatch(cursor):
        try:
            body = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_")
            match = _CURSOR_BODY.fullmatch(body.decode("ascii"))
        except (binascii.Error, UnicodeDecodeError):
            match = None
    if match is None or int(match.group(1)) > _MAX_ID:
        raise InvalidCursor("the cursor is not one this API handed out")
    return int(match.group(1))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _registration_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "webhook_id": row["webhook_id"],
        "url": row["url"],
        "event_kinds": list(row["event_kinds"]),
        "enterprise_id": row["enterprise_id"],
        "district": row["district"],
        "enabled": row["enabled"],
        "created_at": row["created_at"].isoformat(),
        "created_by": row["created_by"],
    }


def _delivery_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "delivery_id": str(row["delivery_id"]),
        "message_id": row["message_id"],
        "event_kind": row["event_kind"],
        "status": row["status"],
        "attempts": row["attempts"],
        "next_attempt_at": _iso(row["next_attempt_at"]) if row["status"] == "pending" else None,
        "last_error": row["last_error"],
        "last_status_code": row["last_status_code"],
        "created_at": row["created_at"].isoformat(),
        "last_attempt_at": _iso(row["last_attempt_at"]),
        "finished_at": _iso(row["finished_at"]),
        "body": orjson.loads(row["body"]),
    }


class PostgresWebhooks:
    """Registrations and deliveries over a pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- the admin's side -------------------------------------------------------------

    async def register(
        self,
        *,
        url: str,
        event_kinds: Sequence[str],
        enterprise_id: str | None,
        district: str | None,
        secret: str,
        created_by: str,
    ) -> dict[str, Any]:
        """A new, enabled registration (without its secret)."""
        row = await self.pool.fetchrow(
            "INSERT INTO webhook_registrations (webhook_id, url, event_kinds, enterprise_id, "
            "district, secret, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            f"RETURNING {_REGISTRATION_COLUMNS}",
            new_webhook_id(),
            url,
            list(event_kinds),
            enterprise_id,
            district,
            secret,
            created_by,
        )
        assert row is not None
        return _registration_view(row)

    async def registrations(self) -> list[dict[str, Any]]:
        """Every registration, oldest first (without secrets)."""
        rows = await self.pool.fetch(
            f"SELECT {_REGISTRATION_COLUMNS} FROM webhook_registrations "
            "ORDER BY created_at, webhook_id"
        )
        return [_registration_view(row) for row in rows]

    async def set_enabled(self, webhook_id: str, enabled: bool) -> dict[str, Any] | None:
        """Enable or disable; the registration, or None if there is none by that id."""
        row = await self.pool.fetchrow(
            "UPDATE webhook_registrations SET enabled = $2, updated_at = now() "
            f"WHERE webhook_id = $1 RETURNING {_REGISTRATION_COLUMNS}",
            webhook_id,
            enabled,
        )
        return _registration_view(row) if row is not None else None

    async def delete(self, webhook_id: str) -> bool:
        """Delete a registration and its delivery log; whether there was one."""
        deleted = await self.pool.fetchval(
            "DELETE FROM webhook_registrations WHERE webhook_id = $1 RETURNING webhook_id",
            webhook_id,
        )
        return deleted is not None

    async def exists(self, webhook_id: str) -> bool:
        return bool(
            await self.pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM webhook_registrations WHERE webhook_id = $1)",
                webhook_id,
            )
        )

    async def deliveries(
        self,
        webhook_id: str,
        *,
        status: str | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> dict[str, Any]:
        """One page of a registration's deliveries, newest first:
        ``{"deliveries": [...], "next_cursor"}``. Raises ``InvalidCursor``."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        before = _decode_cursor(cursor) if cursor is not None else _MAX_ID
        rows = await self.pool.fetch(
            """
            SELECT * FROM webhook_deliveries
            WHERE webhook_id = $1 AND id < $2 AND ($3::text IS NULL OR status = $3)
            ORDER BY id DESC LIMIT $4
            """,
            webhook_id,
            before,
            status,
            limit + 1,
        )
        page = rows[:limit]
        return {
            "deliveries": [_delivery_view(row) for row in page],
            "next_cursor": _encode_cursor(page[-1]["id"]) if len(rows) > limit else None,
        }

    # --- the webhooks process's side (WebhookStore) -----------------------------------

    async def enabled_registrations(self) -> list[Registration]:
        rows = await self.pool.fetch(
            "SELECT webhook_id, url, event_kinds, enterprise_id, district, created_at "
            "FROM webhook_registrations WHERE enabled"
        )
        return [
            Registration(
                webhook_id=row["webhook_id"],
                url=row["url"],
                event_kinds=frozenset(row["event_kinds"]),
                enterprise_id=row["enterprise_id"],
                district=row["district"],
                created_at=row["created_at"],
            )
            for row in rows
        ]

    async def districts_of(self, enterprise_ids: Collection[str]) -> dict[str, str | None]:
        if not enterprise_ids:
            return {}
        rows = await self.pool.fetch(
            "SELECT enterprise_id, district FROM enterprises WHERE enterprise_id = ANY($1)",
            list(enterprise_ids),
        )
        return {row["enterprise_id"]: row["district"] for row in rows}

    async def add_deliveries(self, deliveries: Sequence[NewDelivery]) -> int:
        # A registration deleted since it was read: its deliveries are not written.
        inserted = await self.pool.fetchval(
            """
            WITH written AS (
                INSERT INTO webhook_deliveries (delivery_id, webhook_id, message_id,
                                                event_kind, body)
                SELECT d.delivery_id, d.webhook_id, d.message_id, d.event_kind, d.body
                FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
                     AS d (delivery_id, webhook_id, message_id, event_kind, body)
                JOIN webhook_registrations r ON r.webhook_id = d.webhook_id
                ON CONFLICT DO NOTHING
                RETURNING 1
            )
            SELECT count(*) FROM written
            """,
            [d.delivery_id for d in deliveries],
            [d.webhook_id for d in deliveries],
            [d.message_id for d in deliveries],
            [d.event_kind for d in deliveries],
            [d.body.decode() for d in deliveries],
        )
        return int(inserted or 0)

    async def claim_due(
        self, *, limit: int, busy: Collection[str], lease_s: float
    ) -> list[DueDelivery]:
        # The oldest due delivery of each enabled registration not busy here; the lease
        # (next_attempt_at moved on) keeps another claim off it until it runs out. The
        # UPDATE re-checks next_attempt_at, so two claims racing take a row once.
        rows = await self.pool.fetch(
            """
            WITH due AS (
                SELECT DISTINCT ON (d.webhook_id) d.id
                FROM webhook_deliveries d
                JOIN webhook_registrations r ON r.webhook_id = d.webhook_id
                WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND r.enabled
                  AND NOT (d.webhook_id = ANY($2::text[]))
                ORDER BY d.webhook_id, d.next_attempt_at, d.id
            ), chosen AS (
                SELECT id FROM due ORDER BY id LIMIT $1
            )
            UPDATE webhook_deliveries d
            SET next_attempt_at = now() + make_interval(secs => $3)
            FROM chosen, webhook_registrations r
            WHERE d.id = chosen.id AND r.webhook_id = d.webhook_id
              AND d.status = 'pending' AND d.next_attempt_at <= now()
            RETURNING d.delivery_id, d.webhook_id, r.url, r.secret, d.event_kind, d.body,
                      d.attempts
            """,
            limit,
            list(busy),
            lease_s,
        )
        return [
            DueDelivery(
                delivery_id=str(row["delivery_id"]),
                webhook_id=row["webhook_id"],
                url=row["url"],
                secret=row["secret"],
                event_kind=row["event_kind"],
                body=row["body"].encode(),
                attempts=row["attempts"],
            )
            for row in rows
        ]

    async def delivered(self, delivery_id: str, *, status_code: int | None) -> None:
        await self.pool.execute(
            """
            UPDATE webhook_deliveries
            SET status = 'delivered', attempts = attempts + 1, last_status_code = $2,
                last_attempt_at = now(), finished_at = now()
            WHERE delivery_id = $1 AND status = 'pending'
            """,
            delivery_id,
            status_code,
        )

    async def failed(
        self,
        delivery_id: str,
        *,
        status_code: int | None,
        error: str,
        retry_in_s: float | None,
    ) -> None:
        await self.pool.execute(
            """
            UPDATE webhook_deliveries
            SET attempts = attempts + 1, last_status_code = $2, last_error = $3,
                last_attempt_at = now(),
                status = CASE WHEN $4::float8 IS NULL THEN 'dead' ELSE 'pending' END,
                finished_at = CASE WHEN $4::float8 IS NULL THEN now() END,
                next_attempt_at = now() + make_interval(secs => coalesce($4::float8, 0))
            WHERE delivery_id = $1 AND status = 'pending'
            """,
            delivery_id,
            status_code,
            error,
            retry_in_s,
        )
