"""Apply accepted events to the store in one unit of work.

Each handler: lock the batch's workers, record the events idempotently, load
each worker's history, let the pure domain decide, save, write what the change
announces (transitions, alerts) to the outbox, commit. A scan seen before (same
scan_id) changes nothing. The outbox is relayed to Kafka afterwards
(``shared.service_layer.relay``): a crash after the commit loses no message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from shared.domain import model
from shared.service_layer.messages import (
    AcceptedDisposition,
    AcceptedHealthUpdate,
    AcceptedScan,
    outbox_messages,
)
from shared.service_layer.ports import LoopStore, SavedState, UnitOfWork, WorkerAssignment


@dataclass(frozen=True)
class WorkerTransition:
    worker_ref: str
    id_masked: str
    enterprise_id: str | None
    transition: model.Transition


async def _redecide(
    uow: UnitOfWork,
    assignments: dict[str, WorkerAssignment],
    refs: Iterable[str],
    *,
    rules: model.Rules,
    now: datetime,
    announce: bool = True,
) -> list[WorkerTransition]:
    """Decide the state of already locked workers from their stored history; with
    ``announce``, the changes and alerts go to the outbox in the same transaction."""
    refs = sorted(refs)
    if not refs:
        return []
    inputs = await uow.load_decision_inputs(refs)
    transitions = []
    for ref in refs:
        assignment = assignments[ref].assignment
        transition = model.apply(
            inputs.histories[ref],
            inputs.previous[ref],
            now=now,
            assignment=assignment,
            trip_etas=inputs.trip_etas,
            rules=rules,
        )
        transitions.append(
            WorkerTransition(ref, assignments[ref].id_masked, assignment.enterprise_id, transition)
        )
    await uow.save(
        [
            SavedState(
                t.worker_ref, t.id_masked, t.transition.state, len(t.transition.history.scans)
            )
            for t in transitions
        ],
        now,
    )
    if announce:
        await uow.add_to_outbox(
            [
                message
                for t in transitions
                for message in outbox_messages(t.worker_ref, t.enterprise_id, t.transition, now)
            ]
        )
    return transitions


async def apply_scans(
    store: LoopStore, batch: Sequence[AcceptedScan], *, rules: model.Rules, now: datetime
) -> tuple[list[WorkerTransition], set[str]]:
    """Apply a batch of accepted scans; return the transitions and the new scan_ids."""
    unique: dict[str, AcceptedScan] = {}
    for item in batch:
        unique.setdefault(item.scan.scan_id, item)
    async with store.transaction() as uow:
        # Lock first, so the scan log and the state are written by one writer at a time.
        assignments = await uow.lock_workers(
            {item.worker_ref: item.id_masked for item in unique.values()}
        )
        new_ids = await uow.record_scans(list(unique.values()))
        touched = {unique[scan_id].worker_ref for scan_id in new_ids}
        transitions = await _redecide(uow, assignments, touched, rules=rules, now=now)
    return transitions, new_ids


Keyed = TypeVar("Keyed", AcceptedHealthUpdate, AcceptedDisposition)


async def _apply_events(
    store: LoopStore,
    batch: Sequence[Keyed],
    record: Callable[[UnitOfWork, list[Keyed]], Awaitable[set[str]]],
    *,
    rules: model.Rules,
    now: datetime,
) -> list[WorkerTransition]:
    """Lock the batch's workers, ``record`` the events, re-decide those that got a new one."""
    async with store.transaction() as uow:
        assignments = await uow.lock_workers({item.worker_ref: item.id_masked for item in batch})
        touched = await record(uow, list(batch))
        return await _redecide(uow, assignments, touched, rules=rules, now=now)


async def apply_health_updates(
    store: LoopStore,
    batch: Sequence[AcceptedHealthUpdate],
    *,
    rules: model.Rules,
    now: datetime,
) -> list[WorkerTransition]:
    """Apply colour updates; an older ``as_of`` never overrides a newer one (event time)."""
    return await _apply_events(
        store, batch, lambda uow, items: uow.record_updates(items), rules=rules, now=now
    )


async def apply_dispositions(
    store: LoopStore,
    batch: Sequence[AcceptedDisposition],
    *,
    rules: model.Rules,
    now: datetime,
) -> list[WorkerTransition]:
    """Apply dispositions: events of the worker, folded in event time with the scans."""
    return await _apply_events(
        store, batch, lambda uow, items: uow.record_dispositions(items), rules=rules, now=now
    )


async def redecide_workers(
    store: LoopStore, workers: dict[str, str], *, rules: model.Rules, now: datetime
) -> list[WorkerTransition]:
    """Re-decide these workers (worker_ref -> id_masked) from their stored history.

    ``returnloop rebuild`` uses it: the workers' rows are locked as a batch locks
    them, so it is safe next to a running tracker. It announces nothing: a rebuild
    corrects stored states, it is not news of a worker (a rebuild after a restore
    would otherwise replay every worker's whole journey to the topics).
    """
    async with store.transaction() as uow:
        assignments = await uow.lock_workers(workers)
        return await _redecide(uow, assignments, workers, rules=rules, now=now, announce=False)


async def sweep_overdue(
    store: LoopStore, *, rules: model.Rules, now: datetime, limit: int = 1000
) -> list[WorkerTransition]:
    """Re-decide workers whose next deadline has passed (raises overdue alerts)."""
    async with store.transaction() as uow:
        due = await uow.due_for_sweep(now, limit)
        assignments = await uow.lock_workers(due)
        return await _redecide(uow, assignments, due, rules=rules, now=now)
