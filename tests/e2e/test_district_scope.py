"""A supervisor token scoped to one district reads only that district's enterprises, trips,
workers and alerts, in JSON and in the exports; a scope a role cannot use is refused."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support.api import bearer, issue_token, post_accepted_scans, post_manifest
from tests.support.scans import recent_scan
from tests.support.servers import random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Districts:
    """Two districts, an enterprise and a worker with an open alert in each, on one bus."""

    mine: str
    theirs: str
    my_enterprise: str
    their_enterprise: str
    trip_id: str
    my_worker: str  # id_number
    their_worker: str
    my_code: str
    their_code: str
    my_alert: int
    their_alert: int
    token: str


@pytest.fixture(scope="module")
async def districts(system: Any) -> Districts:
    mine, theirs = unique("鹿城区"), unique("瑞安市")
    my_enterprise, their_enterprise, trip_id = unique("E"), unique("E"), unique("T")
    my_worker, their_worker = random_id_number(), random_id_number()
    my_code, their_code = unique("hc").replace("-", "_"), unique("hc").replace("-", "_")
    now = datetime.now(UTC)
    async with httpx.AsyncClient(
        base_url=system.url, headers=bearer(system.admin_token), timeout=30
    ) as admin:
        await post_manifest(
            admin,
            {
                "enterprises": [
                    {"enterprise_id": my_enterprise, "name": "鹿城鞋厂", "district": mine},
                    {"enterprise_id": their_enterprise, "name": "瑞安泵厂", "district": theirs},
                ],
                "trips": [{"trip_id": trip_id, "mode": "bus", "origin": "贵州", "destination": "温州",
                           "departs_at": (now - timedelta(hours=5)).isoformat(),
                           "eta": (now + timedelta(days=1)).isoformat()}],
                "workers": [
                    {"id_number": my_worker, "name": "本区人", "enterprise_id": my_enterprise,
                     "trip_id": trip_id},
                    {"id_number": their_worker, "name": "外区人", "enterprise_id": their_enterprise,
                     "trip_id": trip_id},
                ],
            },
        )  # fmt: skip
        for id_number, code in ((my_worker, my_code), (their_worker, their_code)):
            card = "D" + unique("").replace("-", "")[:12].upper()
            linked = await admin.post(
                "/v1/links",
                json={"id_number": id_number, "health_code_id": code, "ssc_card_no": card},
            )
            assert linked.status_code == 201, linked.text
        await post_accepted_scans(
            admin,
            *(
                scan
                for id_number in (my_worker, their_worker)
                for scan in (
                    recent_scan(0, "departure_check", id_number),
                    recent_scan(1, "boarding", id_number, trip_id=trip_id),
                    recent_scan(2, "arrival_check", id_number, temperature_c=38.1),
                )
            ),
        )

        async def alert_of(enterprise_id: str) -> list[dict[str, Any]]:
            response = await admin.get("/v1/alerts", params={"enterprise_id": enterprise_id})
            alerts: list[dict[str, Any]] = response.json()["alerts"]
            return alerts

        mine_alerts = await eventually(
            lambda: alert_of(my_enterprise), bool, what="my alert", within=120
        )
        their_alerts = await eventually(
            lambda: alert_of(their_enterprise), bool, what="theirs", within=120
        )
        token = await issue_token(admin, "supervisor", district=mine)
    return Districts(
        mine, theirs, my_enterprise, their_enterprise, trip_id, my_worker, their_worker,
        my_code, their_code, mine_alerts[0]["alert_id"], their_alerts[0]["alert_id"], token,
    )  # fmt: skip


@pytest.fixture
async def scoped(system: Any, districts: Districts) -> Any:
    async with httpx.AsyncClient(
        base_url=system.url, headers=bearer(districts.token), timeout=30
    ) as client:
        yield client


async def test_the_token_says_its_district(admin: httpx.AsyncClient, districts: Districts) -> None:
    response = await admin.post("/v1/tokens", json={"role": "supervisor", "district": "鹿城区"})

    assert response.status_code == 201, response.text
    assert response.json()["district"] == "鹿城区"
    assert response.json()["role"] == "supervisor"


@pytest.mark.parametrize(
    "body",
    [
        {"role": "gate", "enterprise_id": "E1", "district": "鹿城区"},
        {"role": "recruiter", "district": "鹿城区"},
        {"role": "admin", "district": "鹿城区"},
        {"role": "supervisor", "enterprise_id": "E1"},
        {"role": "health_station", "enterprise_id": "E1"},
    ],
    ids=["district on a gate", "district on a recruiter", "district on an admin",
         "enterprise on a supervisor", "enterprise on a health station"],
)  # fmt: skip
async def test_a_scope_the_role_cannot_use_is_refused(
    admin: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await admin.post("/v1/tokens", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"


async def test_lists_hold_only_the_district(
    scoped: httpx.AsyncClient, districts: Districts
) -> None:
    enterprises = (await scoped.get("/v1/enterprises")).json()["enterprises"]
    listed_districts = (await scoped.get("/v1/districts")).json()["districts"]
    alerts = (await scoped.get("/v1/alerts", params={"status": "all", "limit": 500})).json()

    assert [e["enterprise_id"] for e in enterprises] == [districts.my_enterprise]
    assert [d["district"] for d in listed_districts] == [districts.mine]
    assert {a["enterprise_id"] for a in alerts["alerts"]} == {districts.my_enterprise}


async def test_a_shared_trip_counts_and_names_only_the_districts_workers(
    scoped: httpx.AsyncClient, admin: httpx.AsyncClient, districts: Districts
) -> None:
    trips = (await scoped.get("/v1/trips")).json()["trips"]
    trip = await scoped.get(f"/v1/trips/{districts.trip_id}")
    whole = (await admin.get(f"/v1/trips/{districts.trip_id}")).json()

    (summary,) = [t for t in trips if t["trip_id"] == districts.trip_id]
    assert (summary["manifest"], summary["boarded"], summary["arrived"]) == (1, 1, 1)
    assert (whole["manifest"], whole["boarded"]) == (2, 2)
    assert trip.status_code == 200
    assert [w["name"] for w in trip.json()["workers"]] == [] and trip.json()["manifest"] == 1
    assert "外区人" not in trip.text


@pytest.mark.parametrize("path", ["roster", "not_back", "daily"])
async def test_another_districts_enterprise_is_not_found(
    scoped: httpx.AsyncClient, districts: Districts, path: str
) -> None:
    theirs = await scoped.get(f"/v1/enterprises/{districts.their_enterprise}/{path}")
    mine = await scoped.get(f"/v1/enterprises/{districts.my_enterprise}/{path}")

    assert theirs.status_code == 404
    assert mine.status_code == 200, mine.text


async def test_another_districts_worker_is_not_found_by_any_way_of_naming_them(
    scoped: httpx.AsyncClient, admin: httpx.AsyncClient, districts: Districts
) -> None:
    their_ref = (
        await admin.post("/v1/workers/lookup", json={"id_number": districts.their_worker})
    ).json()["worker_ref"]

    assert (
        await scoped.post("/v1/workers/lookup", json={"id_number": districts.their_worker})
    ).status_code == 404
    assert (await scoped.get(f"/v1/workers/{their_ref}")).status_code == 404
    assert (
        await scoped.post("/v1/links/resolve", json={"code": districts.their_code})
    ).status_code == 404
    assert (
        await scoped.post("/v1/workers/lookup", json={"id_number": districts.my_worker})
    ).status_code == 200
    assert (
        await scoped.post("/v1/links/resolve", json={"code": districts.my_code})
    ).status_code == 200


async def test_only_the_districts_alerts_can_be_acknowledged(
    scoped: httpx.AsyncClient, districts: Districts
) -> None:
    theirs = await scoped.post(
        f"/v1/alerts/{districts.their_alert}/acknowledge", json={"note": "not mine"}
    )
    mine = await scoped.post(
        f"/v1/alerts/{districts.my_alert}/acknowledge", json={"note": "isolated, rechecking"}
    )

    assert theirs.status_code == 404
    assert mine.status_code == 200, mine.text


async def test_the_gate_decision_is_for_the_districts_enterprises_only(
    scoped: httpx.AsyncClient, districts: Districts
) -> None:
    elsewhere = await scoped.post(
        "/v1/gate/decision",
        json={"id_number": districts.their_worker, "enterprise_id": districts.their_enterprise},
    )
    stranger = await scoped.post(
        "/v1/gate/decision",
        json={"id_number": districts.their_worker, "enterprise_id": districts.my_enterprise},
    )

    assert elsewhere.status_code == 403
    assert stranger.status_code == 200
    assert stranger.json()["allow"] is False
    assert stranger.json()["loop"]["checkpoints"] == {}


@pytest.mark.parametrize("path", ["/v1/enterprises", "/v1/alerts?status=all", "/v1/trips"])
async def test_exports_hold_only_the_district(
    scoped: httpx.AsyncClient, districts: Districts, path: str
) -> None:
    response = await scoped.get(path, params={"format": "csv"})

    assert response.status_code == 200, response.text
    text = response.content.decode("utf-8-sig")
    assert districts.their_enterprise not in text and "外区人" not in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows
