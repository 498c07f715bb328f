"""The factory gate's decision: may this worker check in here? Pure, no I/O.

Allow only when the latest arrival recheck passed, the colour is green, the
worker is on this enterprise's manifest and no alert other than
``overdue_checkin`` is open. Every reason is said in words a guard understands.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain.vocabulary import AlertKind, HealthCode

NON_BLOCKING = frozenset({AlertKind.OVERDUE_CHECKIN})

ALERT_WORDS = {
    AlertKind.FEVER_AT_DEPARTURE: "had a fever at the departure check",
    AlertKind.CODE_NOT_GREEN_AT_DEPARTURE: "health code was not green at departure",
    AlertKind.BOARDED_WITHOUT_CLEARANCE: "boarded without a passed departure check",
    AlertKind.TRIP_MISMATCH: "travelled on a trip other than the one on the manifest",
    AlertKind.FEVER_AT_ARRIVAL: "had a fever at the arrival recheck",
    AlertKind.CODE_NOT_GREEN_AT_ARRIVAL: "health code was not green at the arrival recheck",
    AlertKind.ARRIVED_WITHOUT_BOARDING: "arrived without a boarding scan",
    AlertKind.CHECKIN_WITHOUT_ARRIVAL_CHECK: "checked in somewhere without an arrival recheck",
    AlertKind.WRONG_ENTERPRISE: "already scanned at another enterprise's gate",
    AlertKind.OVERDUE_ARRIVAL: "was overdue at the arrival recheck",
    AlertKind.OVERDUE_CHECKIN: "is overdue for check-in",
    AlertKind.CODE_CHANGED_IN_TRANSIT: "health code turned non-green during the journey",
}


@dataclass(frozen=True)
class GateFacts:
    """What the gate needs to know about one worker."""

    manifest_enterprise_id: str | None
    arrival_check_passed: bool | None  # None: no arrival recheck on record
    health_code: HealthCode | None
    open_alerts: frozenset[AlertKind]


@dataclass(frozen=True)
class GateDecision:
    allow: bool
    reasons: tuple[str, ...]


def decide_gate(facts: GateFacts, enterprise_id: str) -> GateDecision:
    """Allow or deny a check-in at ``enterprise_id``; when denied, say every reason."""
    reasons: list[str] = []
    if facts.arrival_check_passed is None:
        reasons.append("no arrival health recheck on record: send the worker to the health station")
    elif not facts.arrival_check_passed:
        reasons.append("the latest arrival health recheck did not pass")
    if facts.health_code is None:
        reasons.append("health code colour is unknown: ask for the health code")
    elif facts.health_code is not HealthCode.GREEN:
        reasons.append(f"health code is {facts.health_code.value}, not green")
    if facts.manifest_enterprise_id is None:
        reasons.append("not on any enterprise's manifest")
    elif facts.manifest_enterprise_id != enterprise_id:
        reasons.append(f"expected at another enterprise ({facts.manifest_enterprise_id}), not here")
    for kind in sorted(facts.open_alerts - NON_BLOCKING, key=lambda kind: kind.value):
        reasons.append(f"open alert: {ALERT_WORDS[kind]}")
    return GateDecision(allow=not reasons, reasons=tuple(reasons))
