"""Trips: who never showed (contract v1.1). GET /v1/trips/{trip_id} lists, once departs_at +
30 minutes has passed, the manifest's workers with no boarding scan, and names everyone the
table lists."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.api import post_accepted_scans, worker_ref_of
from tests.support.journeys import (
    PATIENCE,
    Enrolled,
    ago,
    enrol,
    iso,
    recorded,
    role_client,
    wait_for_view,
)
from tests.support.processes import RunningSystem
from tests.support.servers import unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def _scan(kind: str, worker: Enrolled, hours_ago: float, **fields: Any) -> dict[str, Any]:
    return {
        "scan_id": unique("noshow"),
        "kind": kind,
        "id_number": worker.id_number,
        "occurred_at": iso(ago(hours_ago)),
        "station": f"{worker.trip_id} 车门",
        **fields,
    }


def departed(worker: Enrolled, hours_ago: float) -> dict[str, Any]:
    return _scan("departure_check", worker, hours_ago, temperature_c=36.4, health_code="green")


def boarded(worker: Enrolled, hours_ago: float, trip_id: str | None = None) -> dict[str, Any]:
    return _scan("boarding", worker, hours_ago, trip_id=trip_id or worker.trip_id)


async def trip_table(client: httpx.AsyncClient, trip_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/trips/{trip_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refs(admin: httpx.AsyncClient, *workers: Enrolled) -> list[str]:
    return sorted([await worker_ref_of(admin, worker.id_number) for worker in workers])


async def test_after_departure_and_the_grace_the_manifest_workers_who_never_boarded_are_listed(
    admin: httpx.AsyncClient,
) -> None:
    on_board, checked_only, never_seen = await enrol(admin, 3, departs_at=ago(2))
    last = boarded(on_board, 2.1)
    await post_accepted_scans(admin, departed(on_board, 2.5), last, departed(checked_only, 2.5))
    await wait_for_view(
        admin, on_board.id_number, recorded("boarding", last["scan_id"]), what="boarded"
    )
    await wait_for_view(
        admin, checked_only.id_number, lambda v: v["stage"] == "departure_cleared", what="checked"
    )

    table = await trip_table(admin, on_board.trip_id or "")

    assert table["no_show"] == await refs(admin, checked_only, never_seen)
    assert (table["manifest"], table["boarded"]) == (3, 1)
    assert table["missing"] == await refs(admin, on_board)
    named = {worker["worker_ref"]: worker for worker in table["workers"]}
    for worker in (on_board, checked_only, never_seen):
        shown = named[await worker_ref_of(admin, worker.id_number)]
        assert (shown["name"], shown["id_masked"]) == (worker.name, worker.id_masked)
    assert set(named) == {*table["no_show"], *table["missing"], *table["not_on_manifest"]}
    assert not any(w.id_number in str(table) for w in (on_board, checked_only, never_seen))


@pytest.mark.parametrize(
    "departs_in_minutes",
    [
        pytest.param(120, id="departs in 2 h"),
        pytest.param(-10, id="departed 10 min ago: within the grace"),
    ],
)
async def test_before_departure_and_the_grace_no_one_is_a_no_show(
    admin: httpx.AsyncClient, departs_in_minutes: float
) -> None:
    workers = await enrol(admin, 2, departs_at=ago(minutes=-departs_in_minutes))

    table = await trip_table(admin, workers[0].trip_id or "")

    assert table["no_show"] == []
    assert table["manifest"] == 2
    assert table["workers"] == []


async def test_a_late_boarder_leaves_the_no_show_list(admin: httpx.AsyncClient) -> None:
    late, absent = await enrol(admin, 2, departs_at=ago(1))
    trip_id = late.trip_id or ""
    assert (await trip_table(admin, trip_id))["no_show"] == await refs(admin, late, absent)

    await post_accepted_scans(admin, departed(late, 0.5), boarded(late, 0.4))

    table = await eventually(
        lambda: trip_table(admin, trip_id),
        lambda t: len(t["no_show"]) == 1,
        what="the late boarder off the no-show list",
        within=PATIENCE,
    )
    assert table["no_show"] == await refs(admin, absent)
    assert table["boarded"] == 1


async def test_a_worker_who_boarded_without_clearance_still_showed(
    admin: httpx.AsyncClient,
) -> None:
    (worker,) = await enrol(admin, departs_at=ago(3))
    sent = boarded(worker, 2.9)
    await post_accepted_scans(admin, sent)
    await wait_for_view(admin, worker.id_number, recorded("boarding", sent["scan_id"]), what="in")

    table = await trip_table(admin, worker.trip_id or "")

    assert table["no_show"] == []
    assert table["boarded"] == 1


async def test_someone_elses_boarder_is_named_and_no_one_on_the_list_is_a_stranger(
    admin: httpx.AsyncClient,
) -> None:
    (listed,) = await enrol(admin, departs_at=ago(3))
    (stranger,) = await enrol(admin, departs_at=ago(3))
    sent = boarded(stranger, 2.9, trip_id=listed.trip_id)
    await post_accepted_scans(admin, sent)
    await wait_for_view(
        admin, stranger.id_number, recorded("boarding", sent["scan_id"]), what="boarded"
    )

    table = await trip_table(admin, listed.trip_id or "")

    assert table["no_show"] == await refs(admin, listed)
    assert table["not_on_manifest"] == await refs(admin, stranger)
    named = {worker["worker_ref"]: worker["name"] for worker in table["workers"]}
    assert named == {
        (await refs(admin, listed))[0]: listed.name,
        (await refs(admin, stranger))[0]: stranger.name,
    }


async def test_the_trip_list_still_answers_with_past_and_future_trips(
    system: RunningSystem, admin: httpx.AsyncClient
) -> None:
    (past,) = await enrol(admin, departs_at=ago(5))
    async with role_client(system, admin, "supervisor") as supervisor:
        table = await trip_table(supervisor, past.trip_id or "")
        listed = await supervisor.get("/v1/trips")

    assert table["no_show"] == await refs(admin, past)
    assert listed.status_code == 200, listed.text
    assert past.trip_id in {trip["trip_id"] for trip in listed.json()["trips"]}
