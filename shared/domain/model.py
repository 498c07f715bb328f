"""The closed loop of one worker, decided by event time.

A worker's state is a pure function of the *set* of scans and health-code
updates seen for them (plus the manifest and "now"): the events are folded in
event-time order, so any arrival order and any number of duplicates give the
same result. The only thing arrival order can leave behind is an alert that an
arrival-order state raised and event order does not explain; such alerts are
kept as closed history (see ``reconcile_alerts``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from shared.domain.vocabulary import (
    COLOUR_ALERTS,
    HEALTH_ALERTS,
    AlertKind,
    DispositionKind,
    HealthCode,
    HealthCodeSource,
    Kind,
    Stage,
    Status,
    Travel,
)

STAGE_ORDER = tuple(Stage)
_KIND_RANK = {kind: rank for rank, kind in enumerate(Kind)}
# A colour update sorts before a scan at the same instant: a platform colour
# whose ``as_of`` equals a check's ``occurred_at`` counts at that check.
_UPDATE_RANK = -1
# A disposition sorts after the scans of its instant: it answers what they found.
_DISPOSITION_RANK = len(Kind)


@dataclass(frozen=True)
class Rules:
    """The configurable thresholds of PRODUCT.md's rules."""

    fever_threshold_c: float = 37.3
    arrival_grace: timedelta = timedelta(hours=2)
    checkin_window: timedelta = timedelta(hours=24)
    # A platform colour older than this at a check is not used there.
    health_code_max_age: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class Scan:
    """One accepted scan, already validated and pseudonymised."""

    scan_id: str
    kind: Kind
    occurred_at: datetime
    station: str
    temperature_c: float | None = None
    health_code: HealthCode | None = None
    trip_id: str | None = None
    enterprise_id: str | None = None
    # Recorded although the decision before it said no: why.
    override_reason: str | None = None

    @property
    def order_key(self) -> tuple[datetime, int, str]:
        return (self.occurred_at, _KIND_RANK[self.kind], self.scan_id)


@dataclass(frozen=True)
class HealthCodeUpdate:
    """A colour from the health-code platform, valid from ``as_of``."""

    health_code: HealthCode
    as_of: datetime

    @property
    def order_key(self) -> tuple[datetime, int, str]:
        return (self.as_of, _UPDATE_RANK, self.health_code.value)


@dataclass(frozen=True)
class Disposition:
    """What a health station or supervisor recorded about a worker, in event time."""

    disposition_id: str
    kind: DispositionKind
    at: datetime
    by: str = ""
    note: str = ""

    @property
    def order_key(self) -> tuple[datetime, int, str]:
        return (self.at, _DISPOSITION_RANK, self.disposition_id)


Event = Scan | HealthCodeUpdate | Disposition


@dataclass(frozen=True)
class Assignment:
    """What the manifest expects of a worker: their enterprise, trip and way of travel.

    A self-arranged journey (``travel`` self) has no trip and no boarding; its
    ``expected_arrival``, when given, sets the arrival deadline.
    """

    enterprise_id: str | None = None
    trip_id: str | None = None
    travel: Travel = Travel.ORGANISED
    expected_arrival: datetime | None = None

    @property
    def self_arranged(self) -> bool:
        return self.travel is Travel.SELF


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    raised_at: datetime
    open: bool = True
    closed_at: datetime | None = None

    @property
    def identity(self) -> tuple[AlertKind, datetime]:
        return (self.kind, self.raised_at)


@dataclass(frozen=True)
class Checkpoint:
    """The latest scan (by event time) at one checkpoint and whether it passed."""

    scan_id: str
    at: datetime
    passed: bool
    station: str
    temperature_c: float | None = None
    health_code: HealthCode | None = None
    trip_id: str | None = None
    enterprise_id: str | None = None
    health_code_source: HealthCodeSource | None = None
    override_reason: str | None = None


@dataclass(frozen=True)
class LoopState:
    """A worker's closed-loop state: what the API shows and the roster counts."""

    stage: Stage = Stage.REGISTERED
    status: Status = Status.OPEN
    checkpoints: Mapping[Kind, Checkpoint] = field(default_factory=dict)
    alerts: tuple[Alert, ...] = ()
    health_code: HealthCode | None = None
    # When that colour was observed (scanned or from the platform).
    health_code_at: datetime | None = None
    departed: bool = False
    boarded_trip_id: str | None = None
    arrived: bool = False
    checked_in_enterprise_id: str | None = None
    # The earliest overdue deadline still ahead: when the sweep must look again.
    next_deadline: datetime | None = None
    dispositions: tuple[Disposition, ...] = ()

    @property
    def open_alerts(self) -> frozenset[AlertKind]:
        return frozenset(alert.kind for alert in self.alerts if alert.open)

    @property
    def in_transit(self) -> bool:
        return self.boarded_trip_id is not None and not self.arrived


def is_fever(temperature_c: float | None, rules: Rules) -> bool:
    return temperature_c is not None and temperature_c >= rules.fever_threshold_c


def check_passes(temperature_c: float | None, colour: HealthCode | None, rules: Rules) -> bool:
    """A health check passes below the fever threshold with a green code."""
    return not is_fever(temperature_c, rules) and colour is HealthCode.GREEN


class _Fold:
    """Mutable scratchpad of one event-time fold; never leaves ``decide``."""

    def __init__(
        self, assignment: Assignment, trip_etas: Mapping[str, datetime], rules: Rules
    ) -> None:
        self.assignment = assignment
        self.trip_etas = trip_etas
        self.rules = rules
        self.stage = Stage.REGISTERED
        self.checkpoints: dict[Kind, Checkpoint] = {}
        self.opened: dict[AlertKind, datetime] = {}
        self.history: list[Alert] = []
        self.departure_ok = False
        self.departed = False
        self.boarded_trip_id: str | None = None
        self.arrived = False
        self.arrival_ok = False
        self.arrival_cleared_at: datetime | None = None
        self.checked_in_enterprise_id: str | None = None
        self.checkin_seen = False
        self.colour: HealthCode | None = None
        self.colour_at: datetime | None = None
        # The latest colour from the platform, and since when.
        self.platform_colour: HealthCode | None = None
        self.platform_as_of: datetime | None = None
        self.withdrawn = False
        self.dispositions: list[Disposition] = []

    def condition(self, kind: AlertKind, active: bool, at: datetime) -> None:
        """Open ``kind`` when it becomes active, close it when it stops being so.

        An alert closed and raised again at the same instant stays one alert, so
        that no two alerts of a kind share a ``raised_at``.
        """
        if active and kind not in self.opened:
            reopened = next(
                (
                    alert
                    for alert in reversed(self.history)
                    if alert.kind is kind and alert.closed_at == at
                ),
                None,
            )
            if reopened is not None:
                self.history.remove(reopened)
                self.opened[kind] = reopened.raised_at
            else:
                self.opened[kind] = at
        elif not active and kind in self.opened:
            raised_at = self.opened.pop(kind)
            self.history.append(Alert(kind, raised_at, open=False, closed_at=at))

    def overdue_deadlines(self) -> list[tuple[datetime, AlertKind]]:
        deadlines = []
        if self.boarded_trip_id is not None and not self.arrived:
            eta = self.trip_etas.get(self.boarded_trip_id)
            if eta is not None:
                deadlines.append((eta + self.rules.arrival_grace, AlertKind.OVERDUE_ARRIVAL))
        elif self.assignment.self_arranged and self.departed and not self.arrived:
            expected = self.assignment.expected_arrival
            if expected is not None:
                deadlines.append((expected + self.rules.arrival_grace, AlertKind.OVERDUE_ARRIVAL))
        if self.arrival_cleared_at is not None and not self.checkin_seen:
            deadlines.append(
                (self.arrival_cleared_at + self.rules.checkin_window, AlertKind.OVERDUE_CHECKIN)
            )
        return deadlines

    def pass_time(self, until: datetime) -> None:
        """Raise every overdue alert whose deadline lies before ``until``."""
        if self.withdrawn:
            return  # nobody is waiting for a worker who will not return
        for deadline, kind in self.overdue_deadlines():
            if deadline < until:
                self.condition(kind, True, deadline)

    def advance(self, from_stage: Stage, to_stage: Stage) -> None:
        if self.stage is from_stage:
            self.stage = to_stage

    def record(
        self,
        scan: Scan,
        passed: bool,
        colour: HealthCode | None = None,
        source: HealthCodeSource | None = None,
    ) -> None:
        self.checkpoints[scan.kind] = Checkpoint(
            scan_id=scan.scan_id,
            at=scan.occurred_at,
            passed=passed,
            station=scan.station,
            temperature_c=scan.temperature_c,
            health_code=colour if source is not None else scan.health_code,
            trip_id=scan.trip_id,
            enterprise_id=scan.enterprise_id,
            health_code_source=source,
            override_reason=scan.override_reason,
        )

    def colour_at_check(self, scan: Scan) -> tuple[HealthCode | None, HealthCodeSource]:
        """The colour a check goes by: as scanned, else the platform's latest in event time
        (``as_of`` at or before the check and not older than the maximum age)."""
        if scan.health_code is not None:
            return scan.health_code, HealthCodeSource.SCANNED
        as_of = self.platform_as_of
        if as_of is not None and scan.occurred_at - as_of <= self.rules.health_code_max_age:
            return self.platform_colour, HealthCodeSource.PLATFORM
        return None, HealthCodeSource.MISSING

    def observe_colour(self, colour: HealthCode, at: datetime) -> None:
        self.colour = colour
        self.colour_at = at
        if colour is HealthCode.GREEN:
            self.condition(AlertKind.CODE_CHANGED_IN_TRANSIT, False, at)

    def departure_check(self, scan: Scan) -> None:
        colour, source = self.colour_at_check(scan)
        passed = check_passes(scan.temperature_c, colour, self.rules)
        at = scan.occurred_at
        self.condition(AlertKind.FEVER_AT_DEPARTURE, is_fever(scan.temperature_c, self.rules), at)
        self.condition(AlertKind.CODE_NOT_GREEN_AT_DEPARTURE, colour is not HealthCode.GREEN, at)
        self.departure_ok = passed
        if passed:
            self.departed = True
            self.advance(Stage.REGISTERED, Stage.DEPARTURE_CLEARED)
        self.record(scan, passed, colour, source)

    def boarding(self, scan: Scan) -> None:
        at = scan.occurred_at
        expected_trip = self.assignment.trip_id
        right_trip = expected_trip is None or scan.trip_id == expected_trip
        self.condition(AlertKind.BOARDED_WITHOUT_CLEARANCE, not self.departure_ok, at)
        self.condition(AlertKind.TRIP_MISMATCH, not right_trip, at)
        self.boarded_trip_id = scan.trip_id
        if self.departure_ok:
            self.advance(Stage.DEPARTURE_CLEARED, Stage.BOARDED)
        self.record(scan, self.departure_ok and right_trip)

    def arrival_check(self, scan: Scan) -> None:
        colour, source = self.colour_at_check(scan)
        passed = check_passes(scan.temperature_c, colour, self.rules)
        at = scan.occurred_at
        self_arranged = self.assignment.self_arranged
        self.arrived = True
        self.condition(AlertKind.OVERDUE_ARRIVAL, False, at)
        self.condition(
            AlertKind.ARRIVED_WITHOUT_BOARDING,
            self.boarded_trip_id is None and not self_arranged,
            at,
        )
        self.condition(AlertKind.FEVER_AT_ARRIVAL, is_fever(scan.temperature_c, self.rules), at)
        self.condition(AlertKind.CODE_NOT_GREEN_AT_ARRIVAL, colour is not HealthCode.GREEN, at)
        self.arrival_ok = passed
        # A self-arranged journey has no boarding: the departure clearance leads here.
        travelled = Stage.DEPARTURE_CLEARED if self_arranged else Stage.BOARDED
        if passed and (self.stage is travelled or self.stage is Stage.BOARDED):
            self.stage = Stage.ARRIVAL_CLEARED
            self.arrival_cleared_at = at
        self.record(scan, passed, colour, source)

    def checkin(self, scan: Scan) -> None:
        at = scan.occurred_at
        expected = self.assignment.enterprise_id
        right_place = expected is None or scan.enterprise_id == expected
        self.condition(AlertKind.CHECKIN_WITHOUT_ARRIVAL_CHECK, not self.arrival_ok, at)
        self.condition(AlertKind.WRONG_ENTERPRISE, not right_place, at)
        if right_place:
            self.checked_in_enterprise_id = scan.enterprise_id
        passed = self.arrival_ok and right_place
        # Any check-in scan ends the wait: a wrong one raises its own alert.
        self.checkin_seen = True
        self.condition(AlertKind.OVERDUE_CHECKIN, False, at)
        if passed and self.stage is Stage.ARRIVAL_CLEARED:
            self.stage = Stage.CHECKED_IN
        self.record(scan, passed)

    def health_update(self, update: HealthCodeUpdate) -> None:
        in_transit = self.stage in (
            Stage.DEPARTURE_CLEARED,
            Stage.BOARDED,
            Stage.ARRIVAL_CLEARED,
        )
        if in_transit and update.health_code is not HealthCode.GREEN:
            self.condition(AlertKind.CODE_CHANGED_IN_TRANSIT, True, update.as_of)
        self.platform_colour = update.health_code
        self.platform_as_of = update.as_of
        self.observe_colour(update.health_code, update.as_of)

    def disposition(self, disposition: Disposition) -> None:
        at = disposition.at
        if disposition.kind is DispositionKind.RELEASED:
            self.withdrawn = False
            for kind in HEALTH_ALERTS:
                self.condition(kind, False, at)
        elif disposition.kind is DispositionKind.CODE_APPEAL_UPHELD:
            for kind in COLOUR_ALERTS:
                self.condition(kind, False, at)
        elif disposition.kind is DispositionKind.WITHDRAWN:
            self.withdrawn = True
            for kind in list(self.opened):
                self.condition(kind, False, at)
        # isolation and medical_observation are recorded; the hold stays.
        self.dispositions.append(disposition)

    def fold(self, events: Iterable[Event]) -> None:
        """Fold events, already in event-time order, raising overdue alerts on the way."""
        for event in events:
            if isinstance(event, Disposition):
                self.pass_time(event.at)
                self.disposition(event)
                continue
            if isinstance(event, HealthCodeUpdate):
                self.pass_time(event.as_of)
                self.health_update(event)
                continue
            self.pass_time(event.occurred_at)
            _CHECKS[event.kind](self, event)
            if event.health_code is not None:
                self.observe_colour(event.health_code, event.occurred_at)

    def alerts(self) -> tuple[Alert, ...]:
        open_alerts = [Alert(kind, raised_at) for kind, raised_at in self.opened.items()]
        return tuple(sorted(self.history + open_alerts, key=_alert_order))

    def state(self, now: datetime, alerts: tuple[Alert, ...] | None = None) -> LoopState:
        """The state at ``now``; ``alerts`` replaces the fold's own (once reconciled)."""
        ahead = [deadline for deadline, _ in self.overdue_deadlines() if deadline >= now]
        if alerts is None:
            alerts = self.alerts()
        open_kinds = self.opened.keys()
        if self.withdrawn:
            status = Status.WITHDRAWN
        elif any(kind in HEALTH_ALERTS for kind in open_kinds):
            status = Status.HELD
        elif open_kinds:
            status = Status.BROKEN
        elif self.stage is Stage.CHECKED_IN:
            status = Status.CLOSED
        else:
            status = Status.OPEN
        return LoopState(
            stage=self.stage,
            status=status,
            checkpoints=dict(self.checkpoints),
            alerts=alerts,
            health_code=self.colour,
            health_code_at=self.colour_at,
            departed=self.departed,
            boarded_trip_id=self.boarded_trip_id,
            arrived=self.arrived,
            checked_in_enterprise_id=self.checked_in_enterprise_id,
            next_deadline=None if self.withdrawn else min(ahead, default=None),
            dispositions=tuple(self.dispositions),
        )


def _order_key(event: Event) -> tuple[datetime, int, str]:
    return event.order_key


def _alert_order(alert: Alert) -> tuple[datetime, str]:
    return (alert.raised_at, alert.kind.value)


def decide(
    scans: Iterable[Scan],
    updates: Iterable[HealthCodeUpdate] = (),
    dispositions: Iterable[Disposition] = (),
    *,
    now: datetime,
    assignment: Assignment = Assignment(),
    trip_etas: Mapping[str, datetime] | None = None,
    rules: Rules = Rules(),
) -> LoopState:
    """Fold a worker's scans, colour updates and dispositions in event-time order into
    their loop state.

    Duplicates (same ``scan_id``, same ``disposition_id``) count once. Overdue
    alerts are raised for every deadline that passed before the next event or
    before ``now``.
    """
    unique: dict[str, Scan] = {}
    for scan in scans:
        unique.setdefault(scan.scan_id, scan)
    recorded: dict[str, Disposition] = {}
    for disposition in dispositions:
        recorded.setdefault(disposition.disposition_id, disposition)
    events: list[Event] = [*unique.values(), *set(updates), *recorded.values()]
    events.sort(key=lambda event: event.order_key)
    fold = _Fold(assignment, trip_etas or {}, rules)
    fold.fold(events)
    fold.pass_time(now)
    return fold.state(now)


_CHECKS = {
    Kind.DEPARTURE_CHECK: _Fold.departure_check,
    Kind.BOARDING: _Fold.boarding,
    Kind.ARRIVAL_CHECK: _Fold.arrival_check,
    Kind.CHECKIN: _Fold.checkin,
}


def reconcile_alerts(
    stored: Iterable[Alert], decided: Iterable[Alert], *, now: datetime
) -> tuple[Alert, ...]:
    """Merge freshly decided alerts with the stored history.

    An alert that is stored but that event order does not explain (an
    arrival-order artefact) stays as history, closed at ``now`` if still open.
    """
    decided = tuple(decided)
    known = {alert.identity for alert in decided}
    artefacts = [
        alert if not alert.open else replace(alert, open=False, closed_at=now)
        for alert in stored
        if alert.identity not in known
    ]
    return tuple(sorted((*decided, *artefacts), key=_alert_order))


@dataclass(frozen=True)
class WorkerHistory:
    """Everything applied for one worker: the input of ``decide`` plus alert history."""

    scans: tuple[Scan, ...] = ()
    updates: tuple[HealthCodeUpdate, ...] = ()
    alerts: tuple[Alert, ...] = ()
    dispositions: tuple[Disposition, ...] = ()

    @classmethod
    def in_event_order(
        cls,
        scans: Iterable[Scan],
        updates: Iterable[HealthCodeUpdate],
        alerts: Iterable[Alert],
        dispositions: Iterable[Disposition],
    ) -> WorkerHistory:
        """A stored history, its events in event order (alerts as given)."""
        return cls(
            tuple(sorted(scans, key=_order_key)),
            tuple(sorted(updates, key=_order_key)),
            tuple(alerts),
            tuple(sorted(dispositions, key=_order_key)),
        )


@dataclass(frozen=True)
class Transition:
    """What applying new events did: the new history and state, and what changed."""

    history: WorkerHistory
    previous: LoopState
    state: LoopState
    applied: tuple[Scan, ...]
    raised: tuple[Alert, ...]
    closed: tuple[Alert, ...]

    @property
    def changed(self) -> bool:
        return (
            self.previous.stage is not self.state.stage
            or self.previous.status is not self.state.status
            or bool(self.raised or self.closed)
        )


def apply(
    history: WorkerHistory,
    previous: LoopState,
    *,
    scans: Iterable[Scan] = (),
    updates: Iterable[HealthCodeUpdate] = (),
    dispositions: Iterable[Disposition] = (),
    now: datetime,
    assignment: Assignment = Assignment(),
    trip_etas: Mapping[str, datetime] | None = None,
    rules: Rules = Rules(),
) -> Transition:
    """Apply new scans/updates/dispositions (duplicates ignored) and re-decide the state."""
    seen = {scan.scan_id for scan in history.scans}
    applied: list[Scan] = []
    for scan in scans:
        if scan.scan_id not in seen:
            seen.add(scan.scan_id)
            applied.append(scan)
    all_scans = tuple(sorted((*history.scans, *applied), key=_order_key))
    updates = tuple(updates)
    all_updates = (
        tuple(sorted(set(history.updates) | set(updates), key=_order_key))
        if updates
        else history.updates
    )
    known = {d.disposition_id: d for d in history.dispositions}
    for disposition in dispositions:
        known.setdefault(disposition.disposition_id, disposition)
    all_dispositions = tuple(sorted(known.values(), key=_order_key))
    # The same fold as ``decide`` (the scans are unique and sorted already).
    fold = _Fold(assignment, trip_etas or {}, rules)
    others: tuple[Event, ...] = (*all_updates, *all_dispositions)
    fold.fold(sorted((*all_scans, *others), key=_order_key) if others else all_scans)
    fold.pass_time(now)
    alerts = reconcile_alerts(history.alerts, fold.alerts(), now=now)
    state = fold.state(now, alerts)
    before = {alert.identity: alert for alert in history.alerts}
    # Every alert new to the history counts as raised, even one that event
    # order already closed (a fever and its passing recheck in one batch).
    raised = tuple(a for a in alerts if a.identity not in before)
    closed = tuple(
        a for a in alerts if not a.open and (a.identity not in before or before[a.identity].open)
    )
    return Transition(
        history=WorkerHistory(all_scans, all_updates, alerts, all_dispositions),
        previous=previous,
        state=state,
        applied=tuple(applied),
        raised=raised,
        closed=closed,
    )
