"""After a failed check: dispositions through the running system (PRODUCT.md, contract v1.1).

Each kind end to end (isolation and medical observation keep the hold, a release lifts it,
an upheld appeal closes colour alerts only, withdrawn stands above every status until a
later release), in event time; withdrawn counted in rosters, districts and the gauges; every
disposition in the audit log with who, what and when.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support.api import post_accepted_scans, post_manifest, worker_ref_of
from tests.support.journeys import PATIENCE, person_name, role_client, wait_for_view
from tests.support.processes import RunningSystem
from tests.support.scans import RECENT_START, recent_scan
from tests.support.servers import random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


JOURNEY = ("departure_check", "boarding", "arrival_check")


@dataclass(frozen=True)
class Worker:
    id_number: str
    enterprise_id: str
    trip_id: str


@dataclass(frozen=True)
class Place:
    """An enterprise in a district of its own, and a bus to it due tomorrow."""

    district: str
    enterprise_id: str
    trip_id: str


@pytest.fixture(scope="module")
async def place(system: RunningSystem) -> Place:
    district, enterprise_id, trip_id = unique("永嘉县"), unique("E"), unique("T")
    now = datetime.now(UTC)
    async with httpx.AsyncClient(
        base_url=system.url, headers={"Authorization": f"Bearer {system.admin_token}"}, timeout=30
    ) as admin:
        await post_manifest(
            admin,
            {
                "enterprises": [{"enterprise_id": enterprise_id, "name": "永嘉泵阀厂",
                                 "shortage": 9, "district": district}],
                "trips": [{"trip_id": trip_id, "mode": "bus", "origin": "贵州毕节",
                           "destination": "温州永嘉", "departs_at": (now - timedelta(hours=5)).isoformat(),
                           "eta": (now + timedelta(days=1)).isoformat()}],
            },
        )  # fmt: skip
    return Place(district, enterprise_id, trip_id)


async def enrol(admin: httpx.AsyncClient, place: Place) -> Worker:
    worker = Worker(random_id_number(), place.enterprise_id, place.trip_id)
    await post_manifest(
        admin,
        {
            "workers": [
                {
                    "id_number": worker.id_number,
                    "name": person_name(),
                    "enterprise_id": worker.enterprise_id,
                    "trip_id": worker.trip_id,
                }
            ]
        },
    )
    return worker


def at(hours: float) -> str:
    """An event time ``hours`` after the session's recent journeys start."""
    return (RECENT_START + timedelta(hours=hours)).isoformat()


async def dispose(
    client: httpx.AsyncClient, worker_ref: str, kind: str, note: str, *, hours: float
) -> dict[str, Any]:
    """POST a disposition at ``hours`` after RECENT_START; it must be recorded (201)."""
    response = await client.post(
        f"/v1/workers/{worker_ref}/dispositions", json={"kind": kind, "note": note, "at": at(hours)}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def with_dispositions(count: int) -> Any:
    return lambda view: view["status_code"] == 200 and len(view["dispositions"]) == count


def journey_applied(*kinds: str) -> Any:
    """For ``wait_for_view``: a checkpoint of every kind. Kinds travel different topics, so
    one kind applied says nothing of the others."""
    return lambda view: view["status_code"] == 200 and set(view["checkpoints"]) == set(kinds)


def open_kinds(view: dict[str, Any]) -> set[str]:
    return {alert["kind"] for alert in view["alerts"] if alert["open"]}


def alerts_of(view: dict[str, Any]) -> dict[str, bool]:
    """Each alert kind of the view, and whether it is open."""
    return {alert["kind"]: alert["open"] for alert in view["alerts"]}


def same_moment(left: str, right: str) -> bool:
    return datetime.fromisoformat(left) == datetime.fromisoformat(right)


async def held_for_fever_at_departure(admin: httpx.AsyncClient, place: Place) -> tuple[Worker, str]:
    worker = await enrol(admin, place)
    await post_accepted_scans(admin, recent_scan(0, "departure_check", worker.id_number,
                                                 temperature_c=38.6))  # fmt: skip
    await wait_for_view(
        admin, worker.id_number, lambda v: v.get("status") == "held", what="held for fever"
    )
    return worker, await worker_ref_of(admin, worker.id_number)


# --- isolation and medical observation: recorded, the hold stays -----------------------


async def test_isolation_and_medical_observation_are_recorded_and_the_hold_stays(
    system: RunningSystem, admin: httpx.AsyncClient, place: Place
) -> None:
    worker, worker_ref = await held_for_fever_at_departure(admin, place)

    async with role_client(system, admin, "health_station") as station:
        isolation = await dispose(station, worker_ref, "isolation", "集中隔离 14 天", hours=0.5)
    async with role_client(system, admin, "supervisor") as supervisor:
        observation = await dispose(
            supervisor, worker_ref, "medical_observation", "居家医学观察", hours=1
        )

    view = await wait_for_view(admin, worker.id_number, with_dispositions(2), what="two recorded")
    assert (view["stage"], view["status"]) == ("registered", "held")
    assert alerts_of(view) == {"fever_at_departure": True}
    assert isolation["kind"] == "isolation" and isolation["note"] == "集中隔离 14 天"
    assert isolation["by"].startswith("health_station:")
    assert observation["by"].startswith("supervisor:")
    assert [d["disposition_id"] for d in view["dispositions"]] == [
        isolation["disposition_id"],
        observation["disposition_id"],
    ]
    for shown, answered in zip(view["dispositions"], (isolation, observation), strict=True):
        assert (shown["kind"], shown["by"], shown["note"]) == (
            answered["kind"],
            answered["by"],
            answered["note"],
        )
        assert same_moment(shown["at"], answered["at"])


# --- released: the health holds lift -----------------------------------------------------


async def test_a_release_after_a_retest_closes_the_fever_alert_and_the_loop_goes_on(
    system: RunningSystem, admin: httpx.AsyncClient, place: Place
) -> None:
    worker, worker_ref = await held_for_fever_at_departure(admin, place)

    async with role_client(system, admin, "health_station") as station:
        await dispose(station, worker_ref, "released", "复测 36.5 ℃，解除", hours=0.5)

    view = await wait_for_view(admin, worker.id_number, with_dispositions(1), what="released")
    assert (view["stage"], view["status"]) == ("registered", "open")
    (fever,) = view["alerts"]
    assert fever["kind"] == "fever_at_departure" and fever["open"] is False
    assert same_moment(fever["closed_at"], at(0.5))

    # Released, the worker departs, travels and closes the loop as anyone would.
    await post_accepted_scans(
        admin,
        recent_scan(1, "departure_check", worker.id_number),
        recent_scan(1.5, "boarding", worker.id_number, trip_id=place.trip_id),
        recent_scan(2, "arrival_check", worker.id_number),
        recent_scan(3, "checkin", worker.id_number, enterprise_id=place.enterprise_id),
    )
    closed = await wait_for_view(
        admin, worker.id_number, lambda v: v.get("status") == "closed", what="the loop closed"
    )
    assert closed["stage"] == "checked_in"


# --- code_appeal_upheld: the colour was wrong ------------------------------------------


async def test_an_upheld_appeal_closes_a_red_code_at_arrival(
    system: RunningSystem, admin: httpx.AsyncClient, place: Place
) -> None:
    worker = await enrol(admin, place)
    await post_accepted_scans(
        admin,
        recent_scan(0, "departure_check", worker.id_number),
        recent_scan(1, "boarding", worker.id_number, trip_id=place.trip_id),
        recent_scan(2, "arrival_check", worker.id_number, health_code="red"),
    )
    held = await wait_for_view(
        admin, worker.id_number, journey_applied(*JOURNEY), what="the journey applied"
    )
    # (Scans applied out of event order may leave closed alerts behind as history.)
    assert (held["status"], open_kinds(held)) == ("held", {"code_not_green_at_arrival"})

    async with role_client(system, admin, "supervisor") as supervisor:
        await dispose(supervisor, held["worker_ref"], "code_appeal_upheld", "赋码错误，已申诉",
                      hours=2.5)  # fmt: skip

    view = await wait_for_view(admin, worker.id_number, with_dispositions(1), what="appeal upheld")
    assert alerts_of(view)["code_not_green_at_arrival"] is False
    assert (view["status"], open_kinds(view)) == ("open", set())


async def test_an_upheld_appeal_leaves_a_fever_hold_in_place(
    system: RunningSystem, admin: httpx.AsyncClient, place: Place
) -> None:
    worker = await enrol(admin, place)
    await post_accepted_scans(
        admin,
        recent_scan(0, "departure_check", worker.id_number),
        recent_scan(1, "boarding", worker.id_number, trip_id=place.trip_id),
        recent_scan(2, "arrival_check", worker.id_number, health_code="red", temperature_c=38.3),
    )
    held = await wait_for_view(
        admin, worker.id_number, journey_applied(*JOURNEY), what="the journey applied"
    )
    assert open_kinds(held) == {"code_not_green_at_arrival", "fever_at_arrival"}

    await dispose(admin, held["worker_ref"], "code_appeal_upheld", "颜色错误", hours=2.5)

    view = await wait_for_view(admin, worker.id_number, with_dispositions(1), what="appeal upheld")
    assert alerts_of(view)["code_not_green_at_arrival"] is False
    assert (view["status"], open_kinds(view)) == ("held", {"fever_at_arrival"})


# --- withdrawn: above every status, until a later release -----------------------------


def withdrawn_samples(metrics: str) -> list[float]:
    """The values of ``returnloop_workers`` samples labelled status="withdrawn"."""
    return [
        float(value)
        for labels, value in re.findall(r"^returnloop_workers\{([^}]*)\} (\S+)$", metrics, re.M)
        if 'status="withdrawn"' in labels
    ]


async def test_a_withdrawn_worker_is_withdrawn_with_alerts_closed_and_counted_everywhere(
    system: RunningSystem, admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    # A district of its own, so that its counts are this test's alone.
    district, enterprise_id, trip_id = unique("文成县"), unique("E"), unique("T")
    now = datetime.now(UTC)
    place = Place(district, enterprise_id, trip_id)
    await post_manifest(
        admin,
        {
            "enterprises": [{"enterprise_id": enterprise_id, "name": "文成竹木厂",
                             "shortage": 2, "district": district}],
            "trips": [{"trip_id": trip_id, "mode": "bus", "origin": "江西赣州",
                       "destination": "温州文成", "departs_at": (now - timedelta(hours=5)).isoformat(),
                       "eta": (now + timedelta(days=1)).isoformat()}],
        },
    )  # fmt: skip
    worker, worker_ref = await held_for_fever_at_departure(admin, place)

    await dispose(admin, worker_ref, "withdrawn", "本批次不返岗", hours=2)

    view = await wait_for_view(admin, worker.id_number, with_dispositions(1), what="withdrawn")
    assert view["status"] == "withdrawn"
    assert alerts_of(view) == {"fever_at_departure": False}
    roster = (await admin.get(f"/v1/enterprises/{enterprise_id}/roster")).json()
    assert (roster["withdrawn"], roster["held"], roster["expected"]) == (1, 0, 1)
    assert roster["on_post_ratio"] == 0.0
    districts = (await admin.get("/v1/districts")).json()["districts"]
    (mine,) = [row for row in districts if row["district"] == district]
    assert (mine["withdrawn"], mine["held"], mine["broken"]) == (1, 0, 0)
    listed = (await admin.get("/v1/enterprises")).json()["enterprises"]
    assert [row["withdrawn"] for row in listed if row["enterprise_id"] == enterprise_id] == [1]
    # The gauges are refreshed from PostgreSQL every few seconds, the enterprises' and the
    # districts' by separate queries: one refresh may straddle the withdrawal.
    district_gauge = f'returnloop_district_workers{{district="{district}",state="withdrawn"}} 1.0'
    enterprise_gauge = (
        f'returnloop_enterprise_workers{{enterprise_id="{enterprise_id}",state="withdrawn"}} 1.0'
    )
    metrics = await eventually(
        lambda: anonymous.get("/metrics"),
        lambda response: {district_gauge, enterprise_gauge} <= set(response.text.splitlines()),
        what="the gauges refreshed",
        within=PATIENCE,
    )
    assert any(value >= 1 for value in withdrawn_samples(metrics.text))

    # A release recorded as having happened before the withdrawal changes nothing: event time.
    await dispose(admin, worker_ref, "released", "更早的放行记录", hours=1)
    earlier = await wait_for_view(admin, worker.id_number, with_dispositions(2), what="recorded")
    assert earlier["status"] == "withdrawn"

    # A later release undoes it.
    await dispose(admin, worker_ref, "released", "改变主意，返岗", hours=3)
    back = await wait_for_view(admin, worker.id_number, with_dispositions(3), what="released")
    assert back["status"] == "open"
    assert alerts_of(back) == {"fever_at_departure": False}
    roster = (await admin.get(f"/v1/enterprises/{enterprise_id}/roster")).json()
    assert roster["withdrawn"] == 0


# --- every disposition audited ----------------------------------------------------------


async def test_every_disposition_is_in_the_audit_log_with_actor_note_and_time(
    system: RunningSystem, admin: httpx.AsyncClient, place: Place
) -> None:
    worker, worker_ref = await held_for_fever_at_departure(admin, place)
    recorded = []
    async with (
        role_client(system, admin, "health_station") as station,
        role_client(system, admin, "supervisor") as supervisor,
    ):
        recorded.append(await dispose(station, worker_ref, "isolation", "隔离点 A", hours=0.2))
        recorded.append(
            await dispose(station, worker_ref, "medical_observation", "观察 7 天", hours=0.4)
        )
        recorded.append(await dispose(supervisor, worker_ref, "code_appeal_upheld", "申诉",
                                      hours=0.6))  # fmt: skip
        recorded.append(await dispose(supervisor, worker_ref, "withdrawn", "留乡", hours=0.8))
        recorded.append(await dispose(admin, worker_ref, "released", "复工", hours=1.0))

    response = await admin.get("/v1/audit", params={"worker_ref": worker_ref, "limit": 500})

    assert response.status_code == 200, response.text
    entries = [e for e in response.json()["entries"] if e["action"] == "disposition"]
    assert [(e["actor"], e["role"]) for e in entries] == [
        (d["by"], d["by"].split(":")[0]) for d in recorded
    ]
    for entry, disposition in zip(entries, recorded, strict=True):
        assert entry["worker_ref"] == worker_ref
        assert entry["at"]
        kind, moment_and_note = entry["detail"].split(" at ", 1)
        moment, note = moment_and_note.split(": ", 1)
        assert (kind, note) == (disposition["kind"], disposition["note"])
        assert same_moment(moment, disposition["at"])
    assert worker.id_number not in response.text
    await wait_for_view(admin, worker.id_number, with_dispositions(5), what="all five applied")


# --- refused ----------------------------------------------------------------------------


async def test_a_disposition_for_no_known_worker_or_out_of_shape_is_refused(
    admin: httpx.AsyncClient, place: Place
) -> None:
    _, worker_ref = await held_for_fever_at_departure(admin, place)
    path = f"/v1/workers/{worker_ref}/dispositions"
    future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()

    unknown = await admin.post(
        "/v1/workers/w_" + "0" * 24 + "/dispositions",
        json={"kind": "released", "note": "nobody"},
    )
    bad_kind = await admin.post(path, json={"kind": "pardoned", "note": "x"})
    no_note = await admin.post(path, json={"kind": "released", "note": ""})
    ahead = await admin.post(path, json={"kind": "released", "note": "x", "at": future})

    assert unknown.status_code == 404, unknown.text
    assert [r.status_code for r in (bad_kind, no_note, ahead)] == [422, 422, 422]
    for response in (unknown, bad_kind, no_note, ahead):
        assert response.json()["error"]["code"]
    view = (await admin.get(f"/v1/workers/{worker_ref}")).json()
    assert view["dispositions"] == [] and view["status"] == "held"
