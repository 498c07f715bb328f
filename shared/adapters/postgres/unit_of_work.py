"""The tracker's writes: one ``LoopUnitOfWork`` a transaction (lock the batch's
workers, record the scans idempotently, load their history, save the decided
states and alerts), opened by ``PostgresStore.transaction``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from shared.adapters.postgres.pool import create_pool
from shared.domain.model import (
    Alert,
    Assignment,
    Checkpoint,
    Disposition,
    HealthCodeUpdate,
    LoopState,
    Scan,
    WorkerHistory,
)
from shared.domain.vocabulary import (
    AlertKind,
    DispositionKind,
    HealthCode,
    Kind,
    Stage,
    Status,
    Travel,
)
from shared.service_layer.messages import (
    AcceptedDisposition,
    AcceptedHealthUpdate,
    AcceptedScan,
    OutboxMessage,
)
from shared.service_layer.ports import (
    DecisionInputs,
    OutboxPublish,
    RecordRefused,
    SavedState,
    WorkerAssignment,
)


def checkpoint_to_json(checkpoint: Checkpoint) -> dict[str, Any]:
    body: dict[str, Any] = {
        "at": checkpoint.at.isoformat(),
        "passed": checkpoint.passed,
        "station": checkpoint.station,
        "scan_id": checkpoint.scan_id,
    }
    for name in ("temperature_c", "trip_id", "enterprise_id", "override_reason"):
        value = getattr(checkpoint, name)
        if value is not None:
            body[name] = value
    if checkpoint.health_code is not None:
        body["health_code"] = checkpoint.health_code.value
    if checkpoint.health_code_source is not None:
        body["health_code_source"] = checkpoint.health_code_source.value
    return body


_SCAN_COLUMNS = (
    "scan_id, worker_ref, kind, occurred_at, station, temperature_c, health_code, "
    "trip_id, enterprise_id, received_at, source_topic, source_partition, source_offset, "
    "override_reason"
)


# Everything re-deciding a batch's workers reads, in one statement (one round trip
# instead of six): one row a scan, colour update, alert, disposition and stored state
# of the workers, and a row a trip their scans name; ``part`` tells them apart and
# the columns are shared (see ``load_decision_inputs``).
#
# The scans are joined worker by worker: each probe is pruned at run time to the one
# partition of the log that holds the worker (migration 0012), one index descent a
# worker. ``worker_ref = ANY($1)`` cannot be pruned by partition (every partition gets
# the whole array): for a batch of 2,000 workers PostgreSQL either searched each of
# the 16 partitions' indexes for all 2,000 or, as it chose at 100,000 workers, read
# every partition whole (130-230 ms against 30 ms).
_DECISION_INPUTS = """
WITH s AS (
    SELECT a.worker_ref, a.scan_id, a.kind, a.occurred_at, a.station, a.temperature_c,
           a.health_code, a.trip_id, a.enterprise_id, a.override_reason
    FROM unnest($1::text[]) AS r(worker_ref) JOIN applied_scans a USING (worker_ref)
)
SELECT 's' AS part, worker_ref, scan_id AS id, kind, occurred_at AS at, station AS by,
       temperature_c, health_code, trip_id, enterprise_id, override_reason AS note,
       NULL::bool AS open, NULL::timestamptz AS closed_at
FROM s
UNION ALL
SELECT 'u', worker_ref, NULL, NULL, as_of, NULL, NULL, health_code, NULL, NULL, NULL,
       NULL, NULL
FROM health_code_updates WHERE worker_ref = ANY($1::text[])
UNION ALL
SELECT 'a', worker_ref, NULL, kind, raised_at, NULL, NULL, NULL, NULL, NULL, NULL,
       open, closed_at
FROM alerts WHERE worker_ref = ANY($1::text[])
UNION ALL
SELECT 'd', worker_ref, disposition_id, kind, at, recorded_by, NULL, NULL, NULL, NULL,
       note, NULL, NULL
FROM dispositions WHERE worker_ref = ANY($1::text[])
UNION ALL
SELECT 'p', worker_ref, NULL, stage, NULL, NULL, NULL, status, NULL, NULL, NULL,
       NULL, NULL
FROM loop_state WHERE worker_ref = ANY($1::text[])
UNION ALL
SELECT 't', NULL, NULL, NULL, eta, NULL, NULL, NULL, trip_id, NULL, NULL, NULL, NULL
FROM trips WHERE trip_id IN (SELECT trip_id FROM s)
"""


Connection = asyncpg.Connection | PoolConnectionProxy
# Errors caused by the data of a record rather than by the database being unavailable.
_DATA_ERRORS = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    # A value too large for an index row (a multi-kilobyte scan_id written straight to
    # scans.accepted): retrying the same data can never succeed.
    asyncpg.ProgramLimitExceededError,
    ValueError,
    OverflowError,
)
# Stored values back to the domain's enums without an Enum call per row.
_KINDS = {kind.value: kind for kind in Kind}
_COLOURS = {colour.value: colour for colour in HealthCode}
_TRAVEL = {travel.value: travel for travel in Travel}
_ALERTS = {kind.value: kind for kind in AlertKind}
_DISPOSITIONS = {kind.value: kind for kind in DispositionKind}
_STAGES = {stage.value: stage for stage in Stage}
_STATUSES = {status.value: status for status in Status}


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
    "checked_in_enterprise_id, checkpoints, next_deadline, scan_count, updated_at, "
    "health_code_at"
)

# The decided states from ``state_batch`` into ``loop_state``. A row whose state is
# unchanged is left as it is (no new row version, no WAL for it, ``updated_at`` kept):
# a rebuild re-decides every worker, and most come out as they were stored.
_DECIDED = [c for c in _STATE_COLUMNS.split(", ") if c not in ("worker_ref", "updated_at")]
_UPSERT_STATES = f"""
INSERT INTO loop_state ({_STATE_COLUMNS})
SELECT {_STATE_COLUMNS} FROM state_batch
ON CONFLICT (worker_ref) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _DECIDED)}, updated_at = EXCLUDED.updated_at
WHERE ({", ".join(f"loop_state.{c}" for c in _DECIDED)})
    IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in _DECIDED)})
"""


def scan_row(item: AcceptedScan) -> tuple[Any, ...]:
    """An accepted scan as a row of the scan log, in ``_SCAN_COLUMNS`` order."""
    scan = item.scan
    return (
        scan.scan_id,
        item.worker_ref,
        scan.kind.value,
        scan.occurred_at,
        scan.station,
        scan.temperature_c,
        scan.health_code.value if scan.health_code else None,
        scan.trip_id,
        scan.enterprise_id,
        item.received_at,
        item.source.topic if item.source else None,
        item.source.partition if item.source else None,
        item.source.offset if item.source else None,
        scan.override_reason,
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
            SELECT worker_ref, id_masked, enterprise_id, trip_id, travel, expected_arrival
            FROM workers
            WHERE worker_ref = ANY($1::text[]) ORDER BY worker_ref FOR UPDATE
            """,
            refs,
        )
        return {
            row["worker_ref"]: WorkerAssignment(
                row["worker_ref"],
                row["id_masked"],
                Assignment(
                    row["enterprise_id"],
                    row["trip_id"],
                    _TRAVEL[row["travel"]],
                    row["expected_arrival"],
                ),
            )
            for row in rows
        }

    async def record_scans(self, accepted: Sequence[AcceptedScan]) -> set[str]:
        """Insert scans into the log; return the scan_ids that were new (idempotency)."""
        if not accepted:
            return set()
        rows = [scan_row(item) for item in accepted]
        await self._stage()
        await self.connection.copy_records_to_table(
            "scan_batch", records=rows, columns=_SCAN_COLUMNS.split(", ")
        )
        # The log is partitioned by worker_ref, so its key is (worker_ref, scan_id);
        # applied_scan_ids holds the idempotency on scan_id alone (migration 0012):
        # only scans whose id is new there are logged, the batch's first of an id.
        inserted = await self.connection.fetch(
            f"""
            WITH new_ids AS (
                INSERT INTO applied_scan_ids (scan_id)
                SELECT scan_id FROM scan_batch
                ON CONFLICT (scan_id) DO NOTHING
                RETURNING scan_id
            )
            INSERT INTO applied_scans ({_SCAN_COLUMNS})
            SELECT DISTINCT ON (scan_id) {_SCAN_COLUMNS}
            FROM scan_batch JOIN new_ids USING (scan_id)
            ORDER BY scan_id, scan_batch.ctid
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

    async def record_dispositions(self, accepted: Sequence[AcceptedDisposition]) -> set[str]:
        """Insert dispositions (idempotent on disposition_id); return the worker_refs that
        got a new one."""
        if not accepted:
            return set()
        rows = await self.connection.fetch(
            """
            INSERT INTO dispositions (disposition_id, worker_ref, kind, at, recorded_by, note,
                received_at)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                $5::text[], $6::text[], $7::timestamptz[])
            ON CONFLICT (disposition_id) DO NOTHING
            RETURNING worker_ref
            """,
            [item.disposition.disposition_id for item in accepted],
            [item.worker_ref for item in accepted],
            [item.disposition.kind.value for item in accepted],
            [item.disposition.at for item in accepted],
            [item.disposition.by for item in accepted],
            [item.disposition.note for item in accepted],
            [item.received_at for item in accepted],
        )
        return {row["worker_ref"] for row in rows}

    async def load_histories(self, worker_refs: Sequence[str]) -> dict[str, WorkerHistory]:
        """Every applied scan, colour update, disposition and stored alert of these workers."""
        return (await self.load_decision_inputs(worker_refs)).histories

    async def load_previous(self, worker_refs: Sequence[str]) -> dict[str, LoopState]:
        """The stage and status each worker had before this transaction."""
        return (await self.load_decision_inputs(worker_refs)).previous

    async def load_decision_inputs(self, worker_refs: Sequence[str]) -> DecisionInputs:
        """Histories, previous states and the ETAs of the trips the scans name: one query."""
        refs = list(dict.fromkeys(worker_refs))
        scans: defaultdict[str, list[Scan]] = defaultdict(list)
        updates: defaultdict[str, list[HealthCodeUpdate]] = defaultdict(list)
        alerts: defaultdict[str, list[Alert]] = defaultdict(list)
        dispositions: defaultdict[str, list[Disposition]] = defaultdict(list)
        previous: dict[str, LoopState] = {}
        etas: dict[str, datetime] = {}
        for (
            part,
            ref,
            id_,
            kind,
            at,
            by,
            temperature,
            colour,
            trip,
            enterprise,
            note,
            open_,
            closed_at,
        ) in await self.connection.fetch(_DECISION_INPUTS, refs):
            if part == "s":
                scans[ref].append(
                    Scan(
                        id_,
                        _KINDS[kind],
                        at,
                        by,
                        temperature,
                        _COLOURS[colour] if colour else None,
                        trip,
                        enterprise,
                        note,
                    )
                )
            elif part == "u":
                updates[ref].append(HealthCodeUpdate(_COLOURS[colour], at))
            elif part == "a":
                alerts[ref].append(Alert(_ALERTS[kind], at, open_, closed_at))
            elif part == "d":
                dispositions[ref].append(Disposition(id_, _DISPOSITIONS[kind], at, by, note))
            elif part == "p":
                previous[ref] = LoopState(stage=_STAGES[kind], status=_STATUSES[colour])
            else:
                etas[trip] = at
        return DecisionInputs(
            {
                ref: WorkerHistory.in_event_order(
                    scans[ref], updates[ref], alerts[ref], dispositions[ref]
                )
                for ref in refs
            },
            {ref: previous.get(ref, LoopState()) for ref in refs},
            etas,
        )

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
                    item.state.health_code_at,
                )
                for item in saved
            ],
            columns=_STATE_COLUMNS.split(", "),
        )
        await self.connection.execute(_UPSERT_STATES)
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

    async def add_to_outbox(self, messages: Sequence[OutboxMessage]) -> None:
        """Keep messages for the relay; they commit (or vanish) with this transaction."""
        if not messages:
            return
        await self.connection.copy_records_to_table(
            "outbox",
            # asyncpg encodes a uuid from its text: no UUID object a message.
            records=[(m.message_id, m.topic, m.key, m.value) for m in messages],
            columns=["message_id", "topic", "key", "value"],
        )


# The relay's turn: a transaction-scoped advisory lock, so one relay publishes at a time
# and the outbox leaves in the order it was written (a worker's messages keep theirs).
_RELAY_LOCK = 0x72656C6179  # "relay"


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
        """A unit of work: everything inside commits together or not at all.

        PostgreSQL refusing the data itself surfaces as ``RecordRefused``; an
        unavailable server propagates as it is (the batch is retried whole).
        """
        try:
            async with self.pool.acquire() as connection, connection.transaction():
                yield LoopUnitOfWork(connection)
        except _DATA_ERRORS as error:
            raise RecordRefused(str(error)) from error

    async def workers_after(
        self, after: str, limit: int, before: str | None = None
    ) -> dict[str, str]:
        """The next ``limit`` workers after ``after`` (worker_ref order; before ``before``
        if given) with anything to decide: applied scans, colour updates or a stored
        state (worker_ref -> id_masked)."""
        rows = await self.pool.fetch(
            """
            SELECT w.worker_ref, w.id_masked FROM workers w
            WHERE w.worker_ref > $1 AND ($3::text IS NULL OR w.worker_ref < $3) AND (
                EXISTS (SELECT 1 FROM applied_scans a WHERE a.worker_ref = w.worker_ref)
                OR EXISTS (SELECT 1 FROM health_code_updates h WHERE h.worker_ref = w.worker_ref)
                OR EXISTS (SELECT 1 FROM loop_state s WHERE s.worker_ref = w.worker_ref))
            ORDER BY w.worker_ref
            LIMIT $2
            """,
            after,
            limit,
            before,
        )
        return {row["worker_ref"]: row["id_masked"] for row in rows}

    async def applied_scan_count(self) -> int:
        count: int = await self.pool.fetchval("SELECT count(*) FROM applied_scans")
        return count

    async def relay(self, publish: OutboxPublish, *, limit: int) -> int:
        """Hand the oldest outbox messages to ``publish``, then delete them, in one
        transaction holding the relay's turn (0 when another relay has it)."""
        async with self.pool.acquire() as connection, connection.transaction():
            if not await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK):
                return 0
            # By id, not "up to the largest id seen": a transaction still open may hold a
            # smaller id than one committed, and its row must stay for the next round.
            rows = await connection.fetch(
                "SELECT id, message_id, topic, key, value FROM outbox ORDER BY id LIMIT $1", limit
            )
            if not rows:
                return 0
            await publish(
                [
                    OutboxMessage(str(row["message_id"]), row["topic"], row["key"], row["value"])
                    for row in rows
                ]
            )
            await connection.execute(
                "DELETE FROM outbox WHERE id = ANY($1::bigint[])", [row["id"] for row in rows]
            )
            return len(rows)

    async def outbox_backlog(self) -> int:
        """How many messages wait to be relayed."""
        count: int = await self.pool.fetchval("SELECT count(*) FROM outbox")
        return count

    async def ping(self) -> bool:
        return bool(await self.pool.fetchval("SELECT 1"))
