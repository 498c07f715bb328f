"""Small builders for the domain unit tests: scans at hours after a fixed base time.

Plain functions rather than fixtures, so hypothesis strategies can use them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from shared.domain.model import Alert, Assignment, HealthCodeUpdate, LoopState, Rules, Scan, decide
from shared.domain.vocabulary import AlertKind, HealthCode, Kind

BASE = datetime(2020, 3, 2, 8, 0, tzinfo=UTC)

TRIP = "bus-guiyang-ningbo-0302"
OTHER_TRIP = "train-z1234"
ENTERPRISE = "yinzhou-textile"
OTHER_ENTERPRISE = "beilun-moulds"
ASSIGNMENT = Assignment(enterprise_id=ENTERPRISE, trip_id=TRIP)

NORMAL_TEMPERATURE_C = 36.6
FEVER_C = 38.5
DEFAULT_RULES = Rules()


def at(hours: float) -> datetime:
    """The moment ``hours`` after the fixed base time (UTC)."""
    return BASE + timedelta(hours=hours)


def _scan_id(kind: Kind, hours: float, scan_id: str | None) -> str:
    return scan_id or f"{kind.value}@{hours}h"


def departure_check(
    hours: float,
    *,
    temperature_c: float = NORMAL_TEMPERATURE_C,
    health_code: HealthCode | None = HealthCode.GREEN,
    scan_id: str | None = None,
) -> Scan:
    return Scan(
        scan_id=_scan_id(Kind.DEPARTURE_CHECK, hours, scan_id),
        kind=Kind.DEPARTURE_CHECK,
        occurred_at=at(hours),
        station="recruitment-team-guizhou",
        temperature_c=temperature_c,
        health_code=health_code,
    )


def boarding(hours: float, *, trip_id: str = TRIP, scan_id: str | None = None) -> Scan:
    return Scan(
        scan_id=_scan_id(Kind.BOARDING, hours, scan_id),
        kind=Kind.BOARDING,
        occurred_at=at(hours),
        station="bus-door",
        trip_id=trip_id,
    )


def arrival_check(
    hours: float,
    *,
    temperature_c: float = NORMAL_TEMPERATURE_C,
    health_code: HealthCode | None = HealthCode.GREEN,
    scan_id: str | None = None,
) -> Scan:
    return Scan(
        scan_id=_scan_id(Kind.ARRIVAL_CHECK, hours, scan_id),
        kind=Kind.ARRIVAL_CHECK,
        occurred_at=at(hours),
        station="ningbo-health-station",
        temperature_c=temperature_c,
        health_code=health_code,
    )


def checkin(hours: float, *, enterprise_id: str = ENTERPRISE, scan_id: str | None = None) -> Scan:
    return Scan(
        scan_id=_scan_id(Kind.CHECKIN, hours, scan_id),
        kind=Kind.CHECKIN,
        occurred_at=at(hours),
        station="factory-gate",
        enterprise_id=enterprise_id,
    )


def colour_update(hours: float, health_code: HealthCode) -> HealthCodeUpdate:
    return HealthCodeUpdate(health_code=health_code, as_of=at(hours))


def happy_journey() -> list[Scan]:
    """Four passing scans in order: depart 0 h, board 1 h, arrive 10 h, check in 12 h."""
    return [departure_check(0), boarding(1), arrival_check(10), checkin(12)]


def state_after(
    *events: Scan | HealthCodeUpdate,
    now: datetime | None = None,
    assignment: Assignment = ASSIGNMENT,
    trip_etas: Mapping[str, datetime] | None = None,
    rules: Rules = DEFAULT_RULES,
) -> LoopState:
    """``decide`` over the given scans and updates; ``now`` defaults to 1 h after the last."""
    scans = [event for event in events if isinstance(event, Scan)]
    updates = [event for event in events if isinstance(event, HealthCodeUpdate)]
    if now is None:
        times = [s.occurred_at for s in scans] + [u.as_of for u in updates]
        now = max(times, default=BASE) + timedelta(hours=1)
    return decide(scans, updates, now=now, assignment=assignment, trip_etas=trip_etas, rules=rules)


def alerts_of(state: LoopState, kind: AlertKind) -> list[Alert]:
    return [alert for alert in state.alerts if alert.kind is kind]


def only_alert(state: LoopState, kind: AlertKind) -> Alert:
    """The single alert of ``kind`` in the state's alerts (open or history)."""
    found = alerts_of(state, kind)
    assert len(found) == 1, f"expected one {kind} alert, got {found}"
    return found[0]
