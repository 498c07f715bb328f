"""Every closed-loop rule of PRODUCT.md ("Loop state", "Rules in detail") as a plain test."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.domain.model import (
    Alert,
    Assignment,
    HealthCodeUpdate,
    LoopState,
    Rules,
    WorkerHistory,
    apply,
    decide,
    reconcile_alerts,
)
from shared.domain.vocabulary import HEALTH_ALERTS, AlertKind, HealthCode, Kind, Stage, Status
from tests.unit.conftest import (
    ASSIGNMENT,
    ENTERPRISE,
    FEVER_C,
    OTHER_ENTERPRISE,
    OTHER_TRIP,
    TRIP,
    alerts_of,
    arrival_check,
    at,
    boarding,
    checkin,
    colour_update,
    departure_check,
    happy_journey,
    only_alert,
    state_after,
)

NOT_GREEN = [HealthCode.YELLOW, HealthCode.RED]


# --- the happy path and each stage -------------------------------------------------------


def test_a_worker_with_no_scans_is_registered_and_open():
    state = decide([], now=at(0))

    assert state.stage is Stage.REGISTERED
    assert state.status is Status.OPEN
    assert state.alerts == ()
    assert state.health_code is None
    assert not state.departed and not state.arrived and not state.in_transit


def test_four_passing_scans_in_order_close_the_loop():
    state = state_after(*happy_journey())

    assert state.stage is Stage.CHECKED_IN
    assert state.status is Status.CLOSED
    assert state.alerts == ()
    assert state.open_alerts == frozenset()
    assert state.health_code is HealthCode.GREEN
    assert set(state.checkpoints) == set(Kind)
    assert all(checkpoint.passed for checkpoint in state.checkpoints.values())
    assert state.departed and state.arrived and not state.in_transit
    assert state.boarded_trip_id == TRIP
    assert state.checked_in_enterprise_id == ENTERPRISE


def test_a_passed_departure_check_clears_departure():
    state = state_after(departure_check(0))

    assert state.stage is Stage.DEPARTURE_CLEARED
    assert state.status is Status.OPEN
    assert state.departed
    assert state.checkpoints[Kind.DEPARTURE_CHECK].passed


def test_boarding_after_a_passed_departure_check_boards_the_worker():
    state = state_after(departure_check(0), boarding(1))

    assert state.stage is Stage.BOARDED
    assert state.status is Status.OPEN
    assert state.in_transit
    assert state.boarded_trip_id == TRIP
    assert state.checkpoints[Kind.BOARDING].passed


def test_a_passed_arrival_check_after_boarding_clears_arrival():
    state = state_after(departure_check(0), boarding(1), arrival_check(10))

    assert state.stage is Stage.ARRIVAL_CLEARED
    assert state.status is Status.OPEN
    assert state.arrived and not state.in_transit


def test_checkpoints_record_the_scan_that_was_shown():
    state = state_after(departure_check(0, temperature_c=36.9, scan_id="dep-1"))

    checkpoint = state.checkpoints[Kind.DEPARTURE_CHECK]
    assert checkpoint.scan_id == "dep-1"
    assert checkpoint.at == at(0)
    assert checkpoint.station == "recruitment-team-guizhou"
    assert checkpoint.temperature_c == 36.9
    assert checkpoint.health_code is HealthCode.GREEN


def test_each_checkpoint_shows_its_latest_scan_by_event_time():
    state = state_after(
        departure_check(0, temperature_c=FEVER_C, scan_id="first"),
        departure_check(2, scan_id="second"),
    )

    assert state.checkpoints[Kind.DEPARTURE_CHECK].scan_id == "second"
    assert state.checkpoints[Kind.DEPARTURE_CHECK].passed


# --- departure health check ----------------------------------------------------------------


def test_a_departure_check_at_38_5_degrees_holds_the_worker_with_fever_at_departure():
    state = state_after(departure_check(0, temperature_c=38.5))

    assert state.status is Status.HELD
    assert state.stage is Stage.REGISTERED
    assert state.open_alerts == {AlertKind.FEVER_AT_DEPARTURE}
    assert only_alert(state, AlertKind.FEVER_AT_DEPARTURE) == Alert(
        AlertKind.FEVER_AT_DEPARTURE, raised_at=at(0), open=True, closed_at=None
    )
    assert not state.departed
    assert not state.checkpoints[Kind.DEPARTURE_CHECK].passed


def test_37_3_degrees_is_a_fever_by_default():
    state = state_after(departure_check(0, temperature_c=37.3))

    assert state.open_alerts == {AlertKind.FEVER_AT_DEPARTURE}
    assert state.stage is Stage.REGISTERED


def test_37_2_degrees_passes_by_default():
    state = state_after(departure_check(0, temperature_c=37.2))

    assert state.open_alerts == frozenset()
    assert state.stage is Stage.DEPARTURE_CLEARED


def test_the_fever_threshold_is_configurable():
    rules = Rules(fever_threshold_c=38.0)

    below = state_after(departure_check(0, temperature_c=37.9), rules=rules)
    at_threshold = state_after(departure_check(0, temperature_c=38.0), rules=rules)

    assert below.stage is Stage.DEPARTURE_CLEARED
    assert below.open_alerts == frozenset()
    assert at_threshold.stage is Stage.REGISTERED
    assert at_threshold.open_alerts == {AlertKind.FEVER_AT_DEPARTURE}


@pytest.mark.parametrize("colour", NOT_GREEN)
def test_a_non_green_code_at_departure_holds_the_worker(colour):
    state = state_after(departure_check(0, health_code=colour))

    assert state.status is Status.HELD
    assert state.stage is Stage.REGISTERED
    assert state.open_alerts == {AlertKind.CODE_NOT_GREEN_AT_DEPARTURE}
    assert state.health_code is colour


def test_fever_and_a_red_code_at_departure_open_both_alerts():
    state = state_after(departure_check(0, temperature_c=FEVER_C, health_code=HealthCode.RED))

    assert state.open_alerts == {
        AlertKind.FEVER_AT_DEPARTURE,
        AlertKind.CODE_NOT_GREEN_AT_DEPARTURE,
    }


def test_a_later_passing_departure_check_closes_the_fever_alert_and_clears_departure():
    state = state_after(departure_check(0, temperature_c=FEVER_C), departure_check(3))

    assert state.status is Status.OPEN
    assert state.stage is Stage.DEPARTURE_CLEARED
    assert state.open_alerts == frozenset()
    assert only_alert(state, AlertKind.FEVER_AT_DEPARTURE) == Alert(
        AlertKind.FEVER_AT_DEPARTURE, raised_at=at(0), open=False, closed_at=at(3)
    )


def test_a_later_passing_departure_check_closes_the_code_alert():
    state = state_after(departure_check(0, health_code=HealthCode.YELLOW), departure_check(5))

    assert state.status is Status.OPEN
    assert state.health_code is HealthCode.GREEN
    assert only_alert(state, AlertKind.CODE_NOT_GREEN_AT_DEPARTURE) == Alert(
        AlertKind.CODE_NOT_GREEN_AT_DEPARTURE, raised_at=at(0), open=False, closed_at=at(5)
    )


def test_a_second_failing_departure_check_keeps_the_first_raised_at():
    state = state_after(
        departure_check(0, temperature_c=FEVER_C), departure_check(1, temperature_c=38.0)
    )

    assert only_alert(state, AlertKind.FEVER_AT_DEPARTURE).raised_at == at(0)
    assert state.status is Status.HELD


def test_a_failed_departure_recheck_after_clearance_holds_the_worker_again():
    state = state_after(departure_check(0), departure_check(1, temperature_c=FEVER_C))

    assert state.status is Status.HELD
    assert state.open_alerts == {AlertKind.FEVER_AT_DEPARTURE}
    assert not state.checkpoints[Kind.DEPARTURE_CHECK].passed


def test_a_passing_recheck_releases_only_the_alerts_of_its_own_checkpoint():
    state = state_after(
        departure_check(0),
        boarding(1),
        arrival_check(10, temperature_c=FEVER_C),
        departure_check(11),
    )

    assert state.open_alerts == {AlertKind.FEVER_AT_ARRIVAL}
    assert state.status is Status.HELD


# --- boarding ------------------------------------------------------------------------------


def test_boarding_with_no_departure_check_leaves_registered_and_breaks_the_loop():
    state = state_after(boarding(1))

    assert state.stage is Stage.REGISTERED
    assert state.status is Status.BROKEN
    assert state.open_alerts == {AlertKind.BOARDED_WITHOUT_CLEARANCE}
    assert only_alert(state, AlertKind.BOARDED_WITHOUT_CLEARANCE).raised_at == at(1)
    assert not state.checkpoints[Kind.BOARDING].passed


def test_boarding_after_a_failed_departure_check_opens_boarded_without_clearance():
    state = state_after(departure_check(0, temperature_c=FEVER_C), boarding(1))

    assert state.stage is Stage.REGISTERED
    assert state.open_alerts == {
        AlertKind.FEVER_AT_DEPARTURE,
        AlertKind.BOARDED_WITHOUT_CLEARANCE,
    }
    assert state.status is Status.HELD


def test_boarding_before_the_departure_check_is_boarding_without_clearance():
    state = state_after(boarding(1), departure_check(2))

    assert state.stage is Stage.DEPARTURE_CLEARED
    assert state.open_alerts == {AlertKind.BOARDED_WITHOUT_CLEARANCE}
    assert state.status is Status.BROKEN


def test_a_later_boarding_after_clearance_closes_boarded_without_clearance():
    state = state_after(
        departure_check(0, temperature_c=FEVER_C),
        boarding(1, scan_id="too-early"),
        departure_check(2),
        boarding(3, scan_id="cleared"),
    )

    assert state.stage is Stage.BOARDED
    assert state.status is Status.OPEN
    assert only_alert(state, AlertKind.BOARDED_WITHOUT_CLEARANCE) == Alert(
        AlertKind.BOARDED_WITHOUT_CLEARANCE, raised_at=at(1), open=False, closed_at=at(3)
    )


def test_boarding_a_trip_other_than_the_manifest_trip_opens_trip_mismatch_but_still_boards():
    state = state_after(departure_check(0), boarding(1, trip_id=OTHER_TRIP))

    assert state.stage is Stage.BOARDED
    assert state.status is Status.BROKEN
    assert state.open_alerts == {AlertKind.TRIP_MISMATCH}
    assert only_alert(state, AlertKind.TRIP_MISMATCH).raised_at == at(1)
    assert state.boarded_trip_id == OTHER_TRIP
    assert not state.checkpoints[Kind.BOARDING].passed


def test_a_later_boarding_onto_the_manifest_trip_closes_trip_mismatch():
    state = state_after(
        departure_check(0),
        boarding(1, trip_id=OTHER_TRIP, scan_id="wrong-bus"),
        boarding(2, trip_id=TRIP, scan_id="right-bus"),
    )

    assert state.status is Status.OPEN
    assert state.boarded_trip_id == TRIP
    assert only_alert(state, AlertKind.TRIP_MISMATCH) == Alert(
        AlertKind.TRIP_MISMATCH, raised_at=at(1), open=False, closed_at=at(2)
    )


def test_any_trip_is_right_for_a_worker_with_no_manifest_trip():
    state = state_after(
        departure_check(0), boarding(1, trip_id=OTHER_TRIP), assignment=Assignment()
    )

    assert state.open_alerts == frozenset()
    assert state.stage is Stage.BOARDED


# --- arrival recheck -----------------------------------------------------------------------


def test_a_fever_at_arrival_holds_the_worker_who_still_counts_as_arrived():
    state = state_after(departure_check(0), boarding(1), arrival_check(10, temperature_c=FEVER_C))

    assert state.status is Status.HELD
    assert state.stage is Stage.BOARDED
    assert state.open_alerts == {AlertKind.FEVER_AT_ARRIVAL}
    assert only_alert(state, AlertKind.FEVER_AT_ARRIVAL).raised_at == at(10)
    assert state.arrived and not state.in_transit


@pytest.mark.parametrize("colour", NOT_GREEN)
def test_a_non_green_code_at_arrival_holds_the_worker(colour):
    state = state_after(departure_check(0), boarding(1), arrival_check(10, health_code=colour))

    assert state.status is Status.HELD
    assert state.stage is Stage.BOARDED
    assert state.open_alerts == {AlertKind.CODE_NOT_GREEN_AT_ARRIVAL}
    assert state.arrived
    assert state.health_code is colour


def test_a_later_passing_arrival_check_closes_the_fever_alert_and_clears_arrival():
    state = state_after(
        departure_check(0),
        boarding(1),
        arrival_check(10, temperature_c=FEVER_C),
        arrival_check(11),
    )

    assert state.stage is Stage.ARRIVAL_CLEARED
    assert state.status is Status.OPEN
    assert only_alert(state, AlertKind.FEVER_AT_ARRIVAL) == Alert(
        AlertKind.FEVER_AT_ARRIVAL, raised_at=at(10), open=False, closed_at=at(11)
    )


def test_a_later_passing_arrival_check_closes_the_code_alert():
    state = state_after(
        departure_check(0),
        boarding(1),
        arrival_check(10, health_code=HealthCode.RED),
        arrival_check(12),
    )

    assert state.status is Status.OPEN
    assert only_alert(state, AlertKind.CODE_NOT_GREEN_AT_ARRIVAL) == Alert(
        AlertKind.CODE_NOT_GREEN_AT_ARRIVAL, raised_at=at(10), open=False, closed_at=at(12)
    )


def test_arrival_without_any_earlier_boarding_opens_arrived_without_boarding():
    state = state_after(departure_check(0), arrival_check(10))

    assert state.stage is Stage.DEPARTURE_CLEARED
    assert state.status is Status.BROKEN
    assert state.open_alerts == {AlertKind.ARRIVED_WITHOUT_BOARDING}
    assert only_alert(state, AlertKind.ARRIVED_WITHOUT_BOARDING).raised_at == at(10)
    assert state.arrived


def test_a_later_arrival_check_after_boarding_closes_arrived_without_boarding():
    state = state_after(
        departure_check(0),
        arrival_check(2, scan_id="before-boarding"),
        boarding(3),
        arrival_check(10, scan_id="after-boarding"),
    )

    assert state.stage is Stage.ARRIVAL_CLEARED
    assert state.status is Status.OPEN
    assert only_alert(state, AlertKind.ARRIVED_WITHOUT_BOARDING) == Alert(
        AlertKind.ARRIVED_WITHOUT_BOARDING, raised_at=at(2), open=False, closed_at=at(10)
    )


def test_arrival_after_boarding_without_clearance_does_not_clear_arrival():
    state = state_after(boarding(1), arrival_check(10))

    assert state.stage is Stage.REGISTERED
    assert state.open_alerts == {AlertKind.BOARDED_WITHOUT_CLEARANCE}
    assert state.arrived


# --- factory check-in ----------------------------------------------------------------------


def test_checkin_without_an_arrival_check_opens_checkin_without_arrival_check():
    state = state_after(departure_check(0), boarding(1), checkin(12))

    assert state.stage is Stage.BOARDED
    assert state.status is Status.BROKEN
    assert state.open_alerts == {AlertKind.CHECKIN_WITHOUT_ARRIVAL_CHECK}
    assert only_alert(state, AlertKind.CHECKIN_WITHOUT_ARRIVAL_CHECK).raised_at == at(12)
    assert not state.checkpoints[Kind.CHECKIN].passed


def test_checkin_after_a_failed_arrival_check_opens_checkin_without_arrival_check():
    state = state_after(
        departure_check(0), boarding(1), arrival_check(10, temperature_c=FEVER_C), checkin(12)
    )

    assert state.stage is Stage.BOARDED
    assert state.open_alerts == {
        AlertKind.FEVER_AT_ARRIVAL,
        AlertKind.CHECKIN_WITHOUT_ARRIVAL_CHECK,
    }
    assert state.status is Status.HELD


def test_a_later_checkin_after_a_passed_arrival_check_closes_checkin_without_arrival_check():
    state = state_after(
        departure_check(0),
        boarding(1),
        checkin(5, scan_id="too-early"),
        arrival_check(10),
        checkin(12, scan_id="after-recheck"),
    )

    assert state.stage is Stage.CHECKED_IN
    assert state.status is Status.CLOSED
    assert only_alert(state, AlertKind.CHECKIN_WITHOUT_ARRIVAL_CHECK) == Alert(
        AlertKind.CHECKIN_WITHOUT_ARRIVAL_CHECK, raised_at=at(5), open=False, closed_at=at(12)
    )


def test_checkin_at_another_enterprise_opens_wrong_enterprise_and_does_not_check_in():
    state = state_after(
        departure_check(0),
        boarding(1),
        arrival_check(10),
        checkin(12, enterprise_id=OTHER_ENTERPRISE),
    )

    assert state.stage is Stage.ARRIVAL_CLEARED
    assert state.status is Status.BROKEN
    assert state.open_alerts == {AlertKind.WRONG_ENTERPRISE}
    assert only_alert(state, AlertKind.WRONG_ENTERPRISE).raised_at == at(12)
    assert state.checked_in_enterprise_id is None
    assert not state.checkpoints[Kind.CHECKIN].passed


def test_a_later_checkin_at_the_right_enterprise_closes_wrong_enterprise_and_the_loop():
    state = state_after(
        departure_check(0),
        boarding(1),
        arrival_check(10),
        checkin(12, enterprise_id=OTHER_ENTERPRISE, scan_id="wrong-gate"),
        checkin(13, enterprise_id=ENTERPRISE, scan_id="right-gate"),
    )

    assert state.stage is Stage.CHECKED_IN
    assert state.status is Status.CLOSED
    assert state.checked_in_enterprise_id == ENTERPRISE
    assert only_alert(state, AlertKind.WRONG_ENTERPRISE) == Alert(
        AlertKind.WRONG_ENTERPRISE, raised_at=at(12), open=False, closed_at=at(13)
    )


def test_any_enterprise_is_right_for_a_worker_with_no_manifest_enterprise():
    journey = [departure_check(0), boarding(1), arrival_check(10)]
    state = state_after(
        *journey, checkin(12, enterprise_id=OTHER_ENTERPRISE), assignment=Assignment()
    )

    assert state.stage is Stage.CHECKED_IN
    assert state.status is Status.CLOSED
    assert state.checked_in_enterprise_id == OTHER_ENTERPRISE


# --- overdue_arrival -----------------------------------------------------------------------

ETA = at(8)
ARRIVAL_DEADLINE = at(10)  # eta + the default 2 h grace


def test_a_boarded_worker_with_no_arrival_check_after_eta_plus_grace_is_overdue():
    state = state_after(departure_check(0), boarding(1), now=at(10.5), trip_etas={TRIP: ETA})

    assert state.status is Status.BROKEN
    assert state.open_alerts == {AlertKind.OVERDUE_ARRIVAL}
    assert only_alert(state, AlertKind.OVERDUE_ARRIVAL) == Alert(
        AlertKind.OVERDUE_ARRIVAL, raised_at=ARRIVAL_DEADLINE, open=True, closed_at=None
    )


@pytest.mark.parametrize("hours", [8, 9.5, 10], ids=["at-eta", "within-grace", "at-deadline"])
def test_a_boarded_worker_is_not_overdue_until_the_deadline_has_passed(hours):
    state = state_after(departure_check(0), boarding(1), now=at(hours), trip_etas={TRIP: ETA})

    assert state.open_alerts == frozenset()
    assert state.status is Status.OPEN


def test_no_overdue_arrival_without_a_known_eta_for_the_trip():
    state = state_after(departure_check(0), boarding(1), now=at(100), trip_etas={OTHER_TRIP: ETA})

    assert alerts_of(state, AlertKind.OVERDUE_ARRIVAL) == []


def test_the_arrival_grace_is_configurable():
    rules = Rules(arrival_grace=timedelta(minutes=30))

    state = state_after(
        departure_check(0), boarding(1), now=at(9), trip_etas={TRIP: ETA}, rules=rules
    )

    assert only_alert(state, AlertKind.OVERDUE_ARRIVAL).raised_at == at(8.5)


def test_an_arrival_check_after_the_deadline_closes_overdue_arrival_at_the_arrival_time():
    state = state_after(
        departure_check(0), boarding(1), arrival_check(11), now=at(12), trip_etas={TRIP: ETA}
    )

    assert state.status is Status.OPEN
    assert state.stage is Stage.ARRIVAL_CLEARED
    assert only_alert(state, AlertKind.OVERDUE_ARRIVAL) == Alert(
        AlertKind.OVERDUE_ARRIVAL, raised_at=ARRIVAL_DEADLINE, open=False, closed_at=at(11)
    )


def test_a_failed_arrival_check_also_closes_overdue_arrival():
    state = state_after(
        departure_check(0),
        boarding(1),
        arrival_check(11, temperature_c=FEVER_C),
        now=at(12),
        trip_etas={TRIP: ETA},
    )

    assert only_alert(state, AlertKind.OVERDUE_ARRIVAL).closed_at == at(11)
    assert state.open_alerts == {AlertKind.FEVER_AT_ARRIVAL}


def test_an_arrival_check_before_the_deadline_leaves_no_overdue_arrival_at_all():
    state = state_after(
        departure_check(0), boarding(1), arrival_check(9), now=at(30), trip_etas={TRIP: ETA}
    )

    assert alerts_of(state, AlertKind.OVERDUE_ARRIVAL) == []


def test_overdue_arrival_follows_the_eta_of_the_trip_boarded():
    state = state_after(
        departure_check(0),
        boarding(1, trip_id=OTHER_TRIP),
        now=at(10.5),
        trip_etas={TRIP: at(20), OTHER_TRIP: ETA},
    )

    assert state.open_alerts == {AlertKind.TRIP_MISMATCH, AlertKind.OVERDUE_ARRIVAL}


# --- overdue_checkin -----------------------------------------------------------------------


def arrived_at_10() -> list:
    return [departure_check(0), boarding(1), arrival_check(10)]


def test_no_checkin_within_24_hours_of_a_passed_arrival_check_is_overdue():
    state = state_after(*arrived_at_10(), now=at(34.5))

    assert state.status is Status.BROKEN
    assert state.open_alerts == {AlertKind.OVERDUE_CHECKIN}
    assert only_alert(state, AlertKind.OVERDUE_CHECKIN) == Alert(
        AlertKind.OVERDUE_CHECKIN, raised_at=at(34), open=True, closed_at=None
    )


def test_checkin_is_not_overdue_until_the_window_has_passed():
    state = state_after(*arrived_at_10(), now=at(34))

    assert state.open_alerts == frozenset()


def test_the_checkin_window_is_configurable():
    rules = Rules(checkin_window=timedelta(hours=4))

    state = state_after(*arrived_at_10(), now=at(15), rules=rules)

    assert only_alert(state, AlertKind.OVERDUE_CHECKIN).raised_at == at(14)


def test_a_late_checkin_closes_overdue_checkin_and_the_loop():
    state = state_after(*arrived_at_10(), checkin(40), now=at(41))

    assert state.stage is Stage.CHECKED_IN
    assert state.status is Status.CLOSED
    assert only_alert(state, AlertKind.OVERDUE_CHECKIN) == Alert(
        AlertKind.OVERDUE_CHECKIN, raised_at=at(34), open=False, closed_at=at(40)
    )


def test_a_checkin_within_the_window_leaves_no_overdue_checkin():
    state = state_after(*arrived_at_10(), checkin(12), now=at(100))

    assert alerts_of(state, AlertKind.OVERDUE_CHECKIN) == []


def test_a_failed_arrival_check_starts_no_checkin_clock():
    state = state_after(
        departure_check(0), boarding(1), arrival_check(10, temperature_c=FEVER_C), now=at(100)
    )

    assert alerts_of(state, AlertKind.OVERDUE_CHECKIN) == []


def test_a_checkin_scan_at_the_wrong_gate_within_the_window_is_not_a_missing_checkin():
    # PRODUCT.md: overdue_checkin is "arrival recheck passed, no `checkin`, and now > its
    # time + window" and "the missing scan, when it comes, closes them". A checkin scan
    # did come here (at the wrong enterprise, which wrong_enterprise already reports).
    state = state_after(*arrived_at_10(), checkin(12, enterprise_id=OTHER_ENTERPRISE), now=at(40))

    assert state.open_alerts == {AlertKind.WRONG_ENTERPRISE}
    assert alerts_of(state, AlertKind.OVERDUE_CHECKIN) == []


# --- code_changed_in_transit ---------------------------------------------------------------


@pytest.mark.parametrize("colour", NOT_GREEN)
def test_a_non_green_colour_after_departure_clearance_holds_the_worker(colour):
    state = state_after(departure_check(0), boarding(1), colour_update(5, colour))

    assert state.status is Status.HELD
    assert state.stage is Stage.BOARDED
    assert state.open_alerts == {AlertKind.CODE_CHANGED_IN_TRANSIT}
    assert only_alert(state, AlertKind.CODE_CHANGED_IN_TRANSIT) == Alert(
        AlertKind.CODE_CHANGED_IN_TRANSIT, raised_at=at(5), open=True, closed_at=None
    )
    assert state.health_code is colour


def test_a_colour_change_between_clearance_and_boarding_counts_as_in_transit():
    state = state_after(departure_check(0), colour_update(0.5, HealthCode.YELLOW))

    assert state.open_alerts == {AlertKind.CODE_CHANGED_IN_TRANSIT}


def test_a_colour_change_after_arrival_clearance_before_checkin_counts_as_in_transit():
    state = state_after(*arrived_at_10(), colour_update(11, HealthCode.RED))

    assert state.open_alerts == {AlertKind.CODE_CHANGED_IN_TRANSIT}
    assert state.status is Status.HELD


def test_a_later_green_update_closes_code_changed_in_transit():
    state = state_after(
        departure_check(0),
        boarding(1),
        colour_update(5, HealthCode.YELLOW),
        colour_update(7, HealthCode.GREEN),
    )

    assert state.status is Status.OPEN
    assert state.health_code is HealthCode.GREEN
    assert only_alert(state, AlertKind.CODE_CHANGED_IN_TRANSIT) == Alert(
        AlertKind.CODE_CHANGED_IN_TRANSIT, raised_at=at(5), open=False, closed_at=at(7)
    )


def test_a_green_code_shown_at_the_arrival_check_closes_code_changed_in_transit():
    state = state_after(
        departure_check(0), boarding(1), colour_update(5, HealthCode.RED), arrival_check(10)
    )

    assert state.status is Status.OPEN
    assert state.stage is Stage.ARRIVAL_CLEARED
    assert only_alert(state, AlertKind.CODE_CHANGED_IN_TRANSIT).closed_at == at(10)


def test_a_non_green_colour_before_departure_clearance_is_not_a_change_in_transit():
    state = state_after(colour_update(-1, HealthCode.YELLOW))

    assert state.alerts == ()
    assert state.health_code is HealthCode.YELLOW
    assert state.status is Status.OPEN


def test_a_non_green_colour_after_checkin_is_not_a_change_in_transit():
    state = state_after(*happy_journey(), colour_update(20, HealthCode.RED))

    assert state.alerts == ()
    assert state.status is Status.CLOSED
    assert state.health_code is HealthCode.RED


def test_the_health_code_is_the_latest_colour_observed_by_event_time():
    later_update = state_after(departure_check(0), colour_update(2, HealthCode.YELLOW))
    later_scan = state_after(colour_update(-2, HealthCode.RED), departure_check(0))

    assert later_update.health_code is HealthCode.YELLOW
    assert later_scan.health_code is HealthCode.GREEN


# --- status precedence ---------------------------------------------------------------------


def test_the_failed_checks_and_a_colour_change_in_transit_are_the_health_alerts():
    failed_checks_and_colour_change = {
        AlertKind.FEVER_AT_DEPARTURE,
        AlertKind.CODE_NOT_GREEN_AT_DEPARTURE,
        AlertKind.FEVER_AT_ARRIVAL,
        AlertKind.CODE_NOT_GREEN_AT_ARRIVAL,
        AlertKind.CODE_CHANGED_IN_TRANSIT,
    }

    assert failed_checks_and_colour_change == HEALTH_ALERTS


def test_held_takes_precedence_over_broken():
    state = state_after(
        departure_check(0),
        boarding(1, trip_id=OTHER_TRIP),
        arrival_check(10, temperature_c=FEVER_C),
    )

    assert state.open_alerts == {AlertKind.TRIP_MISMATCH, AlertKind.FEVER_AT_ARRIVAL}
    assert state.status is Status.HELD


def test_code_changed_in_transit_takes_precedence_over_a_broken_loop():
    state = state_after(
        departure_check(0),
        boarding(1, trip_id=OTHER_TRIP),
        colour_update(5, HealthCode.YELLOW),
    )

    assert state.status is Status.HELD


def test_broken_takes_precedence_over_closed():
    state = state_after(
        departure_check(0),
        boarding(1, trip_id=OTHER_TRIP),
        arrival_check(10),
        checkin(12),
    )

    assert state.stage is Stage.CHECKED_IN
    assert state.open_alerts == {AlertKind.TRIP_MISMATCH}
    assert state.status is Status.BROKEN


def test_a_checked_in_worker_whose_alerts_are_all_closed_is_closed():
    state = state_after(
        departure_check(0, temperature_c=FEVER_C),
        departure_check(1),
        boarding(2),
        arrival_check(10),
        checkin(12),
    )

    assert state.alerts != ()
    assert state.open_alerts == frozenset()
    assert state.status is Status.CLOSED


def test_a_worker_in_progress_with_no_open_alert_is_open():
    for journey in ([], [departure_check(0)], [departure_check(0), boarding(1)], arrived_at_10()):
        assert state_after(*journey).status is Status.OPEN


# --- duplicates ----------------------------------------------------------------------------


def test_a_duplicate_scan_changes_nothing():
    once = state_after(*happy_journey())
    twice = state_after(*happy_journey(), *happy_journey())

    assert twice == once


def test_a_duplicate_failing_check_does_not_reopen_a_closed_alert():
    fever = departure_check(0, temperature_c=FEVER_C)
    recheck = departure_check(1)

    state = state_after(fever, recheck, fever)

    assert state == state_after(fever, recheck)
    assert state.status is Status.OPEN


def test_a_duplicate_health_code_update_changes_nothing():
    yellow = colour_update(5, HealthCode.YELLOW)

    once = state_after(departure_check(0), yellow)
    twice = state_after(departure_check(0), yellow, yellow)

    assert twice == once


# --- out of order --------------------------------------------------------------------------


def test_scans_in_reverse_arrival_order_give_the_event_order_state():
    journey = happy_journey()

    assert state_after(*reversed(journey)) == state_after(*journey)


def test_events_at_the_same_instant_are_taken_in_checkpoint_order():
    same_time = [checkin(5), arrival_check(5), boarding(5), departure_check(5)]

    state = state_after(*same_time)

    assert state.stage is Stage.CHECKED_IN
    assert state.status is Status.CLOSED


# --- apply and Transition ------------------------------------------------------------------


def apply_to(history: WorkerHistory, previous: LoopState, *events, now):
    scans = [event for event in events if not isinstance(event, HealthCodeUpdate)]
    updates = [event for event in events if isinstance(event, HealthCodeUpdate)]
    return apply(history, previous, scans=scans, updates=updates, now=now, assignment=ASSIGNMENT)


def test_applying_a_failed_check_raises_its_alert():
    fever = departure_check(0, temperature_c=FEVER_C)

    transition = apply_to(WorkerHistory(), LoopState(), fever, now=at(0.1))

    assert transition.applied == (fever,)
    assert transition.raised == (Alert(AlertKind.FEVER_AT_DEPARTURE, at(0)),)
    assert transition.closed == ()
    assert transition.changed
    assert transition.state.status is Status.HELD
    assert transition.history.scans == (fever,)
    assert transition.history.alerts == transition.state.alerts


def test_applying_a_passing_recheck_closes_the_alert_and_releases_the_hold():
    first = apply_to(
        WorkerHistory(), LoopState(), departure_check(0, temperature_c=FEVER_C), now=at(0.1)
    )

    second = apply_to(first.history, first.state, departure_check(1), now=at(1.1))

    assert second.raised == ()
    assert second.closed == (
        Alert(AlertKind.FEVER_AT_DEPARTURE, at(0), open=False, closed_at=at(1)),
    )
    assert second.previous == first.state
    assert second.state.status is Status.OPEN
    assert second.state.stage is Stage.DEPARTURE_CLEARED
    assert second.changed


def test_a_fever_and_its_passing_recheck_in_one_batch_are_both_raised_and_closed():
    transition = apply_to(
        WorkerHistory(),
        LoopState(),
        departure_check(0, temperature_c=FEVER_C),
        departure_check(1),
        now=at(2),
    )

    closed_fever = Alert(AlertKind.FEVER_AT_DEPARTURE, at(0), open=False, closed_at=at(1))
    assert transition.raised == (closed_fever,)
    assert transition.closed == (closed_fever,)
    assert transition.state.status is Status.OPEN


def test_a_stage_change_alone_is_a_change():
    transition = apply_to(WorkerHistory(), LoopState(), departure_check(0), now=at(1))

    assert transition.raised == () and transition.closed == ()
    assert transition.state.stage is Stage.DEPARTURE_CLEARED
    assert transition.changed


def test_applying_a_duplicate_scan_applies_and_changes_nothing():
    first = apply_to(WorkerHistory(), LoopState(), departure_check(0), now=at(1))

    again = apply_to(first.history, first.state, departure_check(0), now=at(1))

    assert again.applied == ()
    assert again.raised == () and again.closed == ()
    assert not again.changed
    assert again.state == first.state
    assert again.history == first.history


def test_a_new_scan_that_changes_no_stage_status_or_alert_is_applied_but_not_a_change():
    first = apply_to(WorkerHistory(), LoopState(), departure_check(0), now=at(1))

    second = apply_to(
        first.history, first.state, departure_check(0.5, scan_id="second-check"), now=at(1)
    )

    assert [scan.scan_id for scan in second.applied] == ["second-check"]
    assert not second.changed


def test_duplicates_within_one_batch_are_applied_once():
    scan = departure_check(0)

    transition = apply_to(WorkerHistory(), LoopState(), scan, scan, now=at(1))

    assert transition.applied == (scan,)
    assert transition.history.scans == (scan,)


def test_a_sweep_with_nothing_new_closes_nothing_after_same_instant_rechecks():
    # Three departure checks stamped the same second: fever, pass, fever again. Event
    # order closes the first fever alert and opens a second one with the same raised_at.
    same_second = [
        departure_check(0, temperature_c=FEVER_C, scan_id="a-fever"),
        departure_check(0, scan_id="b-pass"),
        departure_check(0, temperature_c=FEVER_C, scan_id="c-fever"),
    ]
    first = apply_to(WorkerHistory(), LoopState(), *same_second, now=at(1))
    assert first.state.open_alerts == {AlertKind.FEVER_AT_DEPARTURE}

    sweep = apply_to(first.history, first.state, now=at(2))

    assert sweep.closed == ()
    assert sweep.raised == ()
    assert not sweep.changed


def test_the_history_keeps_scans_in_event_time_order():
    first = apply_to(WorkerHistory(), LoopState(), boarding(1), now=at(2))

    second = apply_to(first.history, first.state, departure_check(0), now=at(2))

    assert [scan.kind for scan in second.history.scans] == [Kind.DEPARTURE_CHECK, Kind.BOARDING]


def test_applying_a_colour_update_keeps_it_in_the_history():
    first = apply_to(WorkerHistory(), LoopState(), departure_check(0), now=at(1))
    yellow = colour_update(2, HealthCode.YELLOW)

    second = apply_to(first.history, first.state, yellow, now=at(3))

    assert second.history.updates == (yellow,)
    assert second.applied == ()
    assert second.raised == (Alert(AlertKind.CODE_CHANGED_IN_TRANSIT, at(2)),)
    assert second.changed


def test_a_sweep_with_no_new_events_raises_overdue_arrival():
    journey = apply(
        WorkerHistory(),
        LoopState(),
        scans=[departure_check(0), boarding(1)],
        now=at(2),
        assignment=ASSIGNMENT,
        trip_etas={TRIP: ETA},
    )

    sweep = apply(
        journey.history, journey.state, now=at(11), assignment=ASSIGNMENT, trip_etas={TRIP: ETA}
    )

    assert sweep.applied == ()
    assert sweep.raised == (Alert(AlertKind.OVERDUE_ARRIVAL, ARRIVAL_DEADLINE),)
    assert sweep.state.status is Status.BROKEN
    assert sweep.changed


def test_a_late_arrival_check_closes_the_alert_only_arrival_order_produced():
    early = [departure_check(0), boarding(1)]
    first = apply_to(WorkerHistory(), LoopState(), *early, now=at(1))
    # The gate's scan reaches the tracker before the health station's offline batch.
    second = apply_to(first.history, first.state, checkin(12), now=at(12.1))
    assert second.state.open_alerts == {AlertKind.CHECKIN_WITHOUT_ARRIVAL_CHECK}

    third = apply_to(second.history, second.state, arrival_check(10), now=at(13))

    event_order = state_after(*early, arrival_check(10), checkin(12), now=at(13))
    assert third.state.stage is event_order.stage is Stage.CHECKED_IN
    assert third.state.status is event_order.status is Status.CLOSED
    assert third.state.checkpoints == event_order.checkpoints
    assert third.state.open_alerts == event_order.open_alerts == frozenset()
    artefact = Alert(AlertKind.CHECKIN_WITHOUT_ARRIVAL_CHECK, at(12), open=False, closed_at=at(13))
    assert third.state.alerts == (artefact,)
    assert third.closed == (artefact,)
    assert third.changed


def test_a_sweep_alert_the_late_scan_explains_away_stays_as_closed_history():
    etas = {TRIP: ETA}
    first = apply(
        WorkerHistory(),
        LoopState(),
        scans=[departure_check(0), boarding(1)],
        now=at(11),
        assignment=ASSIGNMENT,
        trip_etas=etas,
    )
    assert first.state.open_alerts == {AlertKind.OVERDUE_ARRIVAL}

    # The arrival check happened at 9 h, before the deadline, but reached us at 12 h.
    late = apply(
        first.history,
        first.state,
        scans=[arrival_check(9)],
        now=at(12),
        assignment=ASSIGNMENT,
        trip_etas=etas,
    )

    event_order = state_after(
        departure_check(0), boarding(1), arrival_check(9), now=at(12), trip_etas=etas
    )
    assert alerts_of(event_order, AlertKind.OVERDUE_ARRIVAL) == []
    assert late.state.open_alerts == frozenset()
    assert late.state.status is Status.OPEN
    assert late.state.alerts == (
        Alert(AlertKind.OVERDUE_ARRIVAL, ARRIVAL_DEADLINE, open=False, closed_at=at(12)),
    )


# --- reconcile_alerts ----------------------------------------------------------------------


def test_reconcile_keeps_unexplained_stored_alerts_closed_at_now():
    stored_open = Alert(AlertKind.WRONG_ENTERPRISE, at(5))
    stored_closed = Alert(AlertKind.TRIP_MISMATCH, at(1), open=False, closed_at=at(2))
    decided = (Alert(AlertKind.FEVER_AT_ARRIVAL, at(10)),)

    merged = reconcile_alerts([stored_open, stored_closed], decided, now=at(20))

    assert merged == (
        stored_closed,
        Alert(AlertKind.WRONG_ENTERPRISE, at(5), open=False, closed_at=at(20)),
        Alert(AlertKind.FEVER_AT_ARRIVAL, at(10)),
    )


def test_reconcile_lets_event_order_decide_an_alert_it_explains():
    stored = Alert(AlertKind.OVERDUE_ARRIVAL, at(10))
    decided = Alert(AlertKind.OVERDUE_ARRIVAL, at(10), open=False, closed_at=at(11))

    assert reconcile_alerts([stored], [decided], now=at(20)) == (decided,)
