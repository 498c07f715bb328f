"""The supervisors' lists behind the supervisor page: every roster, every trip's counts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.support.api import bearer, issue_token, post_manifest, post_scans
from tests.support.scans import NOW
from tests.support.scans import recent_scan as at
from tests.support.servers import random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


async def test_every_roster_and_every_trip_match_their_single_views(
    admin: httpx.AsyncClient,
) -> None:
    # ``unlisted`` is named only by a worker's manifest line, not among the enterprises.
    enterprise_id, unlisted, trip_id = unique("E-LIST"), unique("E-UNLISTED"), unique("B-LIST")
    arrived, on_the_bus, fever, elsewhere = (random_id_number() for _ in range(4))
    manifest = {
        "enterprises": [{"enterprise_id": enterprise_id, "name": "瓯海服装厂", "shortage": 7}],
        "trips": [
            {
                "trip_id": trip_id,
                "mode": "train",
                "origin": "四川达州",
                "destination": "温州南站",
                "departs_at": NOW.isoformat(),
                "eta": (NOW + timedelta(days=1)).isoformat(),
            }
        ],
        "workers": [
            {
                "id_number": number,
                "name": "工人",
                "enterprise_id": enterprise_id,
                "trip_id": trip_id,
            }
            for number in (arrived, on_the_bus, fever)
        ]
        + [{"id_number": elsewhere, "name": "工人", "enterprise_id": unlisted, "trip_id": None}],
    }
    await post_manifest(admin, manifest)
    scans = [
        at(0, "departure_check", arrived),
        at(1, "boarding", arrived, trip_id=trip_id),
        at(2, "arrival_check", arrived),
        at(3, "checkin", arrived, enterprise_id=enterprise_id),
        at(0, "departure_check", on_the_bus),
        at(1, "boarding", on_the_bus, trip_id=trip_id),
        at(0, "departure_check", fever, temperature_c=38.0),
    ]
    await post_scans(admin, *scans)

    async def listed() -> dict[str, Any]:
        rows = (await admin.get("/v1/enterprises")).json()["enterprises"]
        return {row["enterprise_id"]: row for row in rows}

    rows = await eventually(
        listed,
        lambda rows: (
            rows.get(enterprise_id, {}).get("held") == 1 and rows[enterprise_id]["checked_in"] == 1
        ),
        what="the scans applied",
    )
    for listed_id in (enterprise_id, unlisted):
        single = (await admin.get(f"/v1/enterprises/{listed_id}/roster")).json()
        # The list adds what the overview shows beside the contract's roster.
        listed_only = ("name", "district", "open_positions")
        assert {k: v for k, v in rows[listed_id].items() if k not in listed_only} == single
    assert rows[enterprise_id]["name"] == "瓯海服装厂"
    assert rows[enterprise_id]["in_transit"] == 1
    assert rows[enterprise_id]["checked_in"] == 1
    assert rows[unlisted]["name"] is None and rows[unlisted]["expected"] == 1

    trips = (await admin.get("/v1/trips", params={"with_missing_only": "true"})).json()["trips"]
    summary = next(trip for trip in trips if trip["trip_id"] == trip_id)
    single = (await admin.get(f"/v1/trips/{trip_id}")).json()
    assert summary["missing_count"] == len(single["missing"]) == 1
    assert summary["manifest"] == single["manifest"] == 3
    assert summary["boarded"] == single["boarded"] == 2
    assert summary["arrived"] == single["arrived"] == 1
    assert summary["mode"] == "train" and summary["origin"] == "四川达州"
    assert all(trip["missing_count"] > 0 for trip in trips)

    response = await admin.post("/v1/scans", json=at(2, "arrival_check", on_the_bus))
    assert response.status_code == 202

    async def missing_trips() -> list[str]:
        response = await admin.get("/v1/trips", params={"with_missing_only": "true"})
        return [trip["trip_id"] for trip in response.json()["trips"]]

    await eventually(missing_trips, lambda ids: trip_id not in ids, what="the trip complete")
    every_trip = (await admin.get("/v1/trips")).json()["trips"]
    assert any(trip["trip_id"] == trip_id for trip in every_trip)


@pytest.mark.parametrize("role", ["gate", "recruiter", "health_station"])
async def test_only_supervisors_and_admins_read_the_lists(
    admin: httpx.AsyncClient, role: str, system: Any
) -> None:
    fields = {"enterprise_id": unique("E")} if role == "gate" else {}
    if fields:  # a gate token is issued for an enterprise on a manifest only
        enterprise = {**fields, "name": "列表厂", "shortage": 0}
        await post_manifest(admin, {"enterprises": [enterprise]})
    token = await issue_token(admin, role, **fields)
    async with httpx.AsyncClient(base_url=system.url, headers=bearer(token), timeout=30) as client:
        for path in ("/v1/enterprises", "/v1/trips"):
            response = await client.get(path)
            assert response.status_code == 403, response.text
            assert response.json()["error"]["code"] == "forbidden"
    supervisor = await issue_token(admin, "supervisor")
    async with httpx.AsyncClient(
        base_url=system.url, headers=bearer(supervisor), timeout=30
    ) as client:
        assert (await client.get("/v1/enterprises")).status_code == 200
        assert (await client.get("/v1/trips")).status_code == 200


async def test_the_pages_are_served_with_a_closed_policy(admin: httpx.AsyncClient) -> None:
    for path in ("/ui/supervisor", "/ui/scanner"):
        response = await admin.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in response.headers["content-security-policy"]
    script = await admin.get("/ui/static/scanner.js")
    assert script.headers["content-type"].startswith("text/javascript")
    for path in ("/ui/static/..%2Fapp.py", "/ui/static/nothing.js", "/ui/elsewhere"):
        response = await admin.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
