"""Travelling on their own (contract v1.1): a manifest worker with ``"travel": "self"`` has
no trip and no boarding; the loop closes with departure check, arrival recheck and check-in,
and is overdue once ``expected_arrival`` + the grace has passed with no arrival recheck."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.support.api import lookup, post_accepted_scans
from tests.support.journeys import (
    Enrolled,
    ago,
    enrol,
    enterprise,
    iso,
    recorded,
    wait_for_scans,
    wait_for_view,
)
from tests.support.servers import random_id_number, unique

pytestmark = pytest.mark.e2e


def _scan(kind: str, worker: Enrolled, at: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "scan_id": unique("self"),
        "kind": kind,
        "id_number": worker.id_number,
        "occurred_at": iso(at),
        "station": f"{kind} 自行返岗",
        **fields,
    }


def departure(worker: Enrolled, hours_ago: float, **fields: Any) -> dict[str, Any]:
    return _scan(
        "departure_check",
        worker,
        ago(hours_ago),
        **{"temperature_c": 36.5, "health_code": "green", **fields},
    )


def arrival(worker: Enrolled, hours_ago: float, **fields: Any) -> dict[str, Any]:
    return _scan(
        "arrival_check",
        worker,
        ago(hours_ago),
        **{"temperature_c": 36.7, "health_code": "green", **fields},
    )


def checkin(worker: Enrolled, hours_ago: float) -> dict[str, Any]:
    return _scan("checkin", worker, ago(hours_ago), enterprise_id=worker.enterprise_id)


def open_alerts(view: dict[str, Any]) -> list[str]:
    return sorted(alert["kind"] for alert in view["alerts"] if alert["open"])


async def test_a_self_travelling_worker_closes_the_loop_without_boarding(
    admin: httpx.AsyncClient,
) -> None:
    (worker,) = await enrol(admin, travel="self", expected_arrival=ago(-2))
    assert worker.trip_id is None
    scans = [departure(worker, 8), arrival(worker, 2), checkin(worker, 1)]

    await post_accepted_scans(admin, *scans)

    view = await wait_for_scans(admin, worker.id_number, *scans)
    assert (view["stage"], view["status"]) == ("checked_in", "closed"), view
    # No alert open; none ever said arrived_without_boarding. (Scans of different kinds may
    # be applied out of order; an alert that order alone raised stays as closed history.)
    assert open_alerts(view) == []
    assert "arrived_without_boarding" not in {alert["kind"] for alert in view["alerts"]}
    assert view["travel"] == "self"
    assert view["trip_id"] is None
    assert set(view["checkpoints"]) == {"departure_check", "arrival_check", "checkin"}
    assert all(checkpoint["passed"] for checkpoint in view["checkpoints"].values())


async def test_each_step_of_a_self_arranged_journey_moves_the_stage(
    admin: httpx.AsyncClient,
) -> None:
    (worker,) = await enrol(admin, travel="self")
    stages = []
    for sent in (departure(worker, 8), arrival(worker, 2), checkin(worker, 1)):
        await post_accepted_scans(admin, sent)
        view = await wait_for_view(
            admin, worker.id_number, recorded(sent["kind"], sent["scan_id"]), what=sent["kind"]
        )
        stages.append((view["stage"], view["status"]))

    assert stages == [
        ("departure_cleared", "open"),
        ("arrival_cleared", "open"),
        ("checked_in", "closed"),
    ]


async def test_the_roster_counts_a_self_travelling_worker_on_post(
    admin: httpx.AsyncClient,
) -> None:
    (worker,) = await enrol(admin, travel="self")
    scans = [departure(worker, 8), arrival(worker, 2), checkin(worker, 1)]
    await post_accepted_scans(admin, *scans)
    await wait_for_view(
        admin, worker.id_number, lambda v: v["status"] == "closed", what="the loop closed"
    )

    response = await admin.get(f"/v1/enterprises/{worker.enterprise_id}/roster")

    roster = response.json()
    assert (roster["expected"], roster["departed"], roster["in_transit"]) == (1, 1, 0)
    assert (roster["arrived"], roster["checked_in"], roster["on_post_ratio"]) == (1, 1, 1.0)


async def test_a_self_travelling_worker_past_expected_arrival_and_grace_is_overdue(
    admin: httpx.AsyncClient,
) -> None:
    # Expected 3 h ago; the grace is 2 h: overdue for an hour. The sweep runs every second.
    (late, on_time) = await enrol(admin, 2, travel="self", expected_arrival=ago(3))
    await post_accepted_scans(admin, departure(late, 20), departure(on_time, 20))

    view = await wait_for_view(
        admin,
        late.id_number,
        lambda v: "overdue_arrival" in open_alerts(v),
        what="overdue_arrival raised by the sweep",
    )
    assert view["status"] == "broken"
    assert view["stage"] == "departure_cleared"

    sent = arrival(late, 0.5)
    await post_accepted_scans(admin, sent)

    view = await wait_for_view(
        admin, late.id_number, recorded("arrival_check", sent["scan_id"]), what="arrived"
    )
    assert open_alerts(view) == []
    assert (view["stage"], view["status"]) == ("arrival_cleared", "open")
    overdue = next(a for a in view["alerts"] if a["kind"] == "overdue_arrival")
    assert overdue["closed_at"] is not None


async def test_no_overdue_before_expected_arrival_and_grace(admin: httpx.AsyncClient) -> None:
    # Expected an hour ago: still within the 2 h grace.
    (worker,) = await enrol(admin, travel="self", expected_arrival=ago(1))
    (overdue,) = await enrol(admin, travel="self", expected_arrival=ago(4))
    await post_accepted_scans(admin, departure(worker, 20), departure(overdue, 20))

    # Once the sweep has raised the overdue one, it has had its chance at the other.
    await wait_for_view(
        admin,
        overdue.id_number,
        lambda v: "overdue_arrival" in open_alerts(v),
        what="the sweep ran",
    )
    view = await lookup(admin, worker.id_number)
    assert (view["stage"], view["status"], open_alerts(view)) == ("departure_cleared", "open", [])


async def test_an_arrival_recheck_is_not_arrived_without_boarding_for_them_but_is_for_others(
    admin: httpx.AsyncClient,
) -> None:
    (self_travel,) = await enrol(admin, travel="self")
    (organised,) = await enrol(admin)
    scans = [
        departure(self_travel, 8),
        arrival(self_travel, 2),
        departure(organised, 8),
        arrival(organised, 2),
    ]

    await post_accepted_scans(admin, *scans)

    mine = await wait_for_scans(admin, self_travel.id_number, *scans[:2])
    theirs = await wait_for_scans(admin, organised.id_number, *scans[2:])
    assert (mine["stage"], open_alerts(mine)) == ("arrival_cleared", [])
    assert open_alerts(theirs) == ["arrived_without_boarding"]
    assert theirs["stage"] == "departure_cleared"


async def test_decisions_for_a_self_travelling_worker(admin: httpx.AsyncClient) -> None:
    (worker,) = await enrol(admin, travel="self")
    await post_accepted_scans(admin, departure(worker, 3))
    await wait_for_view(
        admin, worker.id_number, lambda v: v["stage"] == "departure_cleared", what="departed"
    )

    arriving = await admin.post(
        "/v1/decisions", json={"kind": "arrival_check", "id_number": worker.id_number}
    )
    boarding = await admin.post(
        "/v1/decisions",
        json={"kind": "boarding", "id_number": worker.id_number, "trip_id": unique("T")},
    )

    assert arriving.status_code == boarding.status_code == 200
    assert (arriving.json()["allow"], arriving.json()["reasons"]) == (True, [])
    assert [r["code"] for r in boarding.json()["reasons"]] == ["wrong_trip"]
    assert arriving.json()["loop"]["travel"] == "self"


# --- the manifest ---------------------------------------------------------------------


async def test_a_self_travelling_worker_with_a_trip_is_refused_and_nothing_is_stored(
    admin: httpx.AsyncClient,
) -> None:
    fine, wrong = random_id_number(), random_id_number()
    enterprise_id = unique("E")
    manifest = {
        "enterprises": [enterprise(enterprise_id)],
        "workers": [
            {"id_number": fine, "name": "赵敏", "enterprise_id": enterprise_id, "travel": "self"},
            {
                "id_number": wrong,
                "name": "钱伟",
                "enterprise_id": enterprise_id,
                "travel": "self",
                "trip_id": unique("T"),
            },
        ],
    }

    response = await admin.post("/v1/manifests", json=manifest)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"]
    assert "trip_id" in response.json()["error"]["message"]
    assert (await lookup(admin, fine))["status_code"] == 404
    assert (await lookup(admin, wrong))["status_code"] == 404


@pytest.mark.parametrize(
    "worker",
    [
        pytest.param({"travel": "walking"}, id="unknown travel"),
        pytest.param({"travel": "self", "expected_arrival": "tomorrow"}, id="not a time"),
        pytest.param({"travel": "self", "expected_arrival": "2020-03-01T08:00:00"}, id="no offset"),
    ],
)
async def test_a_malformed_self_travel_entry_is_a_422(
    admin: httpx.AsyncClient, worker: dict[str, Any]
) -> None:
    body = {"workers": [{"id_number": random_id_number(), "name": "孙丽", **worker}]}

    response = await admin.post("/v1/manifests", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"]


async def test_a_worker_moved_to_self_travel_loses_the_trip_deadline(
    admin: httpx.AsyncClient,
) -> None:
    """Upserting the manifest entry again with travel self and no trip replaces the trip."""
    (worker,) = await enrol(admin)
    again = {
        "workers": [
            {
                "id_number": worker.id_number,
                "name": worker.name,
                "enterprise_id": worker.enterprise_id,
                "travel": "self",
            }
        ]
    }
    response = await admin.post("/v1/manifests", json=again)
    assert response.status_code == 200, response.text
    scans = [departure(worker, 8), arrival(worker, 2), checkin(worker, 1)]

    await post_accepted_scans(admin, *scans)

    view = await wait_for_scans(admin, worker.id_number, *scans)
    assert (view["travel"], view["trip_id"]) == ("self", None)
    assert (view["stage"], view["status"], open_alerts(view)) == ("checked_in", "closed", [])
    assert "arrived_without_boarding" not in {alert["kind"] for alert in view["alerts"]}


async def test_an_expected_arrival_set_after_departure_still_raises_overdue(
    admin: httpx.AsyncClient,
) -> None:
    (worker,) = await enrol(admin, travel="self")
    sent = departure(worker, 20)
    await post_accepted_scans(admin, sent)
    await wait_for_view(
        admin, worker.id_number, recorded("departure_check", sent["scan_id"]), what="departed"
    )
    assert open_alerts(await lookup(admin, worker.id_number)) == []

    later = {
        "workers": [
            {
                "id_number": worker.id_number,
                "name": worker.name,
                "enterprise_id": worker.enterprise_id,
                "travel": "self",
                "expected_arrival": iso(ago(5)),
            }
        ]
    }
    response = await admin.post("/v1/manifests", json=later)
    assert response.status_code == 200, response.text

    view = await wait_for_view(
        admin,
        worker.id_number,
        lambda v: "overdue_arrival" in open_alerts(v),
        what="overdue_arrival after the manifest named an arrival time",
    )
    assert view["status"] == "broken"
