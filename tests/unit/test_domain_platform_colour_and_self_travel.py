"""Contract v1.1 in the domain: the colour from the platform, self-arranged travel, overrides."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from shared.domain.model import Assignment, Rules
from shared.domain.vocabulary import (
    AlertKind,
    HealthCode,
    HealthCodeSource,
    Kind,
    Stage,
    Status,
    Travel,
)
from tests.unit.conftest import (
    ENTERPRISE,
    arrival_check,
    at,
    boarding,
    checkin,
    colour_update,
    departure_check,
    only_alert,
    state_after,
)

SELF = Assignment(enterprise_id=ENTERPRISE, travel=Travel.SELF)


def test_a_check_without_a_scanned_colour_goes_by_the_latest_platform_colour_before_it():
    state = state_after(
        colour_update(-3, HealthCode.RED),
        colour_update(-1, HealthCode.GREEN),
        departure_check(0, health_code=None),
    )

    checkpoint = state.checkpoints[Kind.DEPARTURE_CHECK]
    assert checkpoint.passed
    assert checkpoint.health_code is HealthCode.GREEN
    assert checkpoint.health_code_source is HealthCodeSource.PLATFORM
    assert state.stage is Stage.DEPARTURE_CLEARED


def test_a_platform_colour_from_after_the_check_does_not_count_at_it():
    state = state_after(departure_check(0, health_code=None), colour_update(0.5, HealthCode.GREEN))

    checkpoint = state.checkpoints[Kind.DEPARTURE_CHECK]
    assert not checkpoint.passed
    assert checkpoint.health_code_source is HealthCodeSource.MISSING
    assert only_alert(state, AlertKind.CODE_NOT_GREEN_AT_DEPARTURE).open


def test_a_platform_colour_stamped_the_same_instant_as_the_check_counts():
    state = state_after(colour_update(0, HealthCode.GREEN), departure_check(0, health_code=None))

    assert state.checkpoints[Kind.DEPARTURE_CHECK].passed


def test_a_platform_colour_older_than_the_maximum_age_is_not_used():
    rules = Rules(health_code_max_age=timedelta(hours=24))
    stale = state_after(
        colour_update(-25, HealthCode.GREEN), departure_check(0, health_code=None), rules=rules
    )
    fresh = state_after(
        colour_update(-24, HealthCode.GREEN), departure_check(0, health_code=None), rules=rules
    )

    assert stale.checkpoints[Kind.DEPARTURE_CHECK].health_code_source is HealthCodeSource.MISSING
    assert stale.status is Status.HELD
    assert fresh.checkpoints[Kind.DEPARTURE_CHECK].passed


def test_a_non_green_platform_colour_fails_the_arrival_recheck():
    state = state_after(
        departure_check(0),
        boarding(1),
        colour_update(9, HealthCode.YELLOW),
        arrival_check(10, health_code=None),
    )

    assert only_alert(state, AlertKind.CODE_NOT_GREEN_AT_ARRIVAL).open
    assert state.checkpoints[Kind.ARRIVAL_CHECK].health_code is HealthCode.YELLOW
    assert state.status is Status.HELD


def test_a_scanned_colour_wins_over_the_platform_at_its_check():
    state = state_after(colour_update(-1, HealthCode.RED), departure_check(0))

    checkpoint = state.checkpoints[Kind.DEPARTURE_CHECK]
    assert checkpoint.passed
    assert checkpoint.health_code_source is HealthCodeSource.SCANNED


def test_a_worker_travelling_on_their_own_closes_the_loop_without_boarding():
    state = state_after(departure_check(0), arrival_check(10), checkin(12), assignment=SELF)

    assert (state.stage, state.status) == (Stage.CHECKED_IN, Status.CLOSED)
    assert not state.alerts


def test_a_self_arranged_journey_clears_departure_then_arrival():
    after_departure = state_after(departure_check(0), assignment=SELF)
    after_arrival = state_after(departure_check(0), arrival_check(10), assignment=SELF)

    assert after_departure.stage is Stage.DEPARTURE_CLEARED
    assert after_arrival.stage is Stage.ARRIVAL_CLEARED


def test_an_organised_worker_arriving_without_boarding_is_still_an_alert():
    state = state_after(departure_check(0), arrival_check(10))

    assert only_alert(state, AlertKind.ARRIVED_WITHOUT_BOARDING).open


def test_a_self_arranged_worker_is_overdue_after_the_expected_arrival_and_grace():
    expected = replace(SELF, expected_arrival=at(8))

    before = state_after(departure_check(0), now=at(9.5), assignment=expected)
    after = state_after(departure_check(0), now=at(10.5), assignment=expected)
    arrived = state_after(departure_check(0), arrival_check(11), now=at(12), assignment=expected)

    assert not before.alerts
    assert only_alert(after, AlertKind.OVERDUE_ARRIVAL).raised_at == at(10)
    overdue = only_alert(arrived, AlertKind.OVERDUE_ARRIVAL)
    assert (overdue.open, overdue.closed_at) == (False, at(11))


def test_a_self_arranged_worker_with_no_expected_arrival_is_never_overdue():
    state = state_after(departure_check(0), now=at(500), assignment=SELF)

    assert not state.alerts


def test_an_override_reason_is_shown_on_its_checkpoint():
    override = replace(boarding(1), override_reason="boarded on the supervisor's word")

    state = state_after(departure_check(0, temperature_c=38.5), override)

    assert state.checkpoints[Kind.BOARDING].override_reason == "boarded on the supervisor's word"
    assert not state.checkpoints[Kind.BOARDING].passed
