"""A worker's loop driven through the HTTP API of the running system."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest

from tests.support.api import wait_for_view
from tests.support.servers import random_id_number, unique

pytestmark = pytest.mark.e2e


def journey(id_number: str, *, departure_temperature: float = 36.5) -> list[dict[str, Any]]:
    run = unique("scan")
    base = {"id_number": id_number}
    return [
        {
            **base,
            "scan_id": f"{run}-1",
            "kind": "departure_check",
            "station": "毕节招工组",
            "occurred_at": "2020-03-01T06:00:00+08:00",
            "temperature_c": departure_temperature,
            "health_code": "green",
        },
        {
            **base,
            "scan_id": f"{run}-2",
            "kind": "boarding",
            "station": "B-0001 车门",
            "occurred_at": "2020-03-01T06:30:00+08:00",
            "trip_id": "B-0001",
        },
        {
            **base,
            "scan_id": f"{run}-3",
            "kind": "arrival_check",
            "station": "鹿城健康服务站",
            "occurred_at": "2020-03-01T20:00:00+08:00",
            "temperature_c": 36.4,
            "health_code": "green",
        },
        {
            **base,
            "scan_id": f"{run}-4",
            "kind": "checkin",
            "station": "E0001 门岗",
            "occurred_at": "2020-03-01T21:00:00+08:00",
            "enterprise_id": "E0001",
        },
    ]


async def test_four_scans_in_any_order_with_duplicates_close_the_loop(
    admin: httpx.AsyncClient,
) -> None:
    id_number = random_id_number()
    scans = journey(id_number)
    delivered = scans + random.sample(scans, 2)
    random.shuffle(delivered)

    response = await admin.post("/v1/scans", json={"scans": delivered})

    assert response.status_code == 202
    assert [r["status"] for r in response.json()["results"]] == ["accepted"] * len(delivered)
    view = await wait_for_view(
        admin, id_number, lambda v: v.get("stage") == "checked_in", what="the loop to close"
    )
    assert view["status"] == "closed"
    assert view["id_masked"] == id_number[:6] + "********" + id_number[-4:]
    assert id_number not in str(view)
    assert set(view["checkpoints"]) == {"departure_check", "boarding", "arrival_check", "checkin"}


async def test_a_fever_at_departure_holds_the_worker(admin: httpx.AsyncClient) -> None:
    id_number = random_id_number()
    departure = journey(id_number, departure_temperature=38.5)[0]

    response = await admin.post("/v1/scans", json=departure)

    assert response.status_code == 202
    view = await wait_for_view(
        admin, id_number, lambda v: v.get("status") == "held", what="the worker to be held"
    )
    assert view["stage"] == "registered"
    assert [(a["kind"], a["open"]) for a in view["alerts"]] == [("fever_at_departure", True)]
