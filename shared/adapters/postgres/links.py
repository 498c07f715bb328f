"""The PostgreSQL adapter for code links (health code, social-security card) and the audit log.

Card numbers are kept only as a keyed hash (for lookup) and a masked form.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared.identity import (
    InvalidCode,
    Pseudonymiser,
    mask_card_number,
    normalise_card_number,
    normalise_health_code_id,
)
from shared.service_layer.ports import WorkerIdentity

HEALTH_CODE = "health_code"
SSC_CARD = "ssc_card"


class LinkConflict(Exception):
    """The link would rebind a code (or a worker) that is bound elsewhere."""


@dataclass(frozen=True)
class CodeKey:
    code_type: str
    code_hash: str
    code_shown: str


class LinkStore:
    """Code links and access audit over an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool, pseudonymiser: Pseudonymiser) -> None:
        self.pool = pool
        self.pseudonymiser = pseudonymiser

    def health_code_key(self, health_code_id: str) -> CodeKey:
        value = normalise_health_code_id(health_code_id)
        return CodeKey(HEALTH_CODE, self.pseudonymiser.lookup_hash(HEALTH_CODE, value), value)

    def card_key(self, card_no: str) -> CodeKey:
        value = normalise_card_number(card_no)
        return CodeKey(
            SSC_CARD, self.pseudonymiser.lookup_hash(SSC_CARD, value), mask_card_number(value)
        )

    def keys_for(self, code: str) -> list[CodeKey]:
        """The keys a scanned code may stand for (it may fit either shape)."""
        keys = []
        for build in (self.health_code_key, self.card_key):
            try:
                keys.append(build(code))
            except InvalidCode:
                pass
        return keys

    async def link(
        self,
        worker_ref: str,
        id_masked: str,
        keys: list[CodeKey],
        actor: str,
        id_number_encrypted: str | None = None,
    ) -> bool:
        """Bind the codes to the worker; True if anything new was bound, False if all existed.

        Raises LinkConflict, changing nothing, when a code is bound to another worker
        or the worker already holds another code of the same type.
        """
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "INSERT INTO workers (worker_ref, id_masked, id_number_encrypted) "
                "VALUES ($1, $2, $3) ON CONFLICT (worker_ref) DO UPDATE SET "
                "id_number_encrypted = EXCLUDED.id_number_encrypted "
                "WHERE workers.id_number_encrypted IS NULL "
                "AND EXCLUDED.id_number_encrypted IS NOT NULL",
                worker_ref,
                id_masked,
                id_number_encrypted,
            )
            await connection.execute(
                "SELECT 1 FROM workers WHERE worker_ref = $1 FOR UPDATE", worker_ref
            )
            created = False
            for key in keys:
                holder = await connection.fetchval(
                    "SELECT worker_ref FROM code_links WHERE code_type = $1 AND code_hash = $2 "
                    "AND unlinked_at IS NULL",
                    key.code_type,
                    key.code_hash,
                )
                if holder == worker_ref:
                    continue
                if holder is not None:
                    raise LinkConflict(f"this {_words(key.code_type)} is bound to another worker")
                other = await connection.fetchval(
                    "SELECT 1 FROM code_links WHERE worker_ref = $1 AND code_type = $2 "
                    "AND unlinked_at IS NULL",
                    worker_ref,
                    key.code_type,
                )
                if other:
                    raise LinkConflict(
                        f"the worker already holds another {_words(key.code_type)}; "
                        "an admin must unlink it first"
                    )
                try:
                    await connection.execute(
                        "INSERT INTO code_links (code_type, code_hash, code_shown, worker_ref, "
                        "linked_by) VALUES ($1, $2, $3, $4, $5)",
                        key.code_type,
                        key.code_hash,
                        key.code_shown,
                        worker_ref,
                        actor,
                    )
                except asyncpg.UniqueViolationError:
                    raise LinkConflict(
                        f"this {_words(key.code_type)} was just bound elsewhere"
                    ) from None
                created = True
            return created

    async def unlink(self, key: CodeKey, actor: str, reason: str) -> str | None:
        """End a code's binding (a lost card, a reissued code); the history stays."""
        worker_ref = await self.pool.fetchval(
            """
            UPDATE code_links SET unlinked_at = now(), unlinked_by = $3, unlink_reason = $4
            WHERE code_type = $1 AND code_hash = $2 AND unlinked_at IS NULL
            RETURNING worker_ref
            """,
            key.code_type,
            key.code_hash,
            actor,
            reason,
        )
        return str(worker_ref) if worker_ref is not None else None

    async def resolve(self, keys: list[CodeKey]) -> str | None:
        """The worker an actively bound code belongs to."""
        for key in keys:
            worker_ref = await self.pool.fetchval(
                "SELECT worker_ref FROM code_links WHERE code_type = $1 AND code_hash = $2 "
                "AND unlinked_at IS NULL",
                key.code_type,
                key.code_hash,
            )
            if worker_ref is not None:
                return str(worker_ref)
        return None

    async def resolve_codes(self, codes: Collection[str]) -> dict[str, WorkerIdentity]:
        """The worker each actively linked code names, in one statement for a batch."""
        keys = {code: self.keys_for(code) for code in codes}
        wanted = {(key.code_type, key.code_hash) for each in keys.values() for key in each}
        if not wanted:
            return {}
        rows = await self.pool.fetch(
            """
            SELECT l.code_type, l.code_hash, l.worker_ref, w.id_masked
            FROM code_links l JOIN workers w USING (worker_ref)
            JOIN unnest($1::text[], $2::text[]) AS k(code_type, code_hash)
                ON l.code_type = k.code_type AND l.code_hash = k.code_hash
            WHERE l.unlinked_at IS NULL
            """,
            [code_type for code_type, _ in wanted],
            [code_hash for _, code_hash in wanted],
        )
        found = {
            (row["code_type"], row["code_hash"]): WorkerIdentity(
                row["worker_ref"], row["id_masked"]
            )
            for row in rows
        }
        resolved = {}
        for code, each in keys.items():
            # A health-code id first, as ``resolve`` looks: a code may fit both shapes.
            match = next(
                (
                    found[(k.code_type, k.code_hash)]
                    for k in each
                    if (k.code_type, k.code_hash) in found
                ),
                None,
            )
            if match is not None:
                resolved[code] = match
        return resolved

    async def linked(self, worker_ref: str) -> dict[str, str | None]:
        rows = await self.pool.fetch(
            "SELECT code_type, code_shown FROM code_links WHERE worker_ref = $1 "
            "AND unlinked_at IS NULL",
            worker_ref,
        )
        shown = {row["code_type"]: row["code_shown"] for row in rows}
        return {
            "health_code_id": shown.get(HEALTH_CODE),
            "ssc_card_no_masked": shown.get(SSC_CARD),
        }

    async def history(self, worker_ref: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT code_type, code_shown, linked_at, linked_by, unlinked_at, unlinked_by, "
            "unlink_reason FROM code_links WHERE worker_ref = $1 ORDER BY link_id",
            worker_ref,
        )
        return [_jsonable(dict(row)) for row in rows]

    async def audit(
        self, *, actor: str, role: str, action: str, worker_ref: str | None, detail: str = ""
    ) -> None:
        await self.pool.execute(
            "INSERT INTO access_audit (actor, role, action, worker_ref, detail) "
            "VALUES ($1, $2, $3, $4, $5)",
            actor,
            role,
            action,
            worker_ref,
            detail,
        )

    async def read_audit(
        self, *, worker_ref: str | None, after_id: int, limit: int
    ) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            """
            SELECT audit_id, at, actor, role, action, worker_ref, detail FROM access_audit
            WHERE ($1::text IS NULL OR worker_ref = $1) AND audit_id > $2
            ORDER BY audit_id LIMIT $3
            """,
            worker_ref,
            after_id,
            limit,
        )
        return [_jsonable(dict(row)) for row in rows]


def _words(code_type: str) -> str:
    return "health code" if code_type == HEALTH_CODE else "social-security card"


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in row.items()
    }
