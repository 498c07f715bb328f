"""The contract's words, defined once: scan kinds, colours, stages, statuses, alert kinds.

Everything else (topics, input validation, roles, SQL filters, metrics labels,
the pages) derives its lists from these enums.
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    DEPARTURE_CHECK = "departure_check"
    BOARDING = "boarding"
    ARRIVAL_CHECK = "arrival_check"
    CHECKIN = "checkin"


class Stage(StrEnum):
    REGISTERED = "registered"
    DEPARTURE_CLEARED = "departure_cleared"
    BOARDED = "boarded"
    ARRIVAL_CLEARED = "arrival_cleared"
    CHECKED_IN = "checked_in"


class Status(StrEnum):
    OPEN = "open"
    HELD = "held"
    BROKEN = "broken"
    CLOSED = "closed"
    # Will not return this wave (a disposition); above every other status.
    WITHDRAWN = "withdrawn"


class HealthCode(StrEnum):
    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


class AlertKind(StrEnum):
    FEVER_AT_DEPARTURE = "fever_at_departure"
    CODE_NOT_GREEN_AT_DEPARTURE = "code_not_green_at_departure"
    BOARDED_WITHOUT_CLEARANCE = "boarded_without_clearance"
    TRIP_MISMATCH = "trip_mismatch"
    FEVER_AT_ARRIVAL = "fever_at_arrival"
    CODE_NOT_GREEN_AT_ARRIVAL = "code_not_green_at_arrival"
    ARRIVED_WITHOUT_BOARDING = "arrived_without_boarding"
    CHECKIN_WITHOUT_ARRIVAL_CHECK = "checkin_without_arrival_check"
    WRONG_ENTERPRISE = "wrong_enterprise"
    OVERDUE_ARRIVAL = "overdue_arrival"
    OVERDUE_CHECKIN = "overdue_checkin"
    CODE_CHANGED_IN_TRANSIT = "code_changed_in_transit"


# Alerts that hold a worker (a health problem) rather than break the loop.
HEALTH_ALERTS = frozenset(
    {
        AlertKind.FEVER_AT_DEPARTURE,
        AlertKind.CODE_NOT_GREEN_AT_DEPARTURE,
        AlertKind.FEVER_AT_ARRIVAL,
        AlertKind.CODE_NOT_GREEN_AT_ARRIVAL,
        AlertKind.CODE_CHANGED_IN_TRANSIT,
    }
)


class Travel(StrEnum):
    """How a worker travels: on an organised trip, or on their own (no boarding)."""

    ORGANISED = "organised"
    SELF = "self"


class HealthCodeSource(StrEnum):
    """Where a check's colour came from."""

    SCANNED = "scanned"
    PLATFORM = "platform"
    MISSING = "missing"


class DispositionKind(StrEnum):
    """What happened after a failed check (or instead of the journey)."""

    ISOLATION = "isolation"
    MEDICAL_OBSERVATION = "medical_observation"
    RELEASED = "released"
    CODE_APPEAL_UPHELD = "code_appeal_upheld"
    WITHDRAWN = "withdrawn"


# The alerts an upheld appeal against a wrongly assigned colour closes.
COLOUR_ALERTS = frozenset(
    {
        AlertKind.CODE_NOT_GREEN_AT_DEPARTURE,
        AlertKind.CODE_NOT_GREEN_AT_ARRIVAL,
        AlertKind.CODE_CHANGED_IN_TRANSIT,
    }
)
