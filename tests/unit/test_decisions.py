"""Deciding before recording: every reason code of contract v1.1, for every kind."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.domain.decisions import Reason, WorkerFacts, decide_checkpoint
from shared.domain.model import LoopState
from shared.domain.vocabulary import HealthCode, Kind, Travel
from tests.unit.conftest import (
    DEFAULT_RULES,
    ENTERPRISE,
    FEVER_C,
    OTHER_ENTERPRISE,
    OTHER_TRIP,
    TRIP,
    arrival_check,
    at,
    boarding,
    colour_update,
    departure_check,
    state_after,
)


def facts(
    state: LoopState, *, on_manifest: bool = True, travel: Travel = Travel.ORGANISED
) -> WorkerFacts:
    return WorkerFacts(
        on_manifest=on_manifest,
        enterprise_id=ENTERPRISE if on_manifest else None,
        trip_id=TRIP if on_manifest and travel is Travel.ORGANISED else None,
        travel=travel,
        state=state,
    )


def codes(decision) -> list[Reason]:
    return [said.code for said in decision.reasons]


def decide(kind: Kind, state: LoopState, *, hours: float = 1, **given) -> object:
    worker = facts(state, **{k: given.pop(k) for k in ("on_manifest", "travel") if k in given})
    return decide_checkpoint(kind, worker, now=at(hours), rules=DEFAULT_RULES, **given)


NOBODY = LoopState()
CLEARED = state_after(departure_check(0))


def test_a_departure_check_is_allowed_for_anyone_on_a_manifest():
    decision = decide(Kind.DEPARTURE_CHECK, NOBODY)

    assert decision.allow
    assert codes(decision) == []


def test_a_departure_check_for_someone_on_no_manifest_is_denied_and_says_so():
    decision = decide(Kind.DEPARTURE_CHECK, NOBODY, on_manifest=False)

    assert not decision.allow
    assert codes(decision) == [Reason.NOT_ON_MANIFEST]


def test_boarding_the_manifest_trip_after_a_passed_check_with_a_green_code_is_allowed():
    decision = decide(Kind.BOARDING, CLEARED, trip_id=TRIP)

    assert decision.allow


def test_boarding_with_no_departure_check_is_denied():
    assert codes(decide(Kind.BOARDING, NOBODY, trip_id=TRIP)) == [
        Reason.DEPARTURE_CHECK_MISSING,
        Reason.CODE_NOT_GREEN,
    ]


def test_boarding_after_a_failed_departure_check_is_denied_with_every_reason():
    held = state_after(departure_check(0, temperature_c=FEVER_C, health_code=HealthCode.RED))

    decision = decide(Kind.BOARDING, held, trip_id=OTHER_TRIP)

    assert not decision.allow
    assert codes(decision) == [
        Reason.DEPARTURE_CHECK_FAILED,
        Reason.CODE_NOT_GREEN,
        Reason.WRONG_TRIP,
    ]
    assert all(said.message for said in decision.reasons)


def test_a_colour_turned_red_since_the_check_denies_boarding():
    turned = state_after(departure_check(0), colour_update(0.5, HealthCode.RED))

    assert codes(decide(Kind.BOARDING, turned, trip_id=TRIP)) == [Reason.CODE_NOT_GREEN]


def test_a_colour_older_than_the_maximum_age_counts_as_unknown():
    old = DEFAULT_RULES.health_code_max_age + timedelta(hours=1)

    decision = decide(Kind.BOARDING, CLEARED, hours=old.total_seconds() / 3600, trip_id=TRIP)

    assert codes(decision) == [Reason.CODE_NOT_GREEN]
    assert "unknown or too old" in decision.reasons[0].message


def test_an_arrival_check_is_always_allowed_and_its_reasons_inform():
    decision = decide(Kind.ARRIVAL_CHECK, CLEARED, hours=9)

    assert decision.allow
    assert codes(decision) == [Reason.NOT_BOARDED]


def test_a_self_arranged_worker_is_not_expected_to_board_before_arrival():
    decision = decide(
        Kind.ARRIVAL_CHECK, state_after(departure_check(0)), hours=9, travel=Travel.SELF
    )

    assert decision.allow
    assert codes(decision) == []


def test_a_checkin_follows_the_gates_rules():
    arrived = state_after(departure_check(0), boarding(1), arrival_check(10))

    assert decide(Kind.CHECKIN, arrived, hours=11, enterprise_id=ENTERPRISE).allow
    assert codes(decide(Kind.CHECKIN, arrived, hours=11, enterprise_id=OTHER_ENTERPRISE)) == [
        Reason.WRONG_ENTERPRISE
    ]


def test_a_checkin_without_an_arrival_recheck_is_denied():
    assert codes(decide(Kind.CHECKIN, CLEARED, enterprise_id=ENTERPRISE)) == [
        Reason.ARRIVAL_CHECK_MISSING
    ]


def test_a_checkin_after_a_failed_recheck_is_denied_with_the_open_alert():
    failed = state_after(departure_check(0), boarding(1), arrival_check(10, temperature_c=FEVER_C))

    decision = decide(Kind.CHECKIN, failed, hours=11, enterprise_id=ENTERPRISE)

    assert codes(decision) == [Reason.ARRIVAL_CHECK_FAILED, Reason.OPEN_ALERT]
    assert "fever" in decision.reasons[-1].message


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_says_not_on_manifest_for_a_stranger(kind):
    assert Reason.NOT_ON_MANIFEST in codes(decide(kind, NOBODY, on_manifest=False))
