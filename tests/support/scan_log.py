"""A populated database of its own for a test: create it, fill it through the service
layer, read back every row and state, drop it. For the tests of migrations and of
backup and restore, which must not touch the shared test database.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from services.cli.demo import to_domain_scan
from shared.adapters.postgres.pool import create_pool
from shared.adapters.postgres.schema import asyncpg_url
from shared.adapters.postgres.unit_of_work import (
    _SCAN_COLUMNS,
    LoopUnitOfWork,
    PostgresStore,
    scan_row,
)
from shared.domain.model import Rules
from shared.service_layer import handlers
from shared.service_layer.messages import AcceptedScan, SourcePosition
from tests.support.scans import scan_body


def database_url_named(database_url: str, name: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(asyncpg_url(database_url))
    return urlunsplit(parts._replace(path=f"/{name}"))


@asynccontextmanager
async def scratch_database(database_url: str, label: str) -> AsyncIterator[str]:
    """A new, empty database on the server of ``database_url`` (its URL), dropped after."""
    name = f"returnloop_{label}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(asyncpg_url(database_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield database_url_named(database_url, name)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


# A journey is picked per worker; the mix gives every stage and several statuses.
_JOURNEYS = ("whole", "whole", "whole", "departed", "boarded", "fever", "red_on_arrival")


def synthetic_scans(workers: int, *, seed: int, start: datetime) -> list[AcceptedScan]:
    """Accepted scans of ``workers`` new workers (random worker_refs), journeys mixed,
    ``start`` the first departure check."""
    rng = random.Random(seed)
    hours_from_t0 = (start - datetime(2020, 3, 1, 22, 0, tzinfo=UTC)) / timedelta(hours=1)
    scans: list[AcceptedScan] = []
    for _ in range(workers):
        ref = hashlib.sha256(rng.randbytes(16)).hexdigest()
        masked = f"5205{rng.randrange(100):02d}********{rng.randrange(10_000):04d}"
        journey = rng.choice(_JOURNEYS)
        trip = {"trip_id": f"B-{rng.randrange(40):04d}"}
        enterprise = {"enterprise_id": f"E{rng.randrange(1, 30):04d}"}
        kinds: list[tuple[str, float, dict[str, Any]]] = [
            ("departure_check", 0, {}),
            ("boarding", 1, trip),
            ("arrival_check", 14, {}),
            ("checkin", 15, enterprise),
        ]
        if journey == "departed":
            kinds = kinds[:1]
        elif journey == "boarded":
            kinds = kinds[:2]
        elif journey == "fever":
            kinds = [("departure_check", 0, {"temperature_c": 38.4})]
        elif journey == "red_on_arrival":
            kinds[2] = ("arrival_check", 14, {"health_code": "red"})
        for kind, hours, fields in kinds:
            body = scan_body(
                kind,
                "unused",
                hours=hours_from_t0 + hours + rng.random() / 10,
                scan_id=f"{kind}-{secrets.token_hex(8)}",
                **fields,
            )
            scans.append(
                AcceptedScan(
                    worker_ref=ref,
                    id_masked=masked,
                    scan=to_domain_scan(body),
                    received_at=to_domain_scan(body).occurred_at + timedelta(seconds=5),
                    source=SourcePosition("scans.accepted", rng.randrange(4), len(scans)),
                )
            )
    return scans


def batches(scans: Sequence[AcceptedScan], size: int) -> Iterator[list[AcceptedScan]]:
    for first in range(0, len(scans), size):
        yield list(scans[first : first + size])


async def apply_all(
    store: PostgresStore, scans: Sequence[AcceptedScan], *, size: int = 1000
) -> set[str]:
    """Apply the scans through the service layer, a batch at a time; the new scan_ids."""
    new: set[str] = set()
    for batch in batches(scans, size):
        _, fresh = await handlers.apply_scans(
            store, batch, rules=Rules(), now=datetime.now(UTC).replace(microsecond=0)
        )
        new |= fresh
    return new


class _UnitOfWorkAt0011(LoopUnitOfWork):
    """Scans logged as before migration 0012: one table, idempotent on its key scan_id."""

    async def record_scans(self, accepted: Sequence[AcceptedScan]) -> set[str]:
        if not accepted:
            return set()
        await self._stage()
        await self.connection.copy_records_to_table(
            "scan_batch",
            records=[scan_row(item) for item in accepted],
            columns=_SCAN_COLUMNS.split(", "),
        )
        inserted = await self.connection.fetch(
            f"""
            INSERT INTO applied_scans ({_SCAN_COLUMNS})
            SELECT {_SCAN_COLUMNS} FROM scan_batch
            ON CONFLICT (scan_id) DO NOTHING
            RETURNING scan_id
            """
        )
        return {row["scan_id"] for row in inserted}


class _StoreAt0011(PostgresStore):
    """The store as the code of revision 0011 wrote the scan log."""

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[LoopUnitOfWork]:
        async with self.pool.acquire() as connection, connection.transaction():
            yield _UnitOfWorkAt0011(connection)


@asynccontextmanager
async def store_on(database_url: str, *, at_0011: bool = False) -> AsyncIterator[PostgresStore]:
    """A store on the database; ``at_0011``: one that logs scans as revision 0011 did."""
    pool = await create_pool(database_url, max_size=4)
    store = _StoreAt0011(pool) if at_0011 else PostgresStore(pool)
    try:
        yield store
    finally:
        await store.close()


_STATE = (
    "worker_ref, id_masked, stage, status, health_code, departed, boarded_trip_id, arrived, "
    "checked_in_enterprise_id, checkpoints, next_deadline, scan_count, health_code_at"
)


async def states(pool: asyncpg.Pool) -> dict[str, tuple[Any, ...]]:
    """Every stored loop state (all but updated_at) and its open alerts, by worker_ref.

    Open alerts only: a closed alert may record the order the scans came in (a
    check-in applied in the batch after the arrival recheck leaves an
    ``overdue_checkin`` raised and closed; in one batch, none), so a replay that
    batches differently keeps a different closed history for the same scans.
    """
    alerts: dict[str, list[tuple[Any, ...]]] = {}
    for row in await pool.fetch(
        "SELECT worker_ref, kind, raised_at FROM alerts WHERE open "
        "ORDER BY worker_ref, kind, raised_at"
    ):
        alerts.setdefault(row["worker_ref"], []).append(tuple(row)[1:])
    return {
        row["worker_ref"]: (*tuple(row)[1:], tuple(alerts.get(row["worker_ref"], ())))
        for row in await pool.fetch(f"SELECT {_STATE} FROM loop_state")
    }


async def scan_log(pool: asyncpg.Pool, *, but: str | None = None) -> set[tuple[Any, ...]]:
    """Every row of the applied-scan log (every column, or all ``but`` one)."""
    return {
        tuple(value for name, value in row.items() if name != but)
        for row in await pool.fetch("SELECT * FROM applied_scans")
    }
