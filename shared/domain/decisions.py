"""Deciding before recording: may this worker pass this checkpoint now? Pure, no I/O.

The checkpoint asks before it records a scan, so the person at the bus door or
the gate sees 放行 / 禁止 with every reason. A scan is still a fact: it is
recorded even against a denial (with an override reason), since the clearance
it lacks may be waiting in an offline queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.domain.gate import ALERT_WORDS, NON_BLOCKING
from shared.domain.model import LoopState, Rules
from shared.domain.vocabulary import AlertKind, HealthCode, Kind, Travel


class Reason(StrEnum):
    NOT_ON_MANIFEST = "not_on_manifest"
    DEPARTURE_CHECK_MISSING = "departure_check_missing"
    DEPARTURE_CHECK_FAILED = "departure_check_failed"
    CODE_NOT_GREEN = "code_not_green"
    WRONG_TRIP = "wrong_trip"
    NOT_BOARDED = "not_boarded"
    ARRIVAL_CHECK_MISSING = "arrival_check_missing"
    ARRIVAL_CHECK_FAILED = "arrival_check_failed"
    WRONG_ENTERPRISE = "wrong_enterprise"
    OPEN_ALERT = "open_alert"


@dataclass(frozen=True)
class Said:
    """One reason, by code and in words."""

    code: Reason
    message: str


@dataclass(frozen=True)
class Decision:
    kind: Kind
    allow: bool
    reasons: tuple[Said, ...]


@dataclass(frozen=True)
class WorkerFacts:
    """What the manifest says of a worker, and their loop state now."""

    on_manifest: bool
    enterprise_id: str | None
    trip_id: str | None
    travel: Travel
    state: LoopState


def colour_now(state: LoopState, now: datetime, rules: Rules) -> HealthCode | None:
    """The worker's colour if it was observed within the maximum age, else unknown."""
    at = state.health_code_at
    if state.health_code is None or at is None or now - at > rules.health_code_max_age:
        return None
    return state.health_code


def _colour(state: LoopState, now: datetime, rules: Rules) -> list[Said]:
    colour = colour_now(state, now, rules)
    if colour is HealthCode.GREEN:
        return []
    if colour is None:
        words = "health code colour unknown or too old: ask for the health code"
    else:
        words = f"health code is {colour.value}, not green"
    return [Said(Reason.CODE_NOT_GREEN, words)]


def _check(state: LoopState, kind: Kind, missing: Reason, failed: Reason) -> list[Said]:
    checkpoint = state.checkpoints.get(kind)
    name = "departure health check" if kind is Kind.DEPARTURE_CHECK else "arrival recheck"
    if checkpoint is None:
        return [Said(missing, f"no {name} on record")]
    if not checkpoint.passed:
        return [Said(failed, f"the latest {name} did not pass")]
    return []


def _manifest(facts: WorkerFacts) -> list[Said]:
    if facts.on_manifest:
        return []
    return [Said(Reason.NOT_ON_MANIFEST, "not on any manifest: check the worker's papers")]


def decide_checkpoint(
    kind: Kind,
    facts: WorkerFacts,
    *,
    now: datetime,
    rules: Rules,
    trip_id: str | None = None,
    enterprise_id: str | None = None,
) -> Decision:
    """Allow or deny ``kind`` for this worker now, with every reason (contract v1.1)."""
    state = facts.state
    reasons = _manifest(facts)
    if kind is Kind.DEPARTURE_CHECK:
        return Decision(kind, not reasons, tuple(reasons))
    if kind is Kind.BOARDING:
        reasons += _check(
            state,
            Kind.DEPARTURE_CHECK,
            Reason.DEPARTURE_CHECK_MISSING,
            Reason.DEPARTURE_CHECK_FAILED,
        )
        reasons += _colour(state, now, rules)
        if facts.on_manifest and (facts.trip_id is None or trip_id != facts.trip_id):
            expected = facts.trip_id or (
                "none: travelling on their own" if facts.travel is Travel.SELF else "none"
            )
            reasons.append(Said(Reason.WRONG_TRIP, f"the manifest's trip is {expected}"))
        return Decision(kind, not reasons, tuple(reasons))
    if kind is Kind.ARRIVAL_CHECK:
        # Always allowed: the recheck is how a problem gets found. The reasons inform.
        reasons += _check(
            state,
            Kind.DEPARTURE_CHECK,
            Reason.DEPARTURE_CHECK_MISSING,
            Reason.DEPARTURE_CHECK_FAILED,
        )
        if facts.travel is Travel.ORGANISED and state.boarded_trip_id is None:
            reasons.append(Said(Reason.NOT_BOARDED, "no boarding on record"))
        reasons += _colour(state, now, rules)
        return Decision(kind, True, tuple(reasons))
    reasons += _check(
        state, Kind.ARRIVAL_CHECK, Reason.ARRIVAL_CHECK_MISSING, Reason.ARRIVAL_CHECK_FAILED
    )
    reasons += _colour(state, now, rules)
    if facts.on_manifest and facts.enterprise_id != enterprise_id:
        reasons.append(
            Said(
                Reason.WRONG_ENTERPRISE,
                f"expected at another enterprise ({facts.enterprise_id}), not here",
            )
        )
    for alert in sorted(state.open_alerts - NON_BLOCKING, key=lambda kind: kind.value):
        reasons.append(Said(Reason.OPEN_ALERT, f"open alert: {ALERT_WORDS[AlertKind(alert)]}"))
    return Decision(kind, not reasons, tuple(reasons))
