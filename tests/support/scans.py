"""Contract-shaped scan bodies for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.servers import unique

T0 = datetime(2020, 3, 1, 22, 0, tzinfo=UTC)


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
