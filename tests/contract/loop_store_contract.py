"""One contract for every ``LoopStore``: the in-memory fake and PostgreSQL pass the same tests.

Subclassed once per store (``tests/unit/test_fake_loop_store.py``,
``tests/integration/test_postgres_loop_store.py``), so the fake the service-layer
unit tests rely on cannot drift from the store the tracker runs on.

Tests share a database with other tests and with running trackers: every id is
random, and what a test must see alone (sweep deadlines) it either never commits
or keeps locked.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from shared.domain.model import (
    Alert,
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
    SourcePosition,
)
from shared.service_layer.ports import LoopStore, Outbox, RecordRefused, SavedState

T0 = datetime(2020, 3, 2, 8, 0, tzinfo=UTC)
MASKED = "520502********1238"


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def new_ref() -> str:
    # Lowercase hex, like a real worker_ref: ordered the same by Python and any collation.
    return secrets.token_hex(16)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


_KIND_FIELDS: dict[Kind, dict[str, Any]] = {
    Kind.DEPARTURE_CHECK: {"temperature_c": 36.6, "health_code": HealthCode.GREEN},
    Kind.BOARDING: {"trip_id": "bus-guiyang-ningbo-0302"},
    Kind.ARRIVAL_CHECK: {"temperature_c": 36.8, "health_code": HealthCode.GREEN},
    Kind.CHECKIN: {"enterprise_id": "yinzhou-textile"},
}


def scan(
    worker_ref: str, kind: Kind = Kind.DEPARTURE_CHECK, hours: float = 0, **fields: Any
) -> AcceptedScan:
    """An accepted scan of ``kind`` at ``hours`` after T0; ``fields`` override the scan's."""
    body: dict[str, Any] = {
        "scan_id": new_id(kind.value),
        "kind": kind,
        "occurred_at": at(hours),
        "station": f"{kind.value} station",
        **_KIND_FIELDS[kind],
        **fields,
    }
    return AcceptedScan(
        worker_ref, MASKED, Scan(**body), received_at=at(100), source=SourcePosition("t", 1, 7)
    )


def disposition(
    worker_ref: str, kind: DispositionKind, hours: float, *, disposition_id: str | None = None
) -> AcceptedDisposition:
    return AcceptedDisposition(
        worker_ref,
        MASKED,
        Disposition(
            disposition_id or new_id("disposition"),
            kind,
            at(hours),
            "health_station:0a1b2c3d",
            "isolated at the county hospital",
        ),
        received_at=at(100),
    )


def colour(worker_ref: str, health_code: HealthCode, hours: float) -> AcceptedHealthUpdate:
    return AcceptedHealthUpdate(
        worker_ref, MASKED, HealthCodeUpdate(health_code, at(hours)), received_at=at(100)
    )


def saved(worker_ref: str, state: LoopState, scan_count: int = 0) -> SavedState:
    return SavedState(worker_ref, MASKED, state, scan_count)


def sweep_times(count: int) -> list[datetime]:
    """``count`` moments a microsecond apart, before every moment an earlier call gave.

    Rows stay in the shared database; the later the wall clock, the earlier these
    moments, so a deadline another test left behind is never due before ours.
    """
    start = datetime(1900, 1, 1, tzinfo=UTC) - timedelta(microseconds=time.time_ns() // 1000)
    return [start + timedelta(microseconds=step) for step in range(count)]


class Discard(Exception):
    """Ends a transaction without committing: nobody else ever sees what it wrote."""


class LoopStoreContract:
    """What the service layer relies on from a ``LoopStore`` and its units of work."""

    async def test_dispositions_come_back_in_event_order_and_count_once(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        later = disposition(ref, DispositionKind.RELEASED, 5)
        earlier = disposition(ref, DispositionKind.ISOLATION, 1)
        async with store.transaction() as uow:
            await uow.lock_workers({ref: MASKED})
            assert await uow.record_dispositions([later]) == {ref}
        async with store.transaction() as uow:
            await uow.lock_workers({ref: MASKED})
            assert await uow.record_dispositions([earlier, later]) == {ref}
            assert await uow.record_dispositions([later]) == set()
        async with store.transaction() as uow:
            history = (await uow.load_histories([ref]))[ref]
        assert history.dispositions == (earlier.disposition, later.disposition)

    # What a refused statement raises inside the transaction (out of it: RecordRefused),
    # and what any later statement of that transaction raises.
    refused_inside: type[Exception]
    aborted: type[Exception]

    @pytest.fixture
    def store(self) -> LoopStore:
        raise NotImplementedError

    async def seed_worker(
        self,
        store: LoopStore,
        worker_ref: str,
        *,
        id_masked: str,
        enterprise_id: str | None,
        trip_id: str | None,
        travel: Travel = Travel.ORGANISED,
        expected_arrival: datetime | None = None,
    ) -> None:
        """Put a manifest's worker row in place, as ``POST /v1/manifests`` would."""
        raise NotImplementedError

    async def seed_trip(self, store: LoopStore, trip_id: str, *, eta: datetime) -> None:
        """Put a manifest's trip in place, as ``POST /v1/manifests`` would."""
        raise NotImplementedError

    async def assert_nothing_kept(self, store: LoopStore, worker_ref: str) -> None:
        """No scan, colour, state, alert or worker row of ``worker_ref`` was committed."""
        with pytest.raises(Discard):
            async with store.transaction() as uow:
                assert (await uow.load_histories([worker_ref]))[worker_ref] == WorkerHistory()
                assert (await uow.load_previous([worker_ref]))[worker_ref] == LoopState()
                locked = await uow.lock_workers({worker_ref: "another mask"})
                assert locked[worker_ref].id_masked == "another mask"
                raise Discard

    # The scan log: idempotent on scan_id.

    async def test_recording_scans_returns_the_scan_ids_that_were_new(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        first, second = scan(ref, hours=0), scan(ref, Kind.BOARDING, hours=1)
        async with store.transaction() as uow:
            await uow.lock_workers({ref: MASKED})
            assert await uow.record_scans([]) == set()
            assert await uow.record_scans([first, second]) == {
                first.scan.scan_id,
                second.scan.scan_id,
            }

    async def test_a_scan_recorded_again_is_not_new_and_is_kept_once(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        first, second = scan(ref, hours=0), scan(ref, Kind.BOARDING, hours=1)
        async with store.transaction() as uow:
            await uow.lock_workers({ref: MASKED})
            await uow.record_scans([first])
            assert await uow.record_scans([first]) == set()  # again, same transaction
        async with store.transaction() as uow:
            assert await uow.record_scans([first, second, second]) == {second.scan.scan_id}
            history = (await uow.load_histories([ref]))[ref]
        assert history.scans == (first.scan, second.scan)

    async def test_histories_of_a_batch_hold_each_workers_own_scans_once(
        self, store: LoopStore
    ) -> None:
        # Enough workers to land in every partition of the log; one asked twice, one unknown.
        refs = [new_ref() for _ in range(40)]
        scans = {ref: [scan(ref, hours=0), scan(ref, Kind.BOARDING, hours=1)] for ref in refs}
        async with store.transaction() as uow:
            await uow.lock_workers(dict.fromkeys(refs, MASKED))
            await uow.record_scans([item for each in scans.values() for item in each])
        unknown = new_ref()
        async with store.transaction() as uow:
            histories = await uow.load_histories([*refs, refs[0], unknown])
        assert set(histories) == {*refs, unknown}
        for ref in refs:
            assert histories[ref].scans == tuple(item.scan for item in scans[ref])
        assert histories[unknown] == WorkerHistory()

    async def test_the_scan_id_alone_is_the_idempotency_key(self, store: LoopStore) -> None:
        ref, other = new_ref(), new_ref()
        original = scan(ref)
        same_id_elsewhere = scan(other, Kind.CHECKIN, hours=5, scan_id=original.scan.scan_id)
        async with store.transaction() as uow:
            await uow.record_scans([original])
        async with store.transaction() as uow:
            assert await uow.record_scans([same_id_elsewhere]) == set()
            histories = await uow.load_histories([ref, other])
        assert histories[ref].scans == (original.scan,)
        assert histories[other].scans == ()

    async def test_a_scan_comes_back_with_every_field_it_was_recorded_with(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        recorded = [
            scan(ref, Kind.DEPARTURE_CHECK, 0, temperature_c=38.45, health_code=HealthCode.RED),
            scan(
                ref,
                Kind.BOARDING,
                1,
                trip_id=new_id("trip"),
                station="bus door 3",
                override_reason="boarded on the team leader's word",
            ),
            scan(ref, Kind.ARRIVAL_CHECK, 2, temperature_c=36.1, health_code=HealthCode.YELLOW),
            scan(ref, Kind.CHECKIN, 3, enterprise_id=new_id("enterprise")),
        ]
        async with store.transaction() as uow:
            await uow.record_scans(recorded)
        async with store.transaction() as uow:
            history = (await uow.load_histories([ref]))[ref]
        assert history.scans == tuple(item.scan for item in recorded)
        assert all(s.occurred_at.utcoffset() == timedelta(0) for s in history.scans)

    async def test_history_lists_scans_in_event_order_whatever_order_they_were_recorded_in(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        departure = scan(ref, Kind.DEPARTURE_CHECK, 0)
        # Same moment: the checkpoints' order decides, then the scan_id.
        boarding_a = scan(ref, Kind.BOARDING, 1, scan_id=f"a-{new_ref()}")
        boarding_b = scan(ref, Kind.BOARDING, 1, scan_id=f"b-{new_ref()}")
        arrival_same_moment = scan(ref, Kind.ARRIVAL_CHECK, 1)
        late_checkin = scan(ref, Kind.CHECKIN, 3)
        async with store.transaction() as uow:
            await uow.record_scans([late_checkin, arrival_same_moment, boarding_b])
        async with store.transaction() as uow:
            await uow.record_scans([boarding_a, departure])
            history = (await uow.load_histories([ref]))[ref]
        assert history.scans == tuple(
            item.scan
            for item in (departure, boarding_a, boarding_b, arrival_same_moment, late_checkin)
        )

    async def test_the_history_of_an_unknown_worker_is_empty(self, store: LoopStore) -> None:
        ref = new_ref()
        async with store.transaction() as uow:
            assert await uow.load_histories([ref]) == {ref: WorkerHistory()}

    async def test_the_scan_log_counts_what_was_committed(self, store: LoopStore) -> None:
        before = await store.applied_scan_count()
        async with store.transaction() as uow:
            await uow.record_scans([scan(new_ref()), scan(new_ref())])
        assert await store.applied_scan_count() >= before + 2  # others may add to it too

    # Colour updates: kept once per (worker, as_of, colour).

    async def test_colour_updates_are_kept_once_and_name_the_workers_that_got_a_new_one(
        self, store: LoopStore
    ) -> None:
        ref, other = new_ref(), new_ref()
        red = colour(ref, HealthCode.RED, 2)
        async with store.transaction() as uow:
            assert await uow.record_updates([]) == set()
            assert await uow.record_updates([red, colour(other, HealthCode.GREEN, 1)]) == {
                ref,
                other,
            }
        async with store.transaction() as uow:
            assert await uow.record_updates([red]) == set()
            # The same moment with another colour is another update.
            assert await uow.record_updates([red, colour(ref, HealthCode.YELLOW, 2)]) == {ref}
            history = (await uow.load_histories([ref]))[ref]
        assert set(history.updates) == {
            HealthCodeUpdate(HealthCode.RED, at(2)),
            HealthCodeUpdate(HealthCode.YELLOW, at(2)),
        }

    async def test_history_lists_colour_updates_in_event_order(self, store: LoopStore) -> None:
        ref = new_ref()
        async with store.transaction() as uow:
            await uow.record_updates(
                [colour(ref, HealthCode.GREEN, 5), colour(ref, HealthCode.RED, 1)]
            )
            await uow.record_updates([colour(ref, HealthCode.YELLOW, 3)])
        async with store.transaction() as uow:
            history = (await uow.load_histories([ref]))[ref]
        assert history.updates == (
            HealthCodeUpdate(HealthCode.RED, at(1)),
            HealthCodeUpdate(HealthCode.YELLOW, at(3)),
            HealthCodeUpdate(HealthCode.GREEN, at(5)),
        )

    # States and alerts.

    async def test_a_saved_state_comes_back_as_the_previous_stage_and_status(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        state = LoopState(
            stage=Stage.BOARDED,
            status=Status.BROKEN,
            checkpoints={Kind.BOARDING: Checkpoint("b1", at(1), False, "bus door", trip_id="x")},
            health_code=HealthCode.GREEN,
            departed=True,
            boarded_trip_id="x",
        )
        async with store.transaction() as uow:
            await uow.save([saved(ref, state, scan_count=2)], at(2))
        async with store.transaction() as uow:
            previous = await uow.load_previous([ref])
        # Only the stage and status come back: all a transition compares.
        assert previous == {ref: LoopState(stage=Stage.BOARDED, status=Status.BROKEN)}

    async def test_a_worker_never_saved_was_registered_and_open(self, store: LoopStore) -> None:
        ref = new_ref()
        async with store.transaction() as uow:
            assert await uow.load_previous([ref]) == {ref: LoopState()}

    async def test_saving_again_replaces_the_state(self, store: LoopStore) -> None:
        ref, other = new_ref(), new_ref()
        async with store.transaction() as uow:
            await uow.save(
                [
                    saved(ref, LoopState(stage=Stage.BOARDED)),
                    saved(other, LoopState(stage=Stage.BOARDED)),
                ],
                at(1),
            )
        async with store.transaction() as uow:
            await uow.save(
                [saved(ref, LoopState(stage=Stage.CHECKED_IN, status=Status.CLOSED))], at(2)
            )
        async with store.transaction() as uow:
            assert await uow.load_previous([ref, other]) == {
                ref: LoopState(stage=Stage.CHECKED_IN, status=Status.CLOSED),
                other: LoopState(stage=Stage.BOARDED),
            }

    async def test_an_alert_saved_open_then_closed_is_one_alert_closed(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        fever = Alert(AlertKind.FEVER_AT_DEPARTURE, at(0))
        async with store.transaction() as uow:
            await uow.save([saved(ref, LoopState(status=Status.HELD, alerts=(fever,)))], at(0))
        async with store.transaction() as uow:
            assert (await uow.load_histories([ref]))[ref].alerts == (fever,)
            closed = replace(fever, open=False, closed_at=at(1))
            await uow.save([saved(ref, LoopState(alerts=(closed,)))], at(1))
        async with store.transaction() as uow:
            assert (await uow.load_histories([ref]))[ref].alerts == (closed,)

    async def test_alerts_left_out_of_a_later_state_stay_as_history(self, store: LoopStore) -> None:
        ref = new_ref()
        fever = Alert(AlertKind.FEVER_AT_DEPARTURE, at(0), open=False, closed_at=at(1))
        mismatch = Alert(AlertKind.TRIP_MISMATCH, at(2))
        async with store.transaction() as uow:
            await uow.save([saved(ref, LoopState(alerts=(fever,)))], at(1))
        async with store.transaction() as uow:
            await uow.save([saved(ref, LoopState(status=Status.BROKEN, alerts=(mismatch,)))], at(2))
        async with store.transaction() as uow:
            assert set((await uow.load_histories([ref]))[ref].alerts) == {fever, mismatch}

    # A transaction: its own writes seen by itself only, all kept or none.

    async def test_a_transaction_reads_its_own_writes(self, store: LoopStore) -> None:
        ref = new_ref()
        departure = scan(ref)
        fever = Alert(AlertKind.FEVER_AT_DEPARTURE, at(0))
        with pytest.raises(Discard):
            async with store.transaction() as uow:
                await uow.lock_workers({ref: MASKED})
                await uow.record_scans([departure])
                await uow.record_updates([colour(ref, HealthCode.RED, 1)])
                await uow.save([saved(ref, LoopState(status=Status.HELD, alerts=(fever,)))], at(1))
                assert (await uow.load_histories([ref]))[ref] == WorkerHistory(
                    (departure.scan,), (HealthCodeUpdate(HealthCode.RED, at(1)),), (fever,)
                )
                assert (await uow.load_previous([ref]))[ref] == LoopState(status=Status.HELD)
                raise Discard

    async def test_what_a_transaction_writes_is_unseen_by_others_until_it_commits(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        departure = scan(ref)
        async with store.transaction() as writer:
            await writer.lock_workers({ref: MASKED})
            await writer.record_scans([departure])
            await writer.save([saved(ref, LoopState(stage=Stage.DEPARTURE_CLEARED))], at(0))
            async with store.transaction() as reader:
                assert (await reader.load_histories([ref]))[ref] == WorkerHistory()
                assert (await reader.load_previous([ref]))[ref] == LoopState()
        async with store.transaction() as reader:
            assert (await reader.load_histories([ref]))[ref].scans == (departure.scan,)
            assert (await reader.load_previous([ref]))[ref].stage is Stage.DEPARTURE_CLEARED

    async def test_an_exception_rolls_back_everything_the_transaction_wrote(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        departure = scan(ref)
        deadline, now = sweep_times(2)

        class Boom(Exception):
            pass

        with pytest.raises(Boom):
            async with store.transaction() as uow:
                await uow.lock_workers({ref: MASKED})
                await uow.record_scans([departure])
                await uow.record_updates([colour(ref, HealthCode.RED, 1)])
                state = LoopState(
                    status=Status.HELD,
                    alerts=(Alert(AlertKind.FEVER_AT_DEPARTURE, at(0)),),
                    next_deadline=deadline,
                )
                await uow.save([saved(ref, state)], at(1))
                raise Boom
        await self.assert_nothing_kept(store, ref)
        with pytest.raises(Discard):
            async with store.transaction() as uow:
                assert ref not in await uow.due_for_sweep(now, 100)
                assert await uow.record_scans([departure]) == {departure.scan.scan_id}
                raise Discard
        assert ref not in await store.workers_after(ref[:-1], 100)

    # Workers: created on first sight, locked, and assigned by the manifest.

    async def test_locking_creates_missing_workers_with_no_assignment(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        async with store.transaction() as uow:
            locked = await uow.lock_workers({ref: MASKED})
        assert locked[ref].worker_ref == ref
        assert locked[ref].id_masked == MASKED
        assert (locked[ref].assignment.enterprise_id, locked[ref].assignment.trip_id) == (
            None,
            None,
        )

    async def test_locking_a_manifest_worker_gives_their_enterprise_and_trip(
        self, store: LoopStore
    ) -> None:
        ref, fresh = new_ref(), new_ref()
        enterprise, trip = new_id("enterprise"), new_id("trip")
        await self.seed_worker(
            store, ref, id_masked="330302********1234", enterprise_id=enterprise, trip_id=trip
        )
        async with store.transaction() as uow:
            locked = await uow.lock_workers({ref: MASKED, fresh: MASKED})
        assert locked[ref].id_masked == "330302********1234"  # the row's, not the caller's
        assert locked[ref].assignment.enterprise_id == enterprise
        assert locked[ref].assignment.trip_id == trip
        assert locked[fresh].assignment.enterprise_id is None

    async def test_locking_a_worker_travelling_on_their_own_gives_their_expected_arrival(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        await self.seed_worker(
            store,
            ref,
            id_masked=MASKED,
            enterprise_id=new_id("enterprise"),
            trip_id=None,
            travel=Travel.SELF,
            expected_arrival=at(9),
        )
        async with store.transaction() as uow:
            locked = await uow.lock_workers({ref: MASKED})
        assert locked[ref].assignment.travel is Travel.SELF
        assert locked[ref].assignment.expected_arrival == at(9)

    async def test_locking_a_known_worker_keeps_their_stored_masked_id(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        async with store.transaction() as uow:
            await uow.lock_workers({ref: MASKED})
        async with store.transaction() as uow:
            locked = await uow.lock_workers({ref: "110105********002X"})
        assert locked[ref].id_masked == MASKED

    async def test_a_worker_locked_by_one_transaction_waits_until_it_ends(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        async with store.transaction() as uow:
            await uow.lock_workers({ref: MASKED})
        second_has_lock = asyncio.Event()

        async def second() -> None:
            async with store.transaction() as uow:
                await uow.lock_workers({ref: MASKED})
                second_has_lock.set()

        async with store.transaction() as first:
            await first.lock_workers({ref: MASKED})
            waiting = asyncio.create_task(second())
            done, _ = await asyncio.wait({waiting}, timeout=0.1)
            assert not done and not second_has_lock.is_set()
        await asyncio.wait_for(waiting, 10)
        assert second_has_lock.is_set()

    async def test_trip_etas_answers_for_the_known_trips_only(self, store: LoopStore) -> None:
        trip, unknown = new_id("trip"), new_id("trip")
        await self.seed_trip(store, trip, eta=at(9))
        async with store.transaction() as uow:
            assert await uow.trip_etas([trip, unknown, trip]) == {trip: at(9)}
            assert await uow.trip_etas([]) == {}

    async def test_decision_inputs_are_each_workers_history_and_previous_state_and_the_etas_of_the_trips_their_scans_name(
        self, store: LoopStore
    ) -> None:
        ref, other, unknown = new_ref(), new_ref(), new_ref()
        boarded, unnamed, unregistered = new_id("trip"), new_id("trip"), new_id("trip")
        await self.seed_trip(store, boarded, eta=at(9))
        await self.seed_trip(store, unnamed, eta=at(10))
        departure, boarding = scan(ref), scan(ref, Kind.BOARDING, hours=1, trip_id=boarded)
        elsewhere = scan(other, Kind.BOARDING, hours=1, trip_id=unregistered)
        fever = Alert(AlertKind.FEVER_AT_DEPARTURE, at(0), open=False, closed_at=at(1))
        isolation = disposition(ref, DispositionKind.ISOLATION, 2)
        async with store.transaction() as uow:
            await uow.lock_workers(dict.fromkeys((ref, other), MASKED))
            await uow.record_scans([boarding, departure, elsewhere])
            await uow.record_updates([colour(ref, HealthCode.YELLOW, 3)])
            await uow.record_dispositions([isolation])
            await uow.save(
                [saved(ref, LoopState(stage=Stage.BOARDED, status=Status.HELD, alerts=(fever,)))],
                at(3),
            )
        async with store.transaction() as uow:
            inputs = await uow.load_decision_inputs([ref, other, unknown, ref])
        assert inputs.histories == {
            ref: WorkerHistory(
                (departure.scan, boarding.scan),
                (HealthCodeUpdate(HealthCode.YELLOW, at(3)),),
                (fever,),
                (isolation.disposition,),
            ),
            other: WorkerHistory((elsewhere.scan,)),
            unknown: WorkerHistory(),
        }
        assert inputs.previous == {
            ref: LoopState(stage=Stage.BOARDED, status=Status.HELD),
            other: LoopState(),
            unknown: LoopState(),
        }
        # Only the trips the scans name, and of those only the registered ones.
        assert inputs.trip_etas == {boarded: at(9)}

    # The sweep: workers past their next deadline, earliest first, others' locks skipped.

    async def test_only_workers_past_their_next_deadline_are_due(self, store: LoopStore) -> None:
        early, exactly, later, never, no_row = (new_ref() for _ in range(5))
        deadline, now, after = sweep_times(3)
        with pytest.raises(Discard):  # uncommitted: no running tracker sweeps these
            async with store.transaction() as uow:
                await uow.lock_workers({ref: MASKED for ref in (early, exactly, later, never)})
                await uow.save(
                    [
                        saved(early, LoopState(next_deadline=deadline)),
                        saved(exactly, LoopState(next_deadline=now)),
                        saved(later, LoopState(next_deadline=after)),
                        saved(never, LoopState()),
                        saved(no_row, LoopState(next_deadline=deadline)),  # no workers row
                    ],
                    at(0),
                )
                due = await uow.due_for_sweep(now, 100)
                assert {early: MASKED, exactly: MASKED}.items() <= due.items()
                assert not {later, never, no_row} & due.keys()
                raise Discard

    async def test_the_sweep_takes_the_earliest_deadlines_first_up_to_the_limit(
        self, store: LoopStore
    ) -> None:
        refs = [new_ref() for _ in range(4)]
        *deadlines, now = sweep_times(5)
        with pytest.raises(Discard):
            async with store.transaction() as uow:
                await uow.lock_workers(dict.fromkeys(refs, MASKED))
                await uow.save(
                    [
                        saved(ref, LoopState(next_deadline=deadline))
                        for ref, deadline in zip(refs, reversed(deadlines), strict=True)
                    ],
                    at(0),
                )
                assert set(await uow.due_for_sweep(now, 2)) == {refs[3], refs[2]}
                raise Discard

    async def test_the_sweep_skips_workers_another_transaction_holds(
        self, store: LoopStore
    ) -> None:
        held, free = new_ref(), new_ref()
        deadline, now = sweep_times(2)
        async with store.transaction() as uow:
            await uow.lock_workers({held: MASKED, free: MASKED})
        async with store.transaction() as holder:
            # Locked before its deadline is committed: no running tracker sweeps it meanwhile.
            await holder.lock_workers({held: MASKED})
            async with store.transaction() as uow:
                await uow.save([saved(held, LoopState(next_deadline=deadline))], at(0))
            async with store.transaction() as sweeper:
                assert held not in await sweeper.due_for_sweep(now, 100)
            assert held in await holder.due_for_sweep(now, 100)  # its own lock does not hide it
            async with store.transaction() as uow:
                await uow.save([saved(held, LoopState())], at(1))  # not due any more

    # Rebuild's paging.

    async def test_workers_after_pages_through_workers_with_anything_to_decide_in_order(
        self, store: LoopStore
    ) -> None:
        prefix = secrets.token_hex(8)
        scanned, coloured, stated, locked_only, manifest_only, last = (
            f"{prefix}{digit}" for digit in "012345"
        )
        await self.seed_worker(
            store, manifest_only, id_masked=MASKED, enterprise_id="e", trip_id=None
        )
        async with store.transaction() as uow:
            await uow.lock_workers(
                {
                    scanned: "a",
                    coloured: "b",
                    stated: "c",
                    locked_only: "d",
                    last: "f",
                }
            )
            await uow.record_scans([scan(scanned), scan(last)])
            await uow.record_updates([colour(coloured, HealthCode.YELLOW, 1)])
            await uow.save([SavedState(stated, "c", LoopState(), 0)], at(0))
        first = await store.workers_after(prefix, 2)
        assert list(first.items()) == [(scanned, "a"), (coloured, "b")]
        second = await store.workers_after(coloured, 2)
        assert list(second.items()) == [(stated, "c"), (last, "f")]
        # A range of its own (a rebuild process's): nothing at or past ``before``.
        bounded = await store.workers_after(prefix, 10, before=stated)
        assert list(bounded) == [scanned, coloured]
        assert list(await store.workers_after(stated, 10, before=last)) == []

    # Data the store refuses: RecordRefused, and nothing of the transaction kept.

    @pytest.mark.parametrize("field", ["scan_id", "station", "trip_id", "enterprise_id"])
    async def test_a_scan_with_a_nul_character_is_refused_with_its_whole_transaction(
        self, store: LoopStore, field: str
    ) -> None:
        ref = new_ref()
        good = scan(ref)
        bad = scan(ref, Kind.CHECKIN, 5, **{field: f"nul\x00in {field}"})
        with pytest.raises(RecordRefused):
            async with store.transaction() as uow:
                await uow.lock_workers({ref: MASKED})
                await uow.record_scans([good, bad])
        await self.assert_nothing_kept(store, ref)

    async def test_text_that_cannot_be_utf8_is_refused(self, store: LoopStore) -> None:
        ref = new_ref()
        with pytest.raises(RecordRefused):
            async with store.transaction() as uow:
                await uow.record_scans([scan(ref, Kind.BOARDING, trip_id="lone \ud800 half")])
        await self.assert_nothing_kept(store, ref)

    async def test_a_masked_id_with_a_nul_character_is_refused(self, store: LoopStore) -> None:
        ref = new_ref()
        with pytest.raises(RecordRefused):
            async with store.transaction() as uow:
                await uow.lock_workers({ref: "520502**\x00*****1238"})
        await self.assert_nothing_kept(store, ref)

    async def test_a_state_with_a_nul_character_in_a_checkpoint_is_refused(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        checkpoint = Checkpoint("d1", at(0), True, "gate\x00 3")
        with pytest.raises(RecordRefused):
            async with store.transaction() as uow:
                await uow.lock_workers({ref: MASKED})
                await uow.save(
                    [saved(ref, LoopState(checkpoints={Kind.DEPARTURE_CHECK: checkpoint}))], at(0)
                )
        await self.assert_nothing_kept(store, ref)

    async def test_a_refusal_caught_inside_the_transaction_still_spoils_all_of_it(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        async with store.transaction() as uow:
            await uow.lock_workers({ref: MASKED})
            await uow.record_scans([scan(ref)])
            with pytest.raises(self.refused_inside):
                await uow.record_scans([scan(ref, scan_id="nul\x00")])
            with pytest.raises(self.aborted):
                await uow.load_histories([ref])
        await self.assert_nothing_kept(store, ref)

    async def test_a_value_error_inside_the_transaction_comes_out_as_refused_data(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        with pytest.raises(RecordRefused):
            async with store.transaction() as uow:
                await uow.lock_workers({ref: MASKED})
                await uow.record_scans([scan(ref)])
                raise ValueError("a value no column can hold")
        await self.assert_nothing_kept(store, ref)

    # The outbox. Other tests' trackers may have left messages there: each test looks
    # only at its own (by message_id) and lets the relay hand on whatever else it finds.

    @staticmethod
    def outgoing(ref: str, n: int) -> list[OutboxMessage]:
        return [
            OutboxMessage(str(uuid.uuid4()), "loop.transitions", ref.encode(), f"{i}".encode())
            for i in range(n)
        ]

    @staticmethod
    async def relay_all(store: LoopStore, mine: set[str]) -> list[OutboxMessage]:
        """Relay until nothing is left; return the messages among ``mine``, as handed on."""
        outbox = cast(Outbox, store)
        seen: list[OutboxMessage] = []

        async def publish(messages: Sequence[OutboxMessage]) -> None:
            seen.extend(m for m in messages if m.message_id in mine)

        for _ in range(1000):
            if not await outbox.relay(publish, limit=1000):
                break
        return seen

    async def test_outbox_messages_committed_are_relayed_once_in_the_order_written(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        first, second = self.outgoing(ref, 3), self.outgoing(ref, 2)
        async with store.transaction() as uow:
            await uow.lock_workers({ref: MASKED})
            await uow.add_to_outbox(first)
        async with store.transaction() as uow:
            await uow.lock_workers({ref: MASKED})
            await uow.add_to_outbox(second)
        mine = {m.message_id for m in first + second}

        assert await self.relay_all(store, mine) == first + second
        assert await self.relay_all(store, mine) == []  # deleted once handed on

    async def test_outbox_messages_of_a_rolled_back_transaction_are_never_relayed(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        lost = self.outgoing(ref, 2)
        with pytest.raises(RuntimeError):
            async with store.transaction() as uow:
                await uow.lock_workers({ref: MASKED})
                await uow.add_to_outbox(lost)
                raise RuntimeError("the batch failed after writing its messages")
        assert await self.relay_all(store, {m.message_id for m in lost}) == []

    async def test_a_failed_publish_keeps_every_message_for_the_next_relay(
        self, store: LoopStore
    ) -> None:
        ref = new_ref()
        kept = self.outgoing(ref, 3)
        async with store.transaction() as uow:
            await uow.lock_workers({ref: MASKED})
            await uow.add_to_outbox(kept)

        async def broker_away(messages: Sequence[OutboxMessage]) -> None:
            raise ConnectionError("the broker is away")

        with pytest.raises(ConnectionError):
            await cast(Outbox, store).relay(broker_away, limit=1000)
        assert await self.relay_all(store, {m.message_id for m in kept}) == kept

    async def test_one_relay_at_a_time(self, store: LoopStore) -> None:
        ref = new_ref()
        waiting = self.outgoing(ref, 1)
        async with store.transaction() as uow:
            await uow.lock_workers({ref: MASKED})
            await uow.add_to_outbox(waiting)
        outbox = cast(Outbox, store)
        inside, release = asyncio.Event(), asyncio.Event()

        async def slow(messages: Sequence[OutboxMessage]) -> None:
            inside.set()
            await release.wait()

        first = asyncio.create_task(outbox.relay(slow, limit=1000))
        await asyncio.wait_for(inside.wait(), 10)

        async def must_not_run(messages: Sequence[OutboxMessage]) -> None:
            raise AssertionError("a second relay ran while the first had the turn")

        assert await outbox.relay(must_not_run, limit=1000) == 0
        release.set()
        assert await first >= 1
        assert await self.relay_all(store, {m.message_id for m in waiting}) == []
