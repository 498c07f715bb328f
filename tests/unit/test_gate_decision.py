"""The gate lets a worker in only when the loop allows it, and says why not in words."""

from __future__ import annotations

from shared.domain.gate import GateFacts, decide_gate
from shared.domain.vocabulary import AlertKind, HealthCode

READY = GateFacts(
    manifest_enterprise_id="E0001",
    arrival_check_passed=True,
    health_code=HealthCode.GREEN,
    open_alerts=frozenset(),
)


def with_(**changes: object) -> GateFacts:
    return GateFacts(**{**READY.__dict__, **changes})  # type: ignore[arg-type]


def test_a_worker_who_passed_the_recheck_with_a_green_code_on_this_manifest_is_let_in() -> None:
    decision = decide_gate(READY, "E0001")
    assert decision.allow and decision.reasons == ()


def test_no_arrival_recheck_means_no_entry() -> None:
    decision = decide_gate(with_(arrival_check_passed=None), "E0001")
    assert not decision.allow
    assert decision.reasons == (
        "no arrival health recheck on record: send the worker to the health station",
    )


def test_a_failed_latest_recheck_means_no_entry() -> None:
    decision = decide_gate(with_(arrival_check_passed=False), "E0001")
    assert decision.reasons == ("the latest arrival health recheck did not pass",)


def test_a_red_or_yellow_code_means_no_entry() -> None:
    for colour in (HealthCode.RED, HealthCode.YELLOW):
        decision = decide_gate(with_(health_code=colour), "E0001")
        assert decision.reasons == (f"health code is {colour.value}, not green",)


def test_an_unknown_colour_means_no_entry() -> None:
    assert not decide_gate(with_(health_code=None), "E0001").allow


def test_a_worker_expected_elsewhere_or_nowhere_is_turned_away() -> None:
    elsewhere = decide_gate(READY, "E0002")
    assert elsewhere.reasons == ("expected at another enterprise (E0001), not here",)
    nowhere = decide_gate(with_(manifest_enterprise_id=None), "E0001")
    assert nowhere.reasons == ("not on any enterprise's manifest",)


def test_an_open_overdue_checkin_alone_does_not_block() -> None:
    decision = decide_gate(with_(open_alerts=frozenset({AlertKind.OVERDUE_CHECKIN})), "E0001")
    assert decision.allow


def test_any_other_open_alert_blocks_and_is_named() -> None:
    for kind in AlertKind:
        if kind is AlertKind.OVERDUE_CHECKIN:
            continue
        decision = decide_gate(with_(open_alerts=frozenset({kind})), "E0001")
        assert not decision.allow, kind
        assert len(decision.reasons) == 1 and decision.reasons[0].startswith("open alert: ")


def test_every_reason_is_given_at_once() -> None:
    facts = GateFacts(
        manifest_enterprise_id="E0009",
        arrival_check_passed=False,
        health_code=HealthCode.RED,
        open_alerts=frozenset({AlertKind.CODE_CHANGED_IN_TRANSIT, AlertKind.OVERDUE_CHECKIN}),
    )
    assert len(decide_gate(facts, "E0001").reasons) == 4
