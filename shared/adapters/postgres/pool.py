"""The asyncpg connection pool every PostgreSQL adapter shares, with JSONB as Python values."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from shared.adapters.postgres.schema import asyncpg_url

# JSONB in its binary wire format: a version byte, then the JSON text. Binary,
# so the staging tables below can be filled by (binary) COPY.
_JSONB_VERSION = b"\x01"


def _encode_jsonb(value: Any) -> bytes:
    return _JSONB_VERSION + orjson.dumps(value)


def _decode_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def _init_connection(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec(
        "jsonb",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        schema="pg_catalog",
        format="binary",
    )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Nothing to reset when a connection goes back to the pool.

    asyncpg's default sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` at every release: a round trip each time a connection is used, which
    was an eighth of the API's CPU per lookup. No code here leaves session state
    behind (no session ``SET``, session advisory lock, ``LISTEN`` or held cursor;
    the relay's lock is transaction-scoped), and an unfinished transaction is still
    rolled back by the pool itself before this runs."""


async def create_pool(database_url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A connection pool with JSONB mapped to Python objects, and PostgreSQL's JIT off.

    JIT compiles a statement whose estimated cost passes ``jit_above_cost`` (100,000):
    a batch's join of 2,000 workers to the scan log is estimated far above that and
    runs in 20-41 ms, and compiling it cost 44-51 ms more, at every batch. Nothing
    here runs the long analytical queries JIT pays off on.
    """
    pool = await asyncpg.create_pool(
        asyncpg_url(database_url),
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        server_settings={"jit": "off"},
    )
    assert pool is not None
    return pool
