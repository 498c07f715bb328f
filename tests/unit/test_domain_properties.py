"""The order- and duplicate-independence promises of PRODUCT.md, as hypothesis properties."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.domain.model import (
    Assignment,
    Disposition,
    Event,
    HealthCodeUpdate,
    LoopState,
    Scan,
    Transition,
    WorkerHistory,
    apply,
    decide,
)
from shared.domain.vocabulary import DispositionKind, HealthCode, Kind, Travel
from tests.unit.conftest import (
    ASSIGNMENT,
    ENTERPRISE,
    OTHER_ENTERPRISE,
    OTHER_TRIP,
    TRIP,
    arrival_check,
    at,
    boarding,
    checkin,
    colour_update,
    departure_check,
)

bounded = settings(max_examples=200, deadline=None, database=None)

# Scanners in the field report local time; the same instant may come in either offset.
zones = st.sampled_from([UTC, timezone(timedelta(hours=8))])
temperatures = st.sampled_from([36.2, 36.5, 36.6, 36.8, 37.2, 36.4, 37.3, 38.5])
colours = st.sampled_from(list(HealthCode))
mostly_green = st.sampled_from([HealthCode.GREEN] * 6 + [HealthCode.YELLOW, HealthCode.RED])
# A check with no scanned colour goes by the platform's latest colour in event time.
scanned_or_platform = st.sampled_from(
    [HealthCode.GREEN] * 5 + [HealthCode.YELLOW, HealthCode.RED, None, None]
)
overrides = st.sampled_from([None, None, None, "recorded over a denial"])
SELF_ASSIGNMENT = Assignment(enterprise_id=ENTERPRISE, travel=Travel.SELF)

# Where each checkpoint's scans fall by default, so journeys are mostly in order but
# jitter can move any scan before or after its neighbours; a coarse grid of times
# makes simultaneous scans (ties) common.
USUAL_HOUR = {Kind.DEPARTURE_CHECK: 0, Kind.BOARDING: 2, Kind.ARRIVAL_CHECK: 10, Kind.CHECKIN: 12}


@dataclass(frozen=True)
class Journey:
    scans: tuple[Scan, ...]
    updates: tuple[HealthCodeUpdate, ...]
    now: datetime
    assignment: Assignment
    trip_etas: dict[str, datetime]
    dispositions: tuple[Disposition, ...] = ()

    def decide(self, scans=None, updates=None, dispositions=None, *, now=None) -> LoopState:
        return decide(
            self.scans if scans is None else scans,
            self.updates if updates is None else updates,
            self.dispositions if dispositions is None else dispositions,
            now=self.now if now is None else now,
            assignment=self.assignment,
            trip_etas=self.trip_etas,
        )

    def apply(self, history, previous, *, scans=(), updates=(), dispositions=(), now) -> Transition:
        return apply(
            history,
            previous,
            scans=scans,
            updates=updates,
            dispositions=dispositions,
            now=now,
            assignment=self.assignment,
            trip_etas=self.trip_etas,
        )


@st.composite
def hours_for(draw, kind: Kind) -> float:
    jitter = draw(st.sampled_from([-12, -6, -1, 0, 0, 0, 0, 0, 0, 1, 6, 12]))
    return USUAL_HOUR[kind] + jitter + draw(st.sampled_from([0, 0, 0, 0.5, 1]))


@st.composite
def scans_at(draw, kind: Kind, hours: float, scan_id: str) -> Scan:
    if kind is Kind.DEPARTURE_CHECK:
        scan = departure_check(
            hours, temperature_c=draw(temperatures), health_code=draw(scanned_or_platform)
        )
    elif kind is Kind.ARRIVAL_CHECK:
        scan = arrival_check(
            hours, temperature_c=draw(temperatures), health_code=draw(scanned_or_platform)
        )
    elif kind is Kind.BOARDING:
        scan = boarding(hours, trip_id=draw(st.sampled_from([TRIP, TRIP, OTHER_TRIP])))
    else:
        scan = checkin(
            hours, enterprise_id=draw(st.sampled_from([ENTERPRISE, ENTERPRISE, OTHER_ENTERPRISE]))
        )
    return replace(
        scan,
        scan_id=scan_id,
        occurred_at=scan.occurred_at.astimezone(draw(zones)),
        override_reason=draw(overrides),
    )


@st.composite
def updates(draw) -> HealthCodeUpdate:
    update = colour_update(
        draw(st.integers(min_value=-4, max_value=40).map(lambda n: n / 2)), draw(colours)
    )
    return replace(update, as_of=update.as_of.astimezone(draw(zones)))


@st.composite
def dispositions(draw, number: int) -> Disposition:
    return Disposition(
        disposition_id=f"disposition-{number}",
        kind=draw(st.sampled_from(list(DispositionKind))),
        at=at(draw(st.integers(min_value=-2, max_value=40).map(lambda n: n / 2))).astimezone(
            draw(zones)
        ),
        by="health_station",
        note="recorded in a property",
    )


@st.composite
def journeys(draw) -> Journey:
    scans: list[Scan] = []
    for kind in Kind:
        count = draw(st.sampled_from([0, 1, 1, 1, 2, 3]))
        # Rechecks stamped the same second (one offline batch) are a case of their own.
        same_instant = draw(st.booleans())
        shared_hours = draw(hours_for(kind))
        for n in range(count):
            hours = shared_hours if same_instant else draw(hours_for(kind))
            scans.append(draw(scans_at(kind, hours, f"{kind.value}-{n}")))
    trip_etas = draw(
        st.sampled_from([{}, {TRIP: at(8)}, {TRIP: at(8), OTHER_TRIP: at(20)}, {TRIP: at(30)}])
    )
    return Journey(
        scans=tuple(sorted(scans, key=lambda scan: scan.order_key)),
        updates=tuple(draw(st.lists(updates(), max_size=3))),
        now=at(draw(st.integers(min_value=0, max_value=160).map(lambda n: n / 2))),
        assignment=draw(
            st.sampled_from(
                [
                    ASSIGNMENT,
                    ASSIGNMENT,
                    Assignment(),
                    SELF_ASSIGNMENT,
                    replace(SELF_ASSIGNMENT, expected_arrival=at(9)),
                ]
            )
        ),
        trip_etas=trip_etas,
        dispositions=tuple(
            draw(dispositions(n)) for n in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3])))
        ),
    )


def event_time(event: Event) -> datetime:
    if isinstance(event, HealthCodeUpdate):
        return event.as_of
    if isinstance(event, Disposition):
        return event.at
    return event.occurred_at


@bounded
@given(journey=journeys(), data=st.data())
def test_any_arrival_order_gives_the_event_order_state(journey, data):
    shuffled_scans = data.draw(st.permutations(journey.scans))
    shuffled_updates = data.draw(st.permutations(journey.updates))
    shuffled_dispositions = data.draw(st.permutations(journey.dispositions))

    assert (
        journey.decide(shuffled_scans, shuffled_updates, shuffled_dispositions) == journey.decide()
    )


@bounded
@given(journey=journeys(), data=st.data())
def test_duplicate_scans_and_updates_change_nothing(journey, data):
    repeated_scans = data.draw(st.lists(st.sampled_from(journey.scans))) if journey.scans else []
    repeated_updates = (
        data.draw(st.lists(st.sampled_from(journey.updates))) if journey.updates else []
    )
    repeated_dispositions = (
        data.draw(st.lists(st.sampled_from(journey.dispositions))) if journey.dispositions else []
    )
    scans = data.draw(st.permutations([*journey.scans, *repeated_scans]))
    updates = data.draw(st.permutations([*journey.updates, *repeated_updates]))
    recorded = data.draw(st.permutations([*journey.dispositions, *repeated_dispositions]))

    assert journey.decide(scans, updates, recorded) == journey.decide()


@dataclass(frozen=True)
class Arrival:
    """One event reaching the tracker ``delay_hours`` after it occurred."""

    event: Event
    delay_hours: float


@st.composite
def journeys_in_arrival_order(draw) -> tuple[Journey, tuple[Arrival, ...]]:
    journey = draw(journeys())
    events = draw(st.permutations([*journey.scans, *journey.updates, *journey.dispositions]))
    delays = st.sampled_from([0, 0.5, 3, 30])
    return journey, tuple(Arrival(event, draw(delays)) for event in events)


def apply_one_by_one(
    journey: Journey, arrivals: tuple[Arrival, ...]
) -> tuple[Transition, datetime]:
    """Apply the events singly in arrival order, as the tracker would.

    An event may reach the tracker hours after it occurred (a scanner's offline batch),
    and the tracker's clock never runs backwards.
    """
    now = at(-100)
    transition = journey.apply(WorkerHistory(), LoopState(), now=now)
    for arrival in arrivals:
        now = max(now, event_time(arrival.event) + timedelta(hours=arrival.delay_hours))
        event = arrival.event
        transition = journey.apply(
            transition.history,
            transition.state,
            scans=[event] if isinstance(event, Scan) else [],
            updates=[event] if isinstance(event, HealthCodeUpdate) else [],
            dispositions=[event] if isinstance(event, Disposition) else [],
            now=now,
        )
    return transition, now


# Three departure checks stamped the same second: fever, pass, fever again.
SAME_SECOND_RECHECKS = Journey(
    scans=(
        departure_check(0, temperature_c=38.5, scan_id="a-fever"),
        departure_check(0, scan_id="b-pass"),
        departure_check(0, temperature_c=38.5, scan_id="c-fever"),
    ),
    updates=(),
    now=at(1),
    assignment=ASSIGNMENT,
    trip_etas={},
)
SAME_SECOND_RECHECKS_IN_ORDER = (
    SAME_SECOND_RECHECKS,
    tuple(Arrival(scan, 0) for scan in SAME_SECOND_RECHECKS.scans),
)


@bounded
@given(case=journeys_in_arrival_order())
@example(case=SAME_SECOND_RECHECKS_IN_ORDER)
def test_applying_events_in_any_arrival_order_ends_in_the_event_order_state(case):
    journey, arrivals = case

    transition, now = apply_one_by_one(journey, arrivals)

    applied = transition.state
    event_order = journey.decide(now=now)
    assert applied.stage is event_order.stage
    assert applied.status is event_order.status
    assert applied.checkpoints == event_order.checkpoints
    assert applied.health_code is event_order.health_code
    assert applied.dispositions == event_order.dispositions
    assert {a for a in applied.alerts if a.open} == {a for a in event_order.alerts if a.open}
    assert all(not alert.open for alert in applied.alerts if alert not in event_order.alerts)
    assert set(event_order.alerts) <= set(applied.alerts)


@bounded
@given(case=journeys_in_arrival_order())
def test_no_alert_is_closed_before_it_was_raised(case):
    transition, _ = apply_one_by_one(*case)

    for alert in transition.state.alerts:
        assert alert.open or alert.closed_at >= alert.raised_at, alert


@bounded
@given(case=journeys_in_arrival_order())
@example(case=SAME_SECOND_RECHECKS_IN_ORDER)
def test_applying_the_same_events_again_is_no_change(case):
    journey, arrivals = case
    transition, now = apply_one_by_one(journey, arrivals)

    again = journey.apply(
        transition.history,
        transition.state,
        scans=journey.scans,
        updates=journey.updates,
        dispositions=journey.dispositions,
        now=now,
    )

    assert again.applied == ()
    assert again.raised == ()
    assert again.closed == ()
    assert not again.changed
    assert again.state == transition.state
