"""API tokens: stored hashed, expirable, revocable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class TokenRecord:
    role: str
    enterprise_id: str | None
    expires_at: datetime | None
    token_id: str
    # A supervisor token's one district (None: every district).
    district: str | None = None


class TokenStore:
    """Issued tokens over a pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def save_token(
        self,
        token_id: str,
        token_hash: str,
        role: str,
        enterprise_id: str | None,
        expires_at: datetime | None,
        district: str | None = None,
    ) -> None:
        await self.pool.execute(
            "INSERT INTO api_tokens (token_id, token_hash, role, enterprise_id, expires_at, "
            "district) VALUES ($1, $2, $3, $4, $5, $6)",
            token_id,
            token_hash,
            role,
            enterprise_id,
            expires_at,
            district,
        )

    async def revoke_token(self, token_id: str) -> datetime | None:
        """Revoke a token by its id; when it was revoked (now or before), None if unknown."""
        revoked_at: datetime | None = await self.pool.fetchval(
            "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) "
            "WHERE token_id = $1 RETURNING revoked_at",
            token_id,
        )
        return revoked_at

    async def find_token(self, token_hash: str, now: datetime) -> TokenRecord | None:
        row = await self.pool.fetchrow(
            """
            SELECT token_id, role, enterprise_id, expires_at, district FROM api_tokens
            WHERE token_hash = $1 AND revoked_at IS NULL
              AND (expires_at IS NULL OR expires_at > $2)
            """,
            token_hash,
            now,
        )
        if row is None:
            return None
        return TokenRecord(
            row["role"], row["enterprise_id"], row["expires_at"], row["token_id"], row["district"]
        )
