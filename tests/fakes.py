"""In-memory fakes of the service layer's ports, for unit tests.

``FakeLoopStore`` behaves as ``PostgresStore`` does where callers can tell:
``tests/contract/loop_store_contract.py`` runs the same tests against both.
``FakePublisher`` keeps what was published, per topic, and can be told to fail.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.domain.model import Alert, Assignment, HealthCodeUpdate, LoopState, WorkerHistory
from shared.domain.vocabulary import AlertKind, HealthCode
from shared.service_layer.messages import (
    AcceptedDisposition,
    AcceptedHealthUpdate,
    AcceptedScan,
    OutboxMessage,
)
from shared.service_layer.ports import (
    DecisionInputs,
    Message,
    OutboxPublish,
    RecordRefused,
    SavedState,
    WorkerAssignment,
)


@dataclass(frozen=True)
class WorkerRow:
    """A row of ``workers``: created by a lock or a manifest, assigned by a manifest."""

    id_masked: str
    assignment: Assignment = field(default_factory=Assignment)


@dataclass(frozen=True)
class StoredState:
    """A row of ``loop_state``: the whole decided state, as ``save`` was given it."""

    id_masked: str
    state: LoopState
    scan_count: int
    updated_at: datetime


UpdateKey = tuple[str, datetime, HealthCode]
AlertKey = tuple[str, AlertKind, datetime]


@dataclass
class Tables:
    """The rows the store keeps, one dict per table, keyed as the table's primary key."""

    workers: dict[str, WorkerRow] = field(default_factory=dict)
    trips: dict[str, datetime] = field(default_factory=dict)
    scans: dict[str, AcceptedScan] = field(default_factory=dict)
    updates: dict[UpdateKey, datetime] = field(default_factory=dict)
    states: dict[str, StoredState] = field(default_factory=dict)
    alerts: dict[AlertKey, Alert] = field(default_factory=dict)
    dispositions: dict[str, AcceptedDisposition] = field(default_factory=dict)
    # By id: a sequence value taken when the row is written, as bigserial does.
    outbox: dict[int, OutboxMessage] = field(default_factory=dict)

    def overlaid_by(self, pending: Tables) -> Tables:
        """What a transaction sees: the committed rows with its own writes on top."""
        return Tables(
            **{name: {**getattr(self, name), **getattr(pending, name)} for name in _TABLES}
        )

    def take(self, pending: Tables) -> None:
        """Commit a transaction's writes: upserts, except in the scan log, where a scan_id
        another transaction committed meanwhile keeps its first version (insert-or-ignore)."""
        for scan_id, scan in pending.scans.items():
            self.scans.setdefault(scan_id, scan)
        for disposition_id, item in pending.dispositions.items():
            self.dispositions.setdefault(disposition_id, item)
        for name in _TABLES:
            if name not in ("scans", "dispositions"):
                getattr(self, name).update(getattr(pending, name))


_TABLES = ("workers", "trips", "scans", "updates", "states", "alerts", "dispositions", "outbox")


class TransactionAborted(Exception):
    """A statement after a refused one in the same transaction (PostgreSQL refuses them all)."""


def _utc(moment: datetime) -> datetime:
    # timestamptz comes back in UTC; a naive moment is read as local time, as asyncpg does.
    return moment.astimezone(UTC)


def _refusal(text: str) -> str | None:
    """Why PostgreSQL's text type would refuse ``text``, if it would."""
    if "\x00" in text:
        return 'invalid byte sequence for encoding "UTF8": 0x00'
    try:
        text.encode()
    except UnicodeEncodeError as error:
        return str(error)
    return None


class FakeUnitOfWork:
    """One transaction of a ``FakeLoopStore``: its writes stay its own until it commits."""

    def __init__(self, store: FakeLoopStore) -> None:
        self.store = store
        self.pending = Tables()
        self.aborted = False
        self.finished = asyncio.Event()

    def _view(self) -> Tables:
        return self.store.committed.overlaid_by(self.pending)

    def _check(self, *texts: str | None) -> None:
        """Refuse as PostgreSQL would; like it, refuse every later statement too."""
        if self.aborted:
            raise TransactionAborted("current transaction is aborted")
        for text in texts:
            if text is not None and (reason := _refusal(text)) is not None:
                self.aborted = True
                raise RecordRefused(reason)

    async def lock_workers(self, workers: dict[str, str]) -> dict[str, WorkerAssignment]:
        self._check(*workers, *workers.values())
        refs = sorted(workers)
        await self.store.lock(self, refs)
        known = self._view().workers
        for ref in refs:
            if ref not in known:
                self.pending.workers[ref] = known[ref] = WorkerRow(workers[ref])
        return {
            ref: WorkerAssignment(ref, known[ref].id_masked, known[ref].assignment) for ref in refs
        }

    async def record_scans(self, accepted: Sequence[AcceptedScan]) -> set[str]:
        for item in accepted:
            scan = item.scan
            self._check(
                item.worker_ref,
                item.id_masked,
                scan.scan_id,
                scan.station,
                scan.trip_id,
                scan.enterprise_id,
                item.source.topic if item.source else None,
            )
        known = self._view().scans
        new: set[str] = set()
        for item in accepted:
            if item.scan.scan_id not in known:
                stored = replace(
                    item,
                    scan=replace(item.scan, occurred_at=_utc(item.scan.occurred_at)),
                    received_at=_utc(item.received_at),
                )
                self.pending.scans[item.scan.scan_id] = known[item.scan.scan_id] = stored
                new.add(item.scan.scan_id)
        return new

    async def record_updates(self, accepted: Sequence[AcceptedHealthUpdate]) -> set[str]:
        self._check(*(item.worker_ref for item in accepted))
        known = self._view().updates
        touched: set[str] = set()
        for item in accepted:
            key = (item.worker_ref, _utc(item.update.as_of), item.update.health_code)
            if key not in known:
                self.pending.updates[key] = known[key] = _utc(item.received_at)
                touched.add(item.worker_ref)
        return touched

    async def record_dispositions(self, accepted: Sequence[AcceptedDisposition]) -> set[str]:
        self._check(
            *(item.worker_ref for item in accepted),
            *(
                text
                for item in accepted
                for text in (
                    item.disposition.disposition_id,
                    item.disposition.by,
                    item.disposition.note,
                )
            ),
        )
        known = self._view().dispositions
        touched: set[str] = set()
        for item in accepted:
            if item.disposition.disposition_id not in known:
                stored = replace(
                    item, disposition=replace(item.disposition, at=_utc(item.disposition.at))
                )
                self.pending.dispositions[item.disposition.disposition_id] = stored
                known[item.disposition.disposition_id] = stored
                touched.add(item.worker_ref)
        return touched

    async def load_histories(self, worker_refs: Sequence[str]) -> dict[str, WorkerHistory]:
        self._check(*worker_refs)
        view = self._view()
        scans = defaultdict(list)
        for item in view.scans.values():
            scans[item.worker_ref].append(item.scan)
        updates = defaultdict(list)
        for ref, as_of, colour in view.updates:
            updates[ref].append(HealthCodeUpdate(colour, as_of))
        alerts = defaultdict(list)
        for (ref, _, _), alert in view.alerts.items():
            alerts[ref].append(alert)
        dispositions = defaultdict(list)
        for item in view.dispositions.values():
            dispositions[item.worker_ref].append(item.disposition)
        return {
            ref: WorkerHistory.in_event_order(
                scans[ref], updates[ref], alerts[ref], dispositions[ref]
            )
            for ref in worker_refs
        }

    async def load_previous(self, worker_refs: Sequence[str]) -> dict[str, LoopState]:
        self._check(*worker_refs)
        states = self._view().states
        # Only stage and status are stored as columns the tracker reads back.
        return {
            ref: LoopState(stage=states[ref].state.stage, status=states[ref].state.status)
            if ref in states
            else LoopState()
            for ref in worker_refs
        }

    async def trip_etas(self, trip_ids: Iterable[str]) -> dict[str, datetime]:
        wanted = set(trip_ids)
        self._check(*wanted)
        trips = self._view().trips
        return {trip_id: trips[trip_id] for trip_id in sorted(wanted) if trip_id in trips}

    async def load_decision_inputs(self, worker_refs: Sequence[str]) -> DecisionInputs:
        histories = await self.load_histories(worker_refs)
        trips = {scan.trip_id for h in histories.values() for scan in h.scans if scan.trip_id}
        return DecisionInputs(
            histories, await self.load_previous(worker_refs), await self.trip_etas(trips)
        )

    async def save(self, saved: Sequence[SavedState], now: datetime) -> None:
        for item in saved:
            state = item.state
            self._check(
                item.worker_ref,
                item.id_masked,
                state.boarded_trip_id,
                state.checked_in_enterprise_id,
            )
            # Checkpoints are stored as JSONB, which has no room for U+0000 either.
            if b"\\u0000" in orjson.dumps({k.value: c for k, c in state.checkpoints.items()}):
                self.aborted = True
                raise RecordRefused("unsupported Unicode escape sequence \\u0000")
        for item in saved:
            self.pending.states[item.worker_ref] = StoredState(
                item.id_masked, item.state, item.scan_count, now
            )
            for alert in item.state.alerts:
                raised_at = _utc(alert.raised_at)
                self.pending.alerts[(item.worker_ref, alert.kind, raised_at)] = replace(
                    alert,
                    raised_at=raised_at,
                    closed_at=_utc(alert.closed_at) if alert.closed_at else None,
                )

    async def due_for_sweep(self, now: datetime, limit: int) -> dict[str, str]:
        self._check()
        view = self._view()
        due = sorted(
            (row.state.next_deadline, ref)
            for ref, row in view.states.items()
            if row.state.next_deadline is not None
            and row.state.next_deadline <= now
            and ref in view.workers
        )
        found: dict[str, str] = {}
        for _, ref in due:
            if len(found) == limit:
                break
            if self.store.try_lock(self, ref):
                found[ref] = view.workers[ref].id_masked
        return found

    async def add_to_outbox(self, messages: Sequence[OutboxMessage]) -> None:
        self._check(*(m.topic for m in messages))
        for message in messages:
            self.pending.outbox[next(self.store.outbox_ids)] = message


class FakeLoopStore:
    """``LoopStore`` (and ``Outbox``) in memory: transactions that commit or roll back whole, row locks
    held until the transaction ends, and the manifest rows a test seeds."""

    def __init__(self) -> None:
        self.committed = Tables()
        self._holders: dict[str, FakeUnitOfWork] = {}
        self.outbox_ids = itertools.count(1)
        self._relaying = False

    # What a manifest upsert would have written (``ManifestStore.upsert_manifest``).

    def seed_worker(
        self, worker_ref: str, *, id_masked: str = "000000********0000", **assignment: Any
    ) -> None:
        """A manifest's worker; ``assignment`` holds ``Assignment``'s fields (enterprise_id,
        trip_id, ...), which the next lock of this worker returns."""
        self.committed.workers[worker_ref] = WorkerRow(id_masked, Assignment(**assignment))

    def seed_trip(self, trip_id: str, *, eta: datetime) -> None:
        self.committed.trips[trip_id] = _utc(eta)

    # The port.

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeUnitOfWork]:
        uow = FakeUnitOfWork(self)
        committed = False
        try:
            yield uow
            committed = not uow.aborted  # PostgreSQL answers COMMIT with ROLLBACK then
        except (ValueError, OverflowError) as error:  # as PostgresStore: data it cannot take
            raise RecordRefused(str(error)) from error
        finally:
            self._end(uow, commit=committed)

    async def workers_after(
        self, after: str, limit: int, before: str | None = None
    ) -> dict[str, str]:
        tables = self.committed
        with_history = (
            {item.worker_ref for item in tables.scans.values()}
            | {ref for ref, _, _ in tables.updates}
            | set(tables.states)
        )
        refs = sorted(
            ref
            for ref in tables.workers
            if ref > after and (before is None or ref < before) and ref in with_history
        )
        return {ref: tables.workers[ref].id_masked for ref in refs[:limit]}

    async def applied_scan_count(self) -> int:
        return len(self.committed.scans)

    async def relay(self, publish: OutboxPublish, *, limit: int) -> int:
        if self._relaying:  # another relay has the turn (PostgreSQL's advisory lock)
            return 0
        self._relaying = True
        try:
            taken = sorted(self.committed.outbox.items())[:limit]
            if not taken:
                return 0
            await publish([message for _, message in taken])
            for message_id, _ in taken:
                del self.committed.outbox[message_id]
            return len(taken)
        finally:
            self._relaying = False

    # Row locks, held by a transaction until it ends.

    async def lock(self, uow: FakeUnitOfWork, refs: Iterable[str]) -> None:
        """Lock in the order given (the caller sorts: no deadlocks), waiting for holders."""
        for ref in refs:
            while (holder := self._holders.get(ref)) is not None and holder is not uow:
                await holder.finished.wait()
            self._holders[ref] = uow

    def try_lock(self, uow: FakeUnitOfWork, ref: str) -> bool:
        """Lock unless another transaction holds it (``SKIP LOCKED``)."""
        holder = self._holders.setdefault(ref, uow)
        return holder is uow

    def _end(self, uow: FakeUnitOfWork, *, commit: bool) -> None:
        if commit:
            self.committed.take(uow.pending)
        for ref in [ref for ref, holder in self._holders.items() if holder is uow]:
            del self._holders[ref]
        uow.finished.set()

    # What a test reads back.

    def state_of(self, worker_ref: str) -> LoopState | None:
        """The whole state last committed for this worker."""
        row = self.committed.states.get(worker_ref)
        return row.state if row else None

    def alerts_of(self, worker_ref: str) -> list[Alert]:
        """This worker's committed alerts, open and closed, oldest first."""
        return sorted(
            (alert for (ref, _, _), alert in self.committed.alerts.items() if ref == worker_ref),
            key=lambda alert: (alert.raised_at, alert.kind.value),
        )


class PublishFailed(Exception):
    """The fake broker is unreachable."""


class FakePublisher:
    """``Publisher`` that keeps what it was given, per topic, in order."""

    def __init__(self) -> None:
        self.published: dict[str, list[Message]] = defaultdict(list)
        self.failure: Exception | None = None

    def fail(self, error: Exception | None = None) -> None:
        """From now on every publish raises ``error`` (the broker went away)."""
        self.failure = error or PublishFailed("the broker is unreachable")

    def recover(self) -> None:
        self.failure = None

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        if not messages:  # as KafkaPublisher: nothing to send asks nothing of the broker
            return
        if self.failure is not None:
            raise self.failure
        self.published[topic].extend(messages)

    async def reachable(self) -> bool:
        return self.failure is None

    def values(self, topic: str) -> list[Any]:
        """The JSON values published on ``topic``, decoded."""
        return [orjson.loads(value) for _, value, _ in self.published[topic]]
