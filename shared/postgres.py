"""The PostgreSQL adapter: every SQL statement returnloop runs lives here.

Writes go through ``LoopUnitOfWork`` (one transaction per batch: lock the
batch's workers, record the scans idempotently, load their history, save the
decided states and alerts). Reads for the API are plain methods on the store.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from shared.db import asyncpg_url
from shared.domain.model import (
    Alert,
    AlertKind,
    Assignment,
    Checkpoint,
    HealthCode,
    HealthCodeUpdate,
    Kind,
    LoopState,
    Scan,
    Stage,
    Status,
    WorkerHistory,
)
from shared.messages import AcceptedHealthUpdate, AcceptedScan

# The roster's counts (PRODUCT.md, GET /v1/enterprises/{enterprise_id}/roster).
ROSTER_STATES = ("expected", "departed", "in_transit", "arrived", "checked_in", "held", "broken")


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


async def create_pool(database_url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A connection pool with JSONB mapped to Python objects."""
    pool = await asyncpg.create_pool(
        asyncpg_url(database_url), min_size=min_size, max_size=max_size, init=_init_connection
    )
    assert pool is not None
    return pool


def checkpoint_to_json(checkpoint: Checkpoint) -> dict[str, Any]:
    body: dict[str, Any] = {
        "at": checkpoint.at.isoformat(),
        "passed": checkpoint.passed,
        "station": checkpoint.station,
        "scan_id": checkpoint.scan_id,
    }
    for name in ("temperature_c", "trip_id", "enterprise_id"):
        value = getattr(checkpoint, name)
        if value is not None:
            body[name] = value
    if checkpoint.health_code is not None:
        body["health_code"] = checkpoint.health_code.value
    return body


@dataclass(frozen=True)
class WorkerAssignment:
    worker_ref: str
    id_masked: str
    assignment: Assignment


@dataclass(frozen=True)
class SavedState:
    worker_ref: str
    id_masked: str
    state: LoopState
    scan_count: int


_SCAN_COLUMNS = (
    "scan_id, worker_ref, kind, occurred_at, station, temperature_c, health_code, "
    "trip_id, enterprise_id, received_at, source_topic, source_partition, source_offset"
)


Connection = asyncpg.Connection | PoolConnectionProxy
# Stored values back to the domain's enums without an Enum call per row.
_KINDS = {kind.value: kind for kind in Kind}
_COLOURS = {colour.value: colour for colour in HealthCode}


# A batch's scans and states are COPYed (binary, typed column by column in C)
# into these per-session staging tables, then merged in one statement each:
# asyncpg encodes a typed array parameter element by element in Python, which
# costs more than the statement itself for a few thousand rows. Each table is
# filled at most once per transaction (one ``record_scans``, one ``save``) and
# emptied by the commit or the rollback.
_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS scan_batch
    (LIKE applied_scans INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
CREATE TEMPORARY TABLE IF NOT EXISTS state_batch
    (LIKE loop_state INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
"""
_STATE_COLUMNS = (
    "worker_ref, id_masked, stage, status, health_code, departed, boarded_trip_id, arrived, "
    "checked_in_enterprise_id, checkpoints, next_deadline, scan_count, updated_at"
)


class LoopUnitOfWork:
    """One transaction's worth of closed-loop writes; built by ``PostgresStore.transaction``."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._staged = False

    async def _stage(self) -> None:
        """Make sure this session's staging tables exist (once a transaction)."""
        if not self._staged:
            await self.connection.execute(_STAGING)
            self._staged = True

    async def lock_workers(self, workers: dict[str, str]) -> dict[str, WorkerAssignment]:
        """Create missing worker rows, then lock all of them (in key order: no deadlocks)."""
        refs = sorted(workers)
        await self.connection.execute(
            """
            INSERT INTO workers (worker_ref, id_masked)
            SELECT * FROM unnest($1::text[], $2::text[])
            ON CONFLICT (worker_ref) DO NOTHING
            """,
            refs,
            [workers[ref] for ref in refs],
        )
        rows = await self.connection.fetch(
            """
            SELECT worker_ref, id_masked, enterprise_id, trip_id FROM workers
            WHERE worker_ref = ANY($1::text[]) ORDER BY worker_ref FOR UPDATE
            """,
            refs,
        )
        return {
            row["worker_ref"]: WorkerAssignment(
                row["worker_ref"],
                row["id_masked"],
                Assignment(row["enterprise_id"], row["trip_id"]),
            )
            for row in rows
        }

    async def record_scans(self, accepted: Sequence[AcceptedScan]) -> set[str]:
        """Insert scans into the log; return the scan_ids that were new (idempotency)."""
        if not accepted:
            return set()
        rows = [
            (
                item.scan.scan_id,
                item.worker_ref,
                item.scan.kind.value,
                item.scan.occurred_at,
                item.scan.station,
                item.scan.temperature_c,
                item.scan.health_code.value if item.scan.health_code else None,
                item.scan.trip_id,
                item.scan.enterprise_id,
                item.received_at,
                item.source.topic if item.source else None,
                item.source.partition if item.source else None,
                item.source.offset if item.source else None,
            )
            for item in accepted
        ]
        await self._stage()
        await self.connection.copy_records_to_table(
            "scan_batch", records=rows, columns=_SCAN_COLUMNS.split(", ")
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

    async def record_updates(self, accepted: Sequence[AcceptedHealthUpdate]) -> set[str]:
        """Insert colour updates; return the worker_refs that got a new one."""
        if not accepted:
            return set()
        rows = await self.connection.fetch(
            """
            INSERT INTO health_code_updates (worker_ref, as_of, health_code, received_at)
            SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::timestamptz[])
            ON CONFLICT DO NOTHING
            RETURNING worker_ref
            """,
            [item.worker_ref for item in accepted],
            [item.update.as_of for item in accepted],
            [item.update.health_code.value for item in accepted],
            [item.received_at for item in accepted],
        )
        return {row["worker_ref"] for row in rows}

    async def load_histories(self, worker_refs: Sequence[str]) -> dict[str, WorkerHistory]:
        """Every applied scan, colour update and stored alert of these workers."""
        scans: dict[str, list[Scan]] = defaultdict(list)
        for (
            ref,
            scan_id,
            kind,
            at,
            station,
            temperature,
            colour,
            trip,
            enterprise,
        ) in await self.connection.fetch(
            """
                SELECT worker_ref, scan_id, kind, occurred_at, station, temperature_c,
                       health_code, trip_id, enterprise_id
                FROM applied_scans WHERE worker_ref = ANY($1::text[])
                """,
            worker_refs,
        ):
            scans[ref].append(
                Scan(
                    scan_id,
                    _KINDS[kind],
                    at,
                    station,
                    temperature,
                    _COLOURS[colour] if colour else None,
                    trip,
                    enterprise,
                )
            )
        updates: dict[str, list[HealthCodeUpdate]] = defaultdict(list)
        for row in await self.connection.fetch(
            "SELECT worker_ref, as_of, health_code FROM health_code_updates "
            "WHERE worker_ref = ANY($1::text[])",
            worker_refs,
        ):
            updates[row["worker_ref"]].append(
                HealthCodeUpdate(HealthCode(row["health_code"]), row["as_of"])
            )
        alerts: dict[str, list[Alert]] = defaultdict(list)
        for row in await self.connection.fetch(
            "SELECT worker_ref, kind, raised_at, open, closed_at FROM alerts "
            "WHERE worker_ref = ANY($1::text[])",
            worker_refs,
        ):
            alerts[row["worker_ref"]].append(
                Alert(AlertKind(row["kind"]), row["raised_at"], row["open"], row["closed_at"])
            )
        return {
            ref: WorkerHistory(
                tuple(sorted(scans[ref], key=lambda scan: scan.order_key)),
                tuple(sorted(updates[ref], key=lambda update: update.order_key)),
                tuple(alerts[ref]),
            )
            for ref in worker_refs
        }

    async def load_previous(self, worker_refs: Sequence[str]) -> dict[str, LoopState]:
        """The stage and status each worker had before this transaction."""
        rows = await self.connection.fetch(
            "SELECT worker_ref, stage, status FROM loop_state WHERE worker_ref = ANY($1::text[])",
            worker_refs,
        )
        known = {
            row["worker_ref"]: LoopState(stage=Stage(row["stage"]), status=Status(row["status"]))
            for row in rows
        }
        return {ref: known.get(ref, LoopState()) for ref in worker_refs}

    async def trip_etas(self, trip_ids: Iterable[str]) -> dict[str, datetime]:
        wanted = sorted(set(trip_ids))
        if not wanted:
            return {}
        rows = await self.connection.fetch(
            "SELECT trip_id, eta FROM trips WHERE trip_id = ANY($1::text[])", wanted
        )
        return {row["trip_id"]: row["eta"] for row in rows}

    async def save(self, saved: Sequence[SavedState], now: datetime) -> None:
        """Upsert loop states and their alerts (set-based: one statement each)."""
        if not saved:
            return
        await self._stage()
        await self.connection.copy_records_to_table(
            "state_batch",
            records=[
                (
                    item.worker_ref,
                    item.id_masked,
                    item.state.stage.value,
                    item.state.status.value,
                    item.state.health_code.value if item.state.health_code else None,
                    item.state.departed,
                    item.state.boarded_trip_id,
                    item.state.arrived,
                    item.state.checked_in_enterprise_id,
                    {
                        kind.value: checkpoint_to_json(cp)
                        for kind, cp in item.state.checkpoints.items()
                    },
                    item.state.next_deadline,
                    item.scan_count,
                    now,
                )
                for item in saved
            ],
            columns=_STATE_COLUMNS.split(", "),
        )
        await self.connection.execute(
            f"""
            INSERT INTO loop_state ({_STATE_COLUMNS})
            SELECT {_STATE_COLUMNS} FROM state_batch
            ON CONFLICT (worker_ref) DO UPDATE SET
                id_masked = EXCLUDED.id_masked, stage = EXCLUDED.stage,
                status = EXCLUDED.status, health_code = EXCLUDED.health_code,
                departed = EXCLUDED.departed, boarded_trip_id = EXCLUDED.boarded_trip_id,
                arrived = EXCLUDED.arrived,
                checked_in_enterprise_id = EXCLUDED.checked_in_enterprise_id,
                checkpoints = EXCLUDED.checkpoints, next_deadline = EXCLUDED.next_deadline,
                scan_count = EXCLUDED.scan_count, updated_at = EXCLUDED.updated_at
            """
        )
        alerts = [(item.worker_ref, alert) for item in saved for alert in item.state.alerts]
        if alerts:
            await self.connection.execute(
                """
                INSERT INTO alerts (worker_ref, kind, raised_at, open, closed_at, updated_at)
                SELECT r, k, ra, o, ca, $6
                FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bool[],
                    $5::timestamptz[]) AS t(r, k, ra, o, ca)
                ON CONFLICT (worker_ref, kind, raised_at) DO UPDATE SET
                    open = EXCLUDED.open, closed_at = EXCLUDED.closed_at,
                    updated_at = EXCLUDED.updated_at
                WHERE alerts.open IS DISTINCT FROM EXCLUDED.open
                   OR alerts.closed_at IS DISTINCT FROM EXCLUDED.closed_at
                """,
                [ref for ref, _ in alerts],
                [alert.kind.value for _, alert in alerts],
                [alert.raised_at for _, alert in alerts],
                [alert.open for _, alert in alerts],
                [alert.closed_at for _, alert in alerts],
                now,
            )

    async def due_for_sweep(self, now: datetime, limit: int) -> dict[str, str]:
        """Workers whose next deadline has passed, locked; others' locks are skipped.

        The lock is on the workers row, as in every other writer, so a sweep and a
        batch never wait on each other in opposite orders.
        """
        rows = await self.connection.fetch(
            """
            SELECT w.worker_ref, w.id_masked FROM loop_state s
            JOIN workers w USING (worker_ref)
            WHERE s.next_deadline <= $1
            ORDER BY s.next_deadline
            LIMIT $2
            FOR UPDATE OF w SKIP LOCKED
            """,
            now,
            limit,
        )
        return {row["worker_ref"]: row["id_masked"] for row in rows}


class PostgresStore:
    """The PostgreSQL adapter over a connection pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, database_url: str, *, max_size: int = 10) -> PostgresStore:
        return cls(await create_pool(database_url, max_size=max_size))

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[LoopUnitOfWork]:
        """A unit of work: everything inside commits together or not at all."""
        async with self.pool.acquire() as connection, connection.transaction():
            yield LoopUnitOfWork(connection)

    async def workers_after(self, after: str, limit: int) -> dict[str, str]:
        """The next ``limit`` workers after ``after`` (worker_ref order) with anything to decide:
        applied scans, colour updates or a stored state (worker_ref -> id_masked)."""
        rows = await self.pool.fetch(
            """
            SELECT w.worker_ref, w.id_masked FROM workers w
            WHERE w.worker_ref > $1 AND (
                EXISTS (SELECT 1 FROM applied_scans a WHERE a.worker_ref = w.worker_ref)
                OR EXISTS (SELECT 1 FROM health_code_updates h WHERE h.worker_ref = w.worker_ref)
                OR EXISTS (SELECT 1 FROM loop_state s WHERE s.worker_ref = w.worker_ref))
            ORDER BY w.worker_ref
            LIMIT $2
            """,
            after,
            limit,
        )
        return {row["worker_ref"]: row["id_masked"] for row in rows}

    async def applied_scan_count(self) -> int:
        count: int = await self.pool.fetchval("SELECT count(*) FROM applied_scans")
        return count

    async def ping(self) -> bool:
        return bool(await self.pool.fetchval("SELECT 1"))


@dataclass(frozen=True)
class TokenRecord:
    role: str
    enterprise_id: str | None
    expires_at: datetime | None
    token_id: str


def loop_view(worker: asyncpg.Record, alerts: Sequence[asyncpg.Record]) -> dict[str, Any]:
    """The contract's loop view of one worker (no plain ID number, ever)."""
    return {
        "worker_ref": worker["worker_ref"],
        "id_masked": worker["id_masked"],
        "enterprise_id": worker["enterprise_id"],
        "trip_id": worker["trip_id"] or worker["boarded_trip_id"],
        "stage": worker["stage"] or Stage.REGISTERED.value,
        "status": worker["status"] or Status.OPEN.value,
        "health_code": worker["health_code"],
        "checkpoints": worker["checkpoints"] or {},
        "alerts": [
            {
                "kind": alert["kind"],
                "raised_at": alert["raised_at"].isoformat(),
                "open": alert["open"],
                "closed_at": alert["closed_at"].isoformat() if alert["closed_at"] else None,
            }
            for alert in alerts
        ],
        "updated_at": (worker["state_updated_at"] or worker["worker_updated_at"]).isoformat(),
    }


class ReadsAndManifests:
    """Reads for the API and manifest/token writes, over the same pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def loop_view(self, worker_ref: str) -> dict[str, Any] | None:
        async with self.pool.acquire() as connection:
            worker = await connection.fetchrow(
                """
                SELECT w.worker_ref, w.id_masked, w.enterprise_id, w.trip_id,
                       w.updated_at AS worker_updated_at, s.stage, s.status, s.health_code,
                       s.checkpoints, s.boarded_trip_id, s.updated_at AS state_updated_at
                FROM workers w LEFT JOIN loop_state s USING (worker_ref)
                WHERE w.worker_ref = $1
                """,
                worker_ref,
            )
            if worker is None:
                return None
            alerts = await connection.fetch(
                "SELECT kind, raised_at, open, closed_at FROM alerts WHERE worker_ref = $1 "
                "ORDER BY raised_at, kind",
                worker_ref,
            )
        return loop_view(worker, alerts)

    async def worker_enterprise(self, worker_ref: str) -> tuple[bool, str | None]:
        """Whether the worker is known, and the enterprise their manifest names."""
        row = await self.pool.fetchrow(
            "SELECT enterprise_id FROM workers WHERE worker_ref = $1", worker_ref
        )
        return (row is not None, row["enterprise_id"] if row else None)

    async def upsert_manifest(
        self,
        enterprises: Sequence[dict[str, Any]],
        trips: Sequence[dict[str, Any]],
        workers: Sequence[dict[str, Any]],
    ) -> None:
        """Upsert enterprises, trips and workers; workers whose assignment changed are
        re-decided by the next sweep (their deadline is set to now)."""
        async with self.pool.acquire() as connection, connection.transaction():
            if enterprises:
                await connection.execute(
                    """
                    INSERT INTO enterprises (enterprise_id, name, shortage)
                    SELECT * FROM unnest($1::text[], $2::text[], $3::int[])
                    ON CONFLICT (enterprise_id) DO UPDATE SET name = EXCLUDED.name,
                        shortage = EXCLUDED.shortage, updated_at = now()
                    """,
                    [e["enterprise_id"] for e in enterprises],
                    [e["name"] for e in enterprises],
                    [e["shortage"] for e in enterprises],
                )
            if trips:
                await connection.execute(
                    """
                    INSERT INTO trips (trip_id, mode, origin, destination, departs_at, eta)
                    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                        $5::timestamptz[], $6::timestamptz[])
                    ON CONFLICT (trip_id) DO UPDATE SET mode = EXCLUDED.mode,
                        origin = EXCLUDED.origin, destination = EXCLUDED.destination,
                        departs_at = EXCLUDED.departs_at, eta = EXCLUDED.eta, updated_at = now()
                    """,
                    [t["trip_id"] for t in trips],
                    [t["mode"] for t in trips],
                    [t["origin"] for t in trips],
                    [t["destination"] for t in trips],
                    [t["departs_at"] for t in trips],
                    [t["eta"] for t in trips],
                )
            if workers:
                # Key order, as the tracker locks: concurrent writers cannot deadlock.
                workers = sorted(workers, key=lambda w: w["worker_ref"])
                refs = [w["worker_ref"] for w in workers]
                await connection.execute(
                    """
                    INSERT INTO workers (worker_ref, id_masked, name, enterprise_id, trip_id,
                        id_number_encrypted)
                    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                        $5::text[], $6::text[])
                    ON CONFLICT (worker_ref) DO UPDATE SET id_masked = EXCLUDED.id_masked,
                        name = EXCLUDED.name, enterprise_id = EXCLUDED.enterprise_id,
                        trip_id = EXCLUDED.trip_id,
                        id_number_encrypted = coalesce(
                            EXCLUDED.id_number_encrypted, workers.id_number_encrypted),
                        updated_at = now()
                    """,
                    refs,
                    [w["id_masked"] for w in workers],
                    [w["name"] for w in workers],
                    [w["enterprise_id"] for w in workers],
                    [w["trip_id"] for w in workers],
                    [w.get("id_number_encrypted") for w in workers],
                )
                await connection.execute(
                    "UPDATE loop_state SET next_deadline = now() WHERE worker_ref = ANY($1::text[])",
                    refs,
                )
            if trips:
                await connection.execute(
                    "UPDATE loop_state SET next_deadline = now() "
                    "WHERE boarded_trip_id = ANY($1::text[])",
                    [t["trip_id"] for t in trips],
                )

    async def workers_by_stage_status(self) -> list[tuple[str, str, int]]:
        rows = await self.pool.fetch(
            """
            SELECT coalesce(s.stage, 'registered') AS stage, coalesce(s.status, 'open') AS status,
                   count(*) AS n
            FROM workers w LEFT JOIN loop_state s USING (worker_ref)
            GROUP BY 1, 2
            """
        )
        return [(row["stage"], row["status"], row["n"]) for row in rows]

    async def open_alerts_by_kind(self) -> list[tuple[str, int]]:
        rows = await self.pool.fetch(
            "SELECT kind, count(*) AS n FROM alerts WHERE open GROUP BY kind"
        )
        return [(row["kind"], row["n"]) for row in rows]

    async def enterprise_counts(self) -> list[tuple[str, str, int]]:
        """(enterprise_id, state, count) for every enterprise with workers on a manifest.

        The roster's counts, for all enterprises in one pass; ``checked_in`` counts
        the enterprise's own workers who checked in there (the roster also counts
        anyone who checked in there by mistake, who is a ``wrong_enterprise`` alert).
        """
        rows = await self.pool.fetch(
            """
            SELECT w.enterprise_id,
                   count(*) AS expected,
                   count(*) FILTER (WHERE s.departed) AS departed,
                   count(*) FILTER (
                       WHERE s.boarded_trip_id IS NOT NULL AND NOT s.arrived) AS in_transit,
                   count(*) FILTER (WHERE s.arrived) AS arrived,
                   count(*) FILTER (
                       WHERE s.checked_in_enterprise_id = w.enterprise_id) AS checked_in,
                   count(*) FILTER (WHERE s.status = 'held') AS held,
                   count(*) FILTER (WHERE s.status = 'broken') AS broken
            FROM workers w LEFT JOIN loop_state s USING (worker_ref)
            WHERE w.enterprise_id IS NOT NULL
            GROUP BY w.enterprise_id
            """
        )
        return [
            (row["enterprise_id"], state, row[state]) for row in rows for state in ROSTER_STATES
        ]

    async def encrypted_id_number(self, worker_ref: str) -> tuple[bool, str | None]:
        """Whether the worker is known, and their encrypted ID number if one is kept."""
        row = await self.pool.fetchrow(
            "SELECT id_number_encrypted FROM workers WHERE worker_ref = $1", worker_ref
        )
        return (row is not None, row["id_number_encrypted"] if row else None)

    async def rotate_encrypted_id_numbers(
        self, rotate: Callable[[str], str], *, batch_size: int = 1000
    ) -> int:
        """Re-encrypt every kept ID number with ``rotate``, a batch per transaction."""
        done, after = 0, ""
        while True:
            async with self.pool.acquire() as connection, connection.transaction():
                rows = await connection.fetch(
                    "SELECT worker_ref, id_number_encrypted FROM workers "
                    "WHERE worker_ref > $1 AND id_number_encrypted IS NOT NULL "
                    "ORDER BY worker_ref LIMIT $2 FOR UPDATE",
                    after,
                    batch_size,
                )
                if not rows:
                    return done
                await connection.execute(
                    "UPDATE workers w SET id_number_encrypted = t.c "
                    "FROM unnest($1::text[], $2::text[]) AS t(r, c) WHERE w.worker_ref = t.r",
                    [row["worker_ref"] for row in rows],
                    [rotate(row["id_number_encrypted"]) for row in rows],
                )
            done += len(rows)
            after = rows[-1]["worker_ref"]

    async def save_token(
        self,
        token_id: str,
        token_hash: str,
        role: str,
        enterprise_id: str | None,
        expires_at: datetime | None,
    ) -> None:
        await self.pool.execute(
            "INSERT INTO api_tokens (token_id, token_hash, role, enterprise_id, expires_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            token_id,
            token_hash,
            role,
            enterprise_id,
            expires_at,
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
            SELECT token_id, role, enterprise_id, expires_at FROM api_tokens
            WHERE token_hash = $1 AND revoked_at IS NULL
              AND (expires_at IS NULL OR expires_at > $2)
            """,
            token_hash,
            now,
        )
        if row is None:
            return None
        return TokenRecord(row["role"], row["enterprise_id"], row["expires_at"], row["token_id"])
