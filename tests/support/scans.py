"""Contract-shaped scan bodies for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.servers import unique

T0 = datetime(2020, 3, 1, 22, 0, tzinfo=UTC)

#: The test session's "now", to the second. Recent journeys start four hours before it,
#: so a trip due a day later raises no overdue alert to muddy what a test counts.
NOW = datetime.now(UTC).replace(microsecond=0)
RECENT_START = NOW - timedelta(hours=4)


def scan_body(
    kind: str, id_number: str, *, hours: float, scan_id: str | None = None, **fields: Any
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "departure_check": {"temperature_c": 36.5, "health_code": "green"},
        "boarding": {"trip_id": "B-0001"},
        "arrival_check": {"temperature_c": 36.6, "health_code": "green"},
        "checkin": {"enterprise_id": "E0001"},
    }[kind]
    return {
        "scan_id": scan_id or unique(kind),
        "kind": kind,
        "id_number": id_number,
        "occurred_at": (T0 + timedelta(hours=hours)).isoformat(),
        "station": f"{kind} station",
        **defaults,
        **fields,
    }


def four_scans(id_number: str, **overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole journey: departure check, boarding, arrival recheck, check-in."""
    kinds = ("departure_check", "boarding", "arrival_check", "checkin")
    return [
        scan_body(kind, id_number, hours=hours, **overrides.get(kind, {}))
        for kind, hours in zip(kinds, (0, 1, 14, 15), strict=True)
    ]


def recent_scan(hours: float, kind: str, id_number: str, **fields: Any) -> dict[str, Any]:
    """A scan ``hours`` after :data:`RECENT_START` (``scan_body``'s defaults otherwise)."""
    occurred_at = (RECENT_START + timedelta(hours=hours)).isoformat()
    return scan_body(kind, id_number, hours=0, **fields) | {"occurred_at": occurred_at}
