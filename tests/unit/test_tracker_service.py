"""The tracker's service layer on in-memory fakes: intake, apply, poison isolation, sweep, rebuild.

The tracker is wired by ``services.tracker.main.bootstrap``, the same function the
running service uses, with ``FakeLoopStore`` and ``FakePublisher`` passed in.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.tracker.main import bootstrap
from shared import topics
from shared.adapters.metrics import Metrics
from shared.domain.model import Disposition, LoopState
from shared.domain.vocabulary import AlertKind, DispositionKind, Stage, Status
from shared.identity import check_digit
from shared.service_layer import handlers
from shared.service_layer.intake import validate_records
from shared.service_layer.messages import AcceptedDisposition, AcceptedScan
from shared.service_layer.ports import InputRecord, SavedState
from shared.service_layer.rebuild import key_ranges, rebuild
from shared.service_layer.tracker import Tracker
from shared.settings import Settings
from tests import fakes
from tests.fakes import FakeLoopStore, FakePublisher, PublishFailed

SETTINGS = Settings(
    worker_ref_key=SecretStr("tracker-service-unit-tests-worker-ref-key"),
    fever_threshold_c=37.3,
    arrival_grace_hours=2,
    checkin_window_hours=24,
)
NOW = datetime.now(UTC)


def hours_ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


_serials = itertools.count()


def new_id_number() -> str:
    """A valid ID number no other test of this session uses."""
    first17 = f"52050219900307{next(_serials) % 1000:03d}"
    return first17 + check_digit(first17)


_KIND_FIELDS: dict[str, dict[str, Any]] = {
    "departure_check": {"temperature_c": 36.5, "health_code": "green"},
    "boarding": {"trip_id": "bus-guiyang-ningbo-0302"},
    "arrival_check": {"temperature_c": 36.6, "health_code": "green"},
    "checkin": {"enterprise_id": "yinzhou-textile"},
}


def scan_body(kind: str, id_number: str, hours_before_now: float, **fields: Any) -> bytes:
    return orjson.dumps(
        {
            "scan_id": f"{kind}-{random.randrange(16**12):012x}",
            "kind": kind,
            "id_number": id_number,
            "occurred_at": hours_ago(hours_before_now).isoformat(),
            "station": f"{kind} station",
            **_KIND_FIELDS[kind],
            **fields,
        }
    )


def journey(id_number: str) -> list[tuple[str, bytes]]:
    """Four passing scans, in order, the last an hour ago."""
    return [
        (topics.INPUT_TOPICS["departure_check"], scan_body("departure_check", id_number, 30)),
        (topics.INPUT_TOPICS["boarding"], scan_body("boarding", id_number, 29)),
        (topics.INPUT_TOPICS["arrival_check"], scan_body("arrival_check", id_number, 2)),
        (topics.INPUT_TOPICS["checkin"], scan_body("checkin", id_number, 1)),
    ]


class Pipeline:
    """The tracker's two consumers: intake reads the input topics (and applies the scans
    itself), apply reads the colour updates intake accepted; each moves on only once
    its handler has returned."""

    def __init__(self, tracker: Tracker, publisher: FakePublisher) -> None:
        self.tracker = tracker
        self.publisher = publisher
        self.read = {topics.HEALTHCODE_ACCEPTED: 0}
        self.offset = 0

    def records(self, *messages: tuple[str, bytes]) -> list[InputRecord]:
        records = []
        for topic, value in messages:
            records.append(InputRecord(topic, 0, self.offset, None, value))
            self.offset += 1
        return records

    async def intake(self, *messages: tuple[str, bytes]) -> None:
        await self.tracker.handle_intake(self.records(*messages))

    def accepted(self) -> list[InputRecord]:
        """What intake published for the apply consumer and apply has not read yet."""
        return [
            InputRecord(topic, 0, offset, key, value)
            for topic, start in self.read.items()
            for offset, (key, value, _) in enumerate(self.publisher.published[topic])
            if offset >= start
        ]

    def published_scans(self) -> list[InputRecord]:
        """Everything on ``scans.accepted`` (what a replay after a restore reads)."""
        return [
            InputRecord(topics.ACCEPTED, 0, offset, key, value)
            for offset, (key, value, _) in enumerate(self.publisher.published[topics.ACCEPTED])
        ]

    async def apply(self, records: list[InputRecord] | None = None, *, relay: bool = True) -> None:
        """Apply, then let the relay publish the outbox (as its task does once woken)."""
        records = self.accepted() if records is None else records
        await self.tracker.handle_apply(records)
        self.read = {topic: len(self.publisher.published[topic]) for topic in self.read}
        if relay:
            await self.relay()

    async def relay(self) -> int:
        assert self.tracker.relay is not None
        return await self.tracker.relay.drain()

    async def send(self, *messages: tuple[str, bytes]) -> None:
        await self.intake(*messages)
        await self.apply()


@pytest.fixture
def store() -> FakeLoopStore:
    return FakeLoopStore()


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def tracker(store: FakeLoopStore, publisher: FakePublisher, registry: CollectorRegistry) -> Tracker:
    return bootstrap(
        SETTINGS, store=store, publisher=publisher, metrics=Metrics(registry), outbox=store
    )


@pytest.fixture
def pipeline(tracker: Tracker, publisher: FakePublisher) -> Pipeline:
    return Pipeline(tracker, publisher)


def scans_counted(registry: CollectorRegistry, kind: str, outcome: str) -> float:
    value = registry.get_sample_value("returnloop_scans_total", {"kind": kind, "outcome": outcome})
    return value or 0.0


# Intake.


async def test_intake_publishes_accepted_scans_keyed_by_worker_ref_without_the_id_number(
    pipeline: Pipeline,
    publisher: FakePublisher,
    tracker: Tracker,
) -> None:
    id_number = new_id_number()
    await pipeline.intake(*journey(id_number)[:2])

    accepted = publisher.published[topics.ACCEPTED]
    worker_ref = tracker.pseudonymiser.worker_ref(id_number)
    assert [key for key, _, _ in accepted] == [worker_ref.encode()] * 2
    assert [AcceptedScan.from_bytes(value).scan.kind for _, value, _ in accepted] == [
        "departure_check",
        "boarding",
    ]
    assert all(id_number.encode() not in value for _, value, _ in accepted)
    assert publisher.published[topics.REJECTED] == []


async def test_intake_sends_rejected_input_to_scans_rejected_with_its_reason_and_bytes(
    pipeline: Pipeline,
    publisher: FakePublisher,
    registry: CollectorRegistry,
) -> None:
    id_number = new_id_number()
    wrong_check_digit = id_number[:-1] + ("0" if id_number[-1] != "0" else "1")
    not_json = b'{"scan_id": "d1", "kind": '
    bad_id = scan_body("departure_check", wrong_check_digit, 1)
    await pipeline.intake(
        (topics.INPUT_TOPICS["departure_check"], not_json),
        (topics.INPUT_TOPICS["departure_check"], bad_id),
        journey(id_number)[0],
    )

    rejected = publisher.published[topics.REJECTED]
    assert [value for _, value, _ in rejected] == [not_json, bad_id]
    assert [dict(headers or [])["reason"] for _, _, headers in rejected] == [
        b"invalid_json",
        b"id_number_checksum",
    ]
    assert len(publisher.published[topics.ACCEPTED]) == 1
    assert registry.get_sample_value("returnloop_rejected_total", {"reason": "invalid_json"}) == 1


async def test_intake_raises_when_the_publisher_fails_so_its_offsets_stay_uncommitted(
    pipeline: Pipeline,
    publisher: FakePublisher,
) -> None:
    publisher.fail()
    with pytest.raises(PublishFailed):
        await pipeline.intake(*journey(new_id_number()))


# Apply.


async def test_apply_records_the_scans_and_publishes_the_worker_s_transition(
    pipeline: Pipeline,
    publisher: FakePublisher,
    store: FakeLoopStore,
    tracker: Tracker,
    registry: CollectorRegistry,
) -> None:
    id_number = new_id_number()
    await pipeline.send(journey(id_number)[0])

    worker_ref = tracker.pseudonymiser.worker_ref(id_number)
    assert await store.applied_scan_count() == 1
    state = store.state_of(worker_ref)
    assert state is not None and (state.stage, state.status) == (
        Stage.DEPARTURE_CLEARED,
        Status.OPEN,
    )
    [(key, _, _)] = publisher.published[topics.TRANSITIONS]
    assert key == worker_ref.encode()
    [transition] = publisher.values(topics.TRANSITIONS)
    assert transition["worker_ref"] == worker_ref
    assert (transition["previous_stage"], transition["stage"]) == (
        "registered",
        "departure_cleared",
    )
    assert scans_counted(registry, "departure_check", "applied") == 1


async def test_a_fever_at_departure_holds_the_worker_and_raises_fever_at_departure(
    pipeline: Pipeline,
    publisher: FakePublisher,
    store: FakeLoopStore,
    tracker: Tracker,
) -> None:
    id_number = new_id_number()
    fever = scan_body("departure_check", id_number, 1, temperature_c=38.5)
    await pipeline.send((topics.INPUT_TOPICS["departure_check"], fever))

    worker_ref = tracker.pseudonymiser.worker_ref(id_number)
    [alert] = publisher.values(topics.ALERTS)
    assert (alert["worker_ref"], alert["kind"], alert["open"]) == (
        worker_ref,
        "fever_at_departure",
        True,
    )
    [transition] = publisher.values(topics.TRANSITIONS)
    assert transition["status"] == "held"
    assert [a.kind for a in store.alerts_of(worker_ref) if a.open] == [AlertKind.FEVER_AT_DEPARTURE]


async def test_a_scan_delivered_again_changes_nothing_and_publishes_nothing(
    pipeline: Pipeline,
    publisher: FakePublisher,
    store: FakeLoopStore,
    registry: CollectorRegistry,
) -> None:
    messages = journey(new_id_number())
    await pipeline.send(*messages)
    transitions = len(publisher.published[topics.TRANSITIONS])
    alerts = len(publisher.published[topics.ALERTS])
    assert transitions == 1

    await pipeline.send(*messages)  # the input redelivered (offsets not committed)
    await pipeline.apply(pipeline.published_scans())  # and scans.accepted replayed

    assert await store.applied_scan_count() == 4
    assert len(publisher.published[topics.TRANSITIONS]) == transitions
    assert len(publisher.published[topics.ALERTS]) == alerts
    assert scans_counted(registry, "checkin", "applied") == 1
    assert scans_counted(registry, "checkin", "duplicate") == 3


async def test_intake_applies_the_scans_it_accepts_in_the_same_batch(
    pipeline: Pipeline, store: FakeLoopStore, tracker: Tracker, publisher: FakePublisher
) -> None:
    id_number = new_id_number()
    await pipeline.intake(*journey(id_number))  # no apply consumer involved

    state = store.state_of(tracker.pseudonymiser.worker_ref(id_number))
    assert state is not None and (state.stage, state.status) == (
        Stage.CHECKED_IN,
        Status.CLOSED,
    )
    assert len(publisher.published[topics.ACCEPTED]) == 4
    assert len(store.committed.outbox) == 1  # registered -> checked_in, to be relayed


async def test_intake_dead_letters_a_scan_the_store_refuses_and_applies_the_rest(
    pipeline: Pipeline,
    publisher: FakePublisher,
    store: FakeLoopStore,
    tracker: Tracker,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Validation lets nothing through that PostgreSQL refuses; a store that refuses a
    # station stands for whatever it might still refuse one day.
    original = fakes._refusal
    monkeypatch.setattr(
        fakes, "_refusal", lambda text: "refused" if text == "refused gate" else original(text)
    )
    id_numbers = [new_id_number() for _ in range(3)]
    poison = scan_body("checkin", id_numbers[1], 0.5, station="refused gate")
    messages = [m for n in id_numbers for m in journey(n)[:2]]
    messages.insert(3, (topics.INPUT_TOPICS["checkin"], poison))

    await pipeline.intake(*messages)

    assert await store.applied_scan_count() == 6
    for id_number in id_numbers:
        state = store.state_of(tracker.pseudonymiser.worker_ref(id_number))
        assert state is not None and state.stage is Stage.BOARDED
    [(_, value, headers)] = publisher.published[topics.REJECTED]
    assert value == poison
    assert dict(headers or [])["reason"] == b"unprocessable"
    assert dict(headers or [])["source_offset"] == b"3"
    assert len(publisher.published[topics.ACCEPTED]) == 6  # the refused one is not announced
    assert scans_counted(registry, "checkin", "rejected") == 1


async def test_a_scan_the_store_refuses_is_dead_lettered_while_the_rest_of_the_batch_applies(
    pipeline: Pipeline,
    publisher: FakePublisher,
    store: FakeLoopStore,
    tracker: Tracker,
    registry: CollectorRegistry,
) -> None:
    id_numbers = [new_id_number() for _ in range(3)]
    await pipeline.intake(*(message for n in id_numbers for message in journey(n)[:2]))
    batch = pipeline.published_scans()  # replayed after a restore
    # A message on scans.accepted that no validation let through: PostgreSQL text has no NUL.
    good = AcceptedScan.from_bytes(batch[2].value or b"")
    poison = replace(good, scan=replace(good.scan, scan_id="poison\x00scan"))
    poison_record = InputRecord(topics.ACCEPTED, 1, 99, poison.key(), poison.to_bytes())
    batch.insert(3, poison_record)

    await pipeline.apply(batch)

    assert await store.applied_scan_count() == 6
    for id_number in id_numbers:
        state = store.state_of(tracker.pseudonymiser.worker_ref(id_number))
        assert state is not None and state.stage is Stage.BOARDED
    [(key, value, headers)] = publisher.published[topics.REJECTED]
    assert (key, value) == (poison_record.key, poison_record.value)
    assert dict(headers or [])["reason"] == b"unprocessable"
    assert dict(headers or [])["source_offset"] == b"99"
    assert scans_counted(registry, poison.scan.kind.value, "rejected") == 1


async def test_a_broker_away_after_the_commit_loses_no_transition_the_outbox_keeps_them(
    pipeline: Pipeline,
    publisher: FakePublisher,
    store: FakeLoopStore,
) -> None:
    assert pipeline.tracker.relay is not None
    assert pipeline.tracker.relay.wake.is_set() is False
    await pipeline.intake(*journey(new_id_number()))  # committed: the consumer moves on

    assert pipeline.tracker.relay.wake.is_set()  # the relay was told at once
    publisher.fail()
    with pytest.raises(PublishFailed):
        await pipeline.relay()
    assert publisher.published[topics.TRANSITIONS] == []
    assert len(store.committed.outbox) == 1  # one transition (registered -> checked_in)

    publisher.recover()
    assert await pipeline.relay() == 1
    [transition] = publisher.values(topics.TRANSITIONS)
    assert transition["stage"] == "checked_in"
    assert store.committed.outbox == {}
    assert await pipeline.relay() == 0  # nothing twice


async def test_a_relay_dying_after_the_broker_has_the_messages_sends_them_again_same_ids(
    store: FakeLoopStore, publisher: FakePublisher, registry: CollectorRegistry
) -> None:
    class Killed(Exception):
        pass

    def kill_after_publish(point: str) -> None:
        if point == "relay_published":
            raise Killed(point)

    dying = bootstrap(
        SETTINGS,
        store=store,
        publisher=publisher,
        metrics=Metrics(registry),
        outbox=store,
        fault_point=kill_after_publish,
    )
    pipeline = Pipeline(dying, publisher)
    fever = scan_body("departure_check", new_id_number(), 1, temperature_c=38.5)
    await pipeline.intake((topics.INPUT_TOPICS["departure_check"], fever))
    assert dying.relay is not None
    with pytest.raises(Killed):
        await dying.relay.drain()
    first = publisher.values(topics.TRANSITIONS) + publisher.values(topics.ALERTS)

    restarted = bootstrap(
        SETTINGS,
        store=store,
        publisher=publisher,
        metrics=Metrics(CollectorRegistry()),
        outbox=store,
    )
    assert restarted.relay is not None
    assert await restarted.relay.drain() == 2

    again = publisher.values(topics.TRANSITIONS) + publisher.values(topics.ALERTS)
    assert len(again) == 4
    assert {m["message_id"] for m in again} == {m["message_id"] for m in first}
    [(_, _, headers)] = publisher.published[topics.ALERTS][:1]
    assert dict(headers or [])["message_id"].decode() == first[-1]["message_id"]


async def test_a_colour_turning_red_in_transit_raises_code_changed_in_transit(
    pipeline: Pipeline,
    publisher: FakePublisher,
    store: FakeLoopStore,
    tracker: Tracker,
) -> None:
    id_number = new_id_number()
    await pipeline.send(*journey(id_number)[:2])
    red = {"id_number": id_number, "health_code": "red", "as_of": hours_ago(3).isoformat()}
    await pipeline.send((topics.HEALTHCODE_UPDATES, orjson.dumps(red)))

    worker_ref = tracker.pseudonymiser.worker_ref(id_number)
    state = store.state_of(worker_ref)
    assert state is not None and state.status is Status.HELD
    assert AlertKind.CODE_CHANGED_IN_TRANSIT in state.open_alerts
    assert publisher.values(topics.ALERTS)[-1]["kind"] == "code_changed_in_transit"


# Sweep.


async def board(pipeline: Pipeline, store: FakeLoopStore, tracker: Tracker, eta: datetime) -> str:
    """A manifest worker passes departure 10 h ago and boards 9 h ago a trip due at ``eta``;
    the scans were applied when they happened. Returns the worker_ref."""
    id_number = new_id_number()
    worker_ref = tracker.pseudonymiser.worker_ref(id_number)
    store.seed_trip("bus-guiyang-ningbo-0302", eta=eta)
    store.seed_worker(worker_ref, trip_id="bus-guiyang-ningbo-0302")
    records = pipeline.records(
        (topics.INPUT_TOPICS["departure_check"], scan_body("departure_check", id_number, 10)),
        (topics.INPUT_TOPICS["boarding"], scan_body("boarding", id_number, 9)),
    )
    scans = validate_records(records, tracker.pseudonymiser, now=hours_ago(9)).scans
    await handlers.apply_scans(store, scans, rules=tracker.rules, now=hours_ago(9))
    return worker_ref


async def test_the_sweep_raises_overdue_arrival_once_the_trip_is_past_its_eta_and_grace(
    pipeline: Pipeline,
    publisher: FakePublisher,
    store: FakeLoopStore,
    tracker: Tracker,
) -> None:
    worker_ref = await board(pipeline, store, tracker, eta=hours_ago(3))
    state = store.state_of(worker_ref)
    assert state is not None and state.status is Status.OPEN

    assert await tracker.sweep() == 1
    await pipeline.relay()

    state = store.state_of(worker_ref)
    assert state is not None and state.status is Status.BROKEN
    assert state.open_alerts == {AlertKind.OVERDUE_ARRIVAL}
    [alert] = publisher.values(topics.ALERTS)
    assert (alert["worker_ref"], alert["kind"], alert["open"]) == (
        worker_ref,
        "overdue_arrival",
        True,
    )
    assert alert["raised_at"] == (hours_ago(3) + timedelta(hours=2)).isoformat()


async def test_the_sweep_leaves_a_worker_alone_while_the_trip_may_still_arrive(
    pipeline: Pipeline,
    publisher: FakePublisher,
    store: FakeLoopStore,
    tracker: Tracker,
) -> None:
    worker_ref = await board(pipeline, store, tracker, eta=hours_ago(1))  # grace: 1 h left

    assert await tracker.sweep() == 0
    await pipeline.relay()

    state = store.state_of(worker_ref)
    assert state is not None and state.open_alerts == frozenset()
    assert publisher.published[topics.ALERTS] == []


# Rebuild.


async def test_rebuild_re_decides_every_worker_from_the_scan_log(
    pipeline: Pipeline, store: FakeLoopStore, tracker: Tracker
) -> None:
    id_numbers = [new_id_number() for _ in range(3)]
    await pipeline.send(*(message for n in id_numbers for message in journey(n)))
    worker_refs = [tracker.pseudonymiser.worker_ref(n) for n in id_numbers]
    async with store.transaction() as uow:  # states lost, the scan log intact
        await uow.save([SavedState(ref, "masked", LoopState(), 0) for ref in worker_refs], NOW)

    report = await rebuild(store, rules=tracker.rules, chunk_size=2, jobs=2, progress=False)

    assert (report.workers, report.scans, report.corrected) == (3, 12, 3)
    for ref in worker_refs:
        state = store.state_of(ref)
        assert state is not None and (state.stage, state.status) == (
            Stage.CHECKED_IN,
            Status.CLOSED,
        )


# Dispositions.


async def test_a_withdrawal_applied_from_its_topic_withdraws_the_worker_and_closes_alerts(
    pipeline: Pipeline, store: FakeLoopStore, tracker: Tracker, publisher: FakePublisher
) -> None:
    id_number = new_id_number()
    fever = scan_body("departure_check", id_number, 30, temperature_c=38.9)
    await pipeline.send((topics.INPUT_TOPICS["departure_check"], fever))
    worker_ref = tracker.pseudonymiser.worker_ref(id_number)
    held = store.state_of(worker_ref)
    assert held is not None and held.status is Status.HELD
    withdrawal = AcceptedDisposition(
        worker_ref,
        "000000********0000",
        Disposition("dsp-1", DispositionKind.WITHDRAWN, hours_ago(20), "supervisor", "stays home"),
        received_at=hours_ago(0),
    )
    record = InputRecord(topics.DISPOSITIONS, 0, 0, withdrawal.key(), withdrawal.to_bytes())

    await pipeline.apply([record])
    await pipeline.apply([record])  # redelivered: nothing more happens

    state = store.state_of(worker_ref)
    assert state is not None
    assert state.status is Status.WITHDRAWN
    assert not state.open_alerts
    assert [d.disposition_id for d in state.dispositions] == ["dsp-1"]
    transitions = [orjson.loads(value) for _, value, _ in publisher.published[topics.TRANSITIONS]]
    assert transitions[-1]["status"] == "withdrawn"
    assert sum(t["status"] == "withdrawn" for t in transitions) == 1


async def test_rebuild_in_key_ranges_re_decides_each_worker_once(
    pipeline: Pipeline, store: FakeLoopStore, tracker: Tracker
) -> None:
    id_numbers = [new_id_number() for _ in range(40)]
    await pipeline.send(*(message for n in id_numbers for message in journey(n)[:2]))
    worker_refs = {tracker.pseudonymiser.worker_ref(n) for n in id_numbers}
    async with store.transaction() as uow:  # states lost, the scan log intact
        await uow.save([SavedState(ref, "masked", LoopState(), 0) for ref in worker_refs], NOW)

    seen: list[int] = []
    reports = [
        await rebuild(
            store,
            rules=tracker.rules,
            chunk_size=3,
            progress=False,
            key_range=key_range,
            on_page=seen.append,
        )
        for key_range in key_ranges(3)
    ]

    assert sum(r.workers for r in reports) == 40
    assert sum(r.scans for r in reports) == sum(seen) == 80
    assert all(r.workers for r in reports)  # 40 HMAC refs spread over three ranges
    for ref in worker_refs:
        state = store.state_of(ref)
        assert state is not None and state.stage is Stage.BOARDED


def test_key_ranges_cover_every_worker_ref_once_in_order() -> None:
    ranges = key_ranges(4)
    assert ranges == [
        ("", "w_4000"),
        ("w_4000", "w_8000"),
        ("w_8000", "w_c000"),
        ("w_c000", None),
    ]
    assert key_ranges(1) == [("", None)]
