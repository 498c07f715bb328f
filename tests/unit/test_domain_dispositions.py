"""Dispositions after a failed check: events of the worker, folded in event time with the scans."""

from __future__ import annotations

from shared.domain.model import Disposition, Rules, decide
from shared.domain.vocabulary import AlertKind, DispositionKind, HealthCode, Stage, Status
from tests.unit.conftest import (
    ASSIGNMENT,
    FEVER_C,
    arrival_check,
    at,
    boarding,
    checkin,
    colour_update,
    departure_check,
    happy_journey,
    only_alert,
)


def disposition(kind: DispositionKind, hours: float, number: int = 1) -> Disposition:
    return Disposition(f"d-{kind.value}-{number}", kind, at(hours), "health_station", "note")


def state(*events, now_hours: float = 50, **given):
    scans = [e for e in events if not isinstance(e, Disposition) and hasattr(e, "scan_id")]
    updates = [e for e in events if hasattr(e, "as_of")]
    recorded = [e for e in events if isinstance(e, Disposition)]
    return decide(scans, updates, recorded, now=at(now_hours), assignment=ASSIGNMENT, **given)


FEVER_AT_DEPARTURE = departure_check(0, temperature_c=FEVER_C)


def test_isolation_is_recorded_and_the_hold_stays():
    held = state(FEVER_AT_DEPARTURE, disposition(DispositionKind.ISOLATION, 1))

    assert held.status is Status.HELD
    assert [d.kind for d in held.dispositions] == [DispositionKind.ISOLATION]


def test_medical_observation_is_recorded_and_the_hold_stays():
    held = state(FEVER_AT_DEPARTURE, disposition(DispositionKind.MEDICAL_OBSERVATION, 1))

    assert held.status is Status.HELD


def test_a_release_lifts_the_health_holds_and_closes_their_alerts():
    released = state(FEVER_AT_DEPARTURE, disposition(DispositionKind.RELEASED, 2))

    fever = only_alert(released, AlertKind.FEVER_AT_DEPARTURE)
    assert (fever.open, fever.closed_at) == (False, at(2))
    assert released.status is Status.OPEN


def test_an_upheld_appeal_closes_the_colour_alerts_but_not_a_fever():
    both = departure_check(0, temperature_c=FEVER_C, health_code=HealthCode.RED)

    appealed = state(both, disposition(DispositionKind.CODE_APPEAL_UPHELD, 1))

    assert not only_alert(appealed, AlertKind.CODE_NOT_GREEN_AT_DEPARTURE).open
    assert only_alert(appealed, AlertKind.FEVER_AT_DEPARTURE).open
    assert appealed.status is Status.HELD


def test_an_upheld_appeal_closes_a_colour_change_in_transit():
    changed = state(
        departure_check(0),
        boarding(1),
        colour_update(3, HealthCode.RED),
        disposition(DispositionKind.CODE_APPEAL_UPHELD, 4),
    )

    assert not only_alert(changed, AlertKind.CODE_CHANGED_IN_TRANSIT).open
    assert changed.status is Status.OPEN


def test_a_withdrawn_worker_is_withdrawn_above_every_status_and_their_alerts_close():
    withdrawn = state(FEVER_AT_DEPARTURE, disposition(DispositionKind.WITHDRAWN, 3))

    assert withdrawn.status is Status.WITHDRAWN
    assert not withdrawn.open_alerts
    assert withdrawn.next_deadline is None


def test_a_withdrawn_worker_is_never_overdue():
    gone = state(
        departure_check(0),
        boarding(1),
        disposition(DispositionKind.WITHDRAWN, 2),
        trip_etas={"bus-guiyang-ningbo-0302": at(8)},
        now_hours=100,
    )

    assert gone.status is Status.WITHDRAWN
    assert not [a for a in gone.alerts if a.kind is AlertKind.OVERDUE_ARRIVAL]


def test_a_later_release_undoes_a_withdrawal():
    back = state(
        departure_check(0),
        disposition(DispositionKind.WITHDRAWN, 1),
        disposition(DispositionKind.RELEASED, 5),
    )

    assert back.status is Status.OPEN
    assert back.stage is Stage.DEPARTURE_CLEARED


def test_a_disposition_before_the_failed_check_in_event_time_does_not_release_it():
    too_early = state(disposition(DispositionKind.RELEASED, -1), FEVER_AT_DEPARTURE)

    assert too_early.status is Status.HELD


def test_a_released_worker_who_then_closes_the_loop_is_closed():
    journey = [departure_check(-1, temperature_c=FEVER_C), *happy_journey()]

    closed = state(*journey, disposition(DispositionKind.RELEASED, -0.5))

    assert (closed.stage, closed.status) == (Stage.CHECKED_IN, Status.CLOSED)


def test_a_fever_again_after_a_release_holds_again():
    again = state(
        FEVER_AT_DEPARTURE,
        disposition(DispositionKind.RELEASED, 1),
        departure_check(2, temperature_c=FEVER_C),
    )

    assert again.status is Status.HELD


def test_the_same_disposition_twice_counts_once():
    release = disposition(DispositionKind.RELEASED, 2)

    assert state(FEVER_AT_DEPARTURE, release, release) == state(FEVER_AT_DEPARTURE, release)


def test_dispositions_leave_the_scans_checkpoints_as_they_were():
    recorded = state(
        departure_check(0),
        boarding(1),
        arrival_check(10),
        checkin(12),
        disposition(DispositionKind.MEDICAL_OBSERVATION, 13),
        rules=Rules(),
    )

    assert recorded.status is Status.CLOSED
    assert len(recorded.checkpoints) == 4
