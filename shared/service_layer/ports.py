"""The service layer's ports: the small interfaces its handlers depend on.

Adapters implement them (``shared.adapters``); tests pass in-memory fakes
(``tests/fakes.py``), held to the same behaviour by one contract-test class.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from shared.contract import HealthCodeUpdateIn
from shared.domain.model import Assignment, LoopState, WorkerHistory

if TYPE_CHECKING:
    from shared.service_layer.messages import (
        AcceptedDisposition,
        AcceptedHealthUpdate,
        AcceptedScan,
        OutboxMessage,
    )


@dataclass(frozen=True)
class InputRecord:
    """One consumed Kafka record, independent of the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = 0
    headers: tuple[tuple[str, bytes], ...] = field(default_factory=tuple)


# A handler takes a batch and returns once its effect is durable; only then
# are the batch's offsets committed. Raising means "not applied: retry".
BatchHandler = Callable[[Sequence[InputRecord]], Awaitable[None]]

# A message to publish: key, value, headers.
Message = tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]


class Publisher(Protocol):
    """Where messages go; ``publish`` returns when every one of them is durable."""

    async def publish(self, topic: str, messages: Sequence[Message]) -> None: ...

    async def reachable(self) -> bool:
        """Whether the messages' destination answers now (for readiness)."""
        ...


@dataclass(frozen=True)
class WorkerIdentity:
    """Who a scan or colour update is about, past intake: never the plain ID number."""

    worker_ref: str
    id_masked: str


class CodeDirectory(Protocol):
    """The links from the codes workers show to the workers themselves."""

    async def resolve_codes(self, codes: Collection[str]) -> dict[str, WorkerIdentity]:
        """The worker each actively linked code names; unknown codes are left out."""
        ...


class RecordRefused(Exception):
    """The store refused a record's data itself (retrying the same data cannot help)."""


@dataclass(frozen=True)
class WorkerAssignment:
    """A locked worker: their masked ID and what the manifest expects of them."""

    worker_ref: str
    id_masked: str
    assignment: Assignment


@dataclass(frozen=True)
class DecisionInputs:
    """What re-deciding locked workers reads: each one's history and previous stage and
    status, and the ETA of every trip their scans name."""

    histories: dict[str, WorkerHistory]
    previous: dict[str, LoopState]
    trip_etas: dict[str, datetime]


@dataclass(frozen=True)
class SavedState:
    """A decided state to store, with the number of scans it was decided from."""

    worker_ref: str
    id_masked: str
    state: LoopState
    scan_count: int


class UnitOfWork(Protocol):
    """One transaction's worth of closed-loop writes: all commit together or none do."""

    async def lock_workers(self, workers: dict[str, str]) -> dict[str, WorkerAssignment]:
        """Create missing workers (worker_ref -> id_masked), then lock all of them."""
        ...

    async def record_scans(self, accepted: Sequence[AcceptedScan]) -> set[str]:
        """Log scans idempotently; return the scan_ids that were new."""
        ...

    async def record_updates(self, accepted: Sequence[AcceptedHealthUpdate]) -> set[str]:
        """Log colour updates; return the worker_refs that got a new one."""
        ...

    async def record_dispositions(self, accepted: Sequence[AcceptedDisposition]) -> set[str]:
        """Log dispositions idempotently; return the worker_refs that got a new one."""
        ...

    async def load_histories(self, worker_refs: Sequence[str]) -> dict[str, WorkerHistory]:
        """Every logged scan, colour update and stored alert of these workers."""
        ...

    async def load_previous(self, worker_refs: Sequence[str]) -> dict[str, LoopState]:
        """The stage and status each worker had before this transaction."""
        ...

    async def trip_etas(self, trip_ids: Iterable[str]) -> dict[str, datetime]:
        """The registered ``eta`` of each of these trips that has one."""
        ...

    async def load_decision_inputs(self, worker_refs: Sequence[str]) -> DecisionInputs:
        """``load_histories`` and ``load_previous`` of these workers, and ``trip_etas`` of
        the trips their scans name, read together (one round trip where it matters)."""
        ...

    async def save(self, saved: Sequence[SavedState], now: datetime) -> None:
        """Store decided states and their alerts."""
        ...

    async def due_for_sweep(self, now: datetime, limit: int) -> dict[str, str]:
        """Workers whose next deadline has passed, locked; others' locks are skipped."""
        ...

    async def add_to_outbox(self, messages: Sequence[OutboxMessage]) -> None:
        """Keep messages to publish once this transaction commits (gone with a rollback)."""
        ...


class LoopStore(Protocol):
    """Where units of work come from, and what a rebuild walks."""

    def transaction(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A unit of work: everything inside commits together or not at all."""
        ...

    async def workers_after(
        self, after: str, limit: int, before: str | None = None
    ) -> dict[str, str]:
        """The next ``limit`` workers after ``after`` (and before ``before``, if given)
        with anything to decide."""
        ...

    async def applied_scan_count(self) -> int:
        """How many scans the log holds."""
        ...


# Publishes a relay round's messages, in order; returns once the broker has them all.
OutboxPublish = Callable[[Sequence["OutboxMessage"]], Awaitable[None]]


class Outbox(Protocol):
    """Messages committed with the state that produced them, waiting to be published."""

    async def relay(self, publish: OutboxPublish, *, limit: int) -> int:
        """Hand up to ``limit`` of the oldest messages, in the order they were written, to
        ``publish``; delete them once it returns. One relay at a time: 0 when another holds
        the turn or nothing waits. If ``publish`` raises, every message stays."""
        ...


class LoopReads(Protocol):
    """The read model the API and the gauges use."""

    async def loop_view(self, worker_ref: str) -> object | None:
        """The loop view of one worker, ``None`` if unknown."""
        ...

    async def workers_by_stage_status(self) -> list[tuple[str, str, int]]:
        """(stage, status, count) over every known worker."""
        ...

    async def open_alerts_by_kind(self) -> list[tuple[str, int]]:
        """(kind, count) of open alerts."""
        ...


class PlatformError(RuntimeError):
    """The platform did not give a usable answer (down, refused, or malformed)."""


class HealthCodePlatform(Protocol):
    """Where the current health-code colour of a worker comes from."""

    async def colour_of(self, id_number: str) -> HealthCodeUpdateIn | None:
        """The worker's current colour and since when; None if the platform has no code.

        Raises ``PlatformError`` when the platform gives no usable answer."""
        ...


@dataclass(frozen=True)
class TransitWorker:
    """A worker in transit whose full ID number is kept, Fernet-encrypted."""

    worker_ref: str
    id_number_encrypted: str


class WorkersInTransit(Protocol):
    """Workers whose colour may still change the loop: departed, not yet checked in."""

    async def in_transit_after(self, after: str, limit: int) -> list[TransitWorker]:
        """The next ``limit`` such workers with an encrypted ID number, by ``worker_ref``
        after ``after`` ("" for the first page), in ``worker_ref`` order."""
        ...
