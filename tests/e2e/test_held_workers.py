"""GET /v1/held: the supervisor page's list of held workers, with their open health alerts,
their dispositions and their days held (calendar days in RETURNLOOP_TIMEZONE), read as a
supervisor, a district's supervisor and a gate may."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.support.api import (
    bearer,
    issue_token,
    post_accepted_scans,
    post_manifest,
)
from tests.support.journeys import person_name, wait_for_view
from tests.support.processes import RunningSystem
from tests.support.scans import scan_body
from tests.support.servers import random_id_number, unique

pytestmark = pytest.mark.e2e

SHANGHAI = ZoneInfo("Asia/Shanghai")  # RETURNLOOP_TIMEZONE's default
HELD_FIELDS = {
    "worker_ref",
    "id_masked",
    "name",
    "enterprise_id",
    "trip_id",
    "travel",
    "stage",
    "open_alerts",
    "dispositions",
    "held_since",
    "days_held",
}


@dataclass
class Person:
    id_number: str
    name: str
    enterprise_id: str
    worker_ref: str = ""


@dataclass(frozen=True)
class Ward:
    """Two enterprises in districts of their own and who of them is held, and who not."""

    here: str  # enterprise_id
    there: str
    district_here: str
    district_there: str
    trip_id: str
    started: datetime  # the first fever, three days ago
    people: dict[str, Person]
    recorded: list[dict[str, Any]]  # the isolated worker's dispositions, as answered


def scan(kind: str, id_number: str, occurred_at: datetime, **fields: Any) -> dict[str, Any]:
    return scan_body(kind, id_number, hours=0, **fields) | {"occurred_at": occurred_at.isoformat()}


@pytest.fixture(scope="module")
async def ward(system: RunningSystem) -> Ward:
    here, there, trip_id = unique("E"), unique("E"), unique("T")
    district_here, district_there = unique("洞头区"), unique("泰顺县")
    now = datetime.now(UTC).replace(microsecond=0)
    started = now - timedelta(days=3)
    people = {
        what: Person(random_id_number(), person_name(), there if what == "elsewhere" else here)
        for what in ("isolated", "red_at_arrival", "released", "withdrawn", "closed", "elsewhere")
    }
    async with httpx.AsyncClient(
        base_url=system.url, headers=bearer(system.admin_token), timeout=30
    ) as admin:
        await post_manifest(
            admin,
            {
                "enterprises": [
                    {"enterprise_id": here, "name": "洞头水产厂", "shortage": 4,
                     "district": district_here},
                    {"enterprise_id": there, "name": "泰顺茶厂", "shortage": 2,
                     "district": district_there},
                ],
                "trips": [{"trip_id": trip_id, "mode": "bus", "origin": "云南昭通",
                           "destination": "温州洞头", "departs_at": (now - timedelta(days=4)).isoformat(),
                           "eta": (now + timedelta(days=1)).isoformat()}],
                "workers": [
                    {"id_number": p.id_number, "name": p.name, "enterprise_id": p.enterprise_id,
                     "trip_id": trip_id}
                    for p in people.values()
                ],
            },
        )  # fmt: skip
        fever = {"temperature_c": 38.7}
        recent = now - timedelta(hours=2)
        await post_accepted_scans(
            admin,
            scan("departure_check", people["isolated"].id_number, started, **fever),
            scan("departure_check", people["red_at_arrival"].id_number, recent - timedelta(hours=3)),
            scan("boarding", people["red_at_arrival"].id_number, recent - timedelta(hours=2),
                 trip_id=trip_id),
            scan("arrival_check", people["red_at_arrival"].id_number, recent, health_code="red"),
            scan("departure_check", people["released"].id_number, started, **fever),
            scan("departure_check", people["withdrawn"].id_number, started, **fever),
            scan("departure_check", people["elsewhere"].id_number, recent, **fever),
            scan("departure_check", people["closed"].id_number, recent - timedelta(hours=3)),
            scan("boarding", people["closed"].id_number, recent - timedelta(hours=2),
                 trip_id=trip_id),
            scan("arrival_check", people["closed"].id_number, recent - timedelta(hours=1)),
            scan("checkin", people["closed"].id_number, recent, enterprise_id=here),
        )  # fmt: skip
        departed = {"departure_check"}
        journey = {"departure_check", "boarding", "arrival_check"}
        # Every scan applied (kinds travel different topics), then the status as planted.
        for what, kinds, status in (
            ("isolated", departed, "held"),
            ("red_at_arrival", journey, "held"),
            ("released", departed, "held"),
            ("withdrawn", departed, "held"),
            ("elsewhere", departed, "held"),
            ("closed", journey | {"checkin"}, "closed"),
        ):
            view = await wait_for_view(
                admin, people[what].id_number,
                lambda v, k=kinds, s=status: set(v.get("checkpoints", ())) == k
                and v["status"] == s,
                what=what,
            )  # fmt: skip
            people[what].worker_ref = view["worker_ref"]

        async def dispose(what: str, kind: str, note: str, after: timedelta) -> dict[str, Any]:
            response = await admin.post(
                f"/v1/workers/{people[what].worker_ref}/dispositions",
                json={"kind": kind, "note": note, "at": (started + after).isoformat()},
            )
            assert response.status_code == 201, response.text
            body: dict[str, Any] = response.json()
            return body

        recorded = [
            await dispose("isolated", "isolation", "集中隔离点 3 号楼", timedelta(hours=1)),
            await dispose("isolated", "medical_observation", "每日两次测温", timedelta(days=1)),
        ]
        await dispose("released", "released", "复测正常", timedelta(hours=6))
        await dispose("withdrawn", "withdrawn", "不再返岗", timedelta(hours=6))
        for what, status in (("released", "open"), ("withdrawn", "withdrawn")):
            await wait_for_view(
                admin, people[what].id_number, lambda v, s=status: v.get("status") == s, what=what
            )
        await wait_for_view(
            admin,
            people["isolated"].id_number,
            lambda v: len(v.get("dispositions", [])) == 2,
            what="two dispositions",
        )
    return Ward(here, there, district_here, district_there, trip_id, started, people, recorded)


async def held(client: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await client.get("/v1/held", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["count"] == len(body["workers"])
    return body


def refs(body: dict[str, Any]) -> list[str]:
    return [worker["worker_ref"] for worker in body["workers"]]


def days_in_shanghai(since: datetime, now: datetime) -> int:
    return (now.astimezone(SHANGHAI).date() - since.astimezone(SHANGHAI).date()).days


async def test_held_workers_are_listed_longest_held_first_with_what_holds_them(
    admin: httpx.AsyncClient, ward: Ward
) -> None:
    body = await held(admin, enterprise_id=ward.here)

    isolated, red = ward.people["isolated"], ward.people["red_at_arrival"]
    assert refs(body) == [isolated.worker_ref, red.worker_ref]
    first, second = body["workers"]
    assert set(first) == HELD_FIELDS
    assert (first["name"], first["id_masked"], first["enterprise_id"]) == (
        isolated.name,
        isolated.id_number[:6] + "********" + isolated.id_number[-4:],
        ward.here,
    )
    assert (first["trip_id"], first["travel"], first["stage"]) == (
        ward.trip_id,
        "organised",
        "registered",
    )
    assert [a["kind"] for a in first["open_alerts"]] == ["fever_at_departure"]
    assert datetime.fromisoformat(first["open_alerts"][0]["raised_at"]) == ward.started
    assert datetime.fromisoformat(first["held_since"]) == ward.started
    assert [a["kind"] for a in second["open_alerts"]] == ["code_not_green_at_arrival"]
    assert second["stage"] == "boarded"
    for worker in body["workers"]:
        assert ward.people["isolated"].id_number not in str(worker)


async def test_each_held_worker_shows_their_dispositions_kind_time_author_and_note(
    admin: httpx.AsyncClient, ward: Ward
) -> None:
    body = await held(admin, enterprise_id=ward.here)

    first, second = body["workers"]
    assert [
        (d["disposition_id"], d["kind"], d["by"], d["note"]) for d in first["dispositions"]
    ] == [(d["disposition_id"], d["kind"], d["by"], d["note"]) for d in ward.recorded]
    assert [datetime.fromisoformat(d["at"]) for d in first["dispositions"]] == [
        datetime.fromisoformat(d["at"]) for d in ward.recorded
    ]
    assert second["dispositions"] == []


async def test_days_held_counts_calendar_days_in_the_configured_time_zone(
    system: RunningSystem, admin: httpx.AsyncClient, ward: Ward
) -> None:
    body = await held(admin, enterprise_id=ward.here)

    as_of = datetime.fromisoformat(body["as_of"])
    first, second = body["workers"]
    assert first["days_held"] == days_in_shanghai(ward.started, as_of) == 3
    since = datetime.fromisoformat(second["held_since"])
    assert second["days_held"] == days_in_shanghai(since, as_of) in (0, 1)
    schema = (await admin.get("/openapi.json")).json()["components"]["schemas"]
    description = schema["HeldWorkerOut"]["properties"]["days_held"]["description"]
    assert "RETURNLOOP_TIMEZONE" in description and "calendar days" in description


async def test_released_withdrawn_and_closed_workers_are_not_held(
    admin: httpx.AsyncClient, ward: Ward
) -> None:
    listed = set(refs(await held(admin)))

    for what in ("released", "withdrawn", "closed"):
        assert ward.people[what].worker_ref not in listed, what
    for what in ("isolated", "red_at_arrival", "elsewhere"):
        assert ward.people[what].worker_ref in listed, what


async def test_a_district_supervisor_sees_its_districts_held_workers_only(
    system: RunningSystem, admin: httpx.AsyncClient, ward: Ward
) -> None:
    token = await issue_token(admin, "supervisor", district=ward.district_here)
    async with httpx.AsyncClient(
        base_url=system.url, headers=bearer(token), timeout=30
    ) as supervisor:
        everything = await held(supervisor)
        there = await held(supervisor, enterprise_id=ward.there)

    assert refs(everything) == [
        ward.people["isolated"].worker_ref,
        ward.people["red_at_arrival"].worker_ref,
    ]
    assert refs(there) == []


async def test_a_gate_sees_its_own_enterprises_held_workers_only(
    system: RunningSystem, admin: httpx.AsyncClient, ward: Ward
) -> None:
    token = await issue_token(admin, "gate", enterprise_id=ward.there)
    async with httpx.AsyncClient(base_url=system.url, headers=bearer(token), timeout=30) as gate:
        own = await held(gate)
        other = await gate.get("/v1/held", params={"enterprise_id": ward.here})

    assert refs(own) == [ward.people["elsewhere"].worker_ref]
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "forbidden"
