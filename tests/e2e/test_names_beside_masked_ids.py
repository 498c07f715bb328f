"""Names (contract v1.1): loop views, alerts and trip tables show the manifest's ``name``
beside ``id_masked``, so that the person at the checkpoint and the supervisor can call
the worker; never the plain ID number."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.api import lookup, post_accepted_scans, worker_ref_of
from tests.support.journeys import (
    PATIENCE,
    Enrolled,
    ago,
    enrol,
    iso,
    link,
    role_client,
    wait_for_view,
)
from tests.support.processes import RunningSystem
from tests.support.servers import random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def feverish(worker: Enrolled | str) -> dict[str, Any]:
    id_number = worker if isinstance(worker, str) else worker.id_number
    return {
        "scan_id": unique("names"),
        "kind": "departure_check",
        "id_number": id_number,
        "occurred_at": iso(ago(2)),
        "station": "毕节招工组",
        "temperature_c": 38.1,
        "health_code": "green",
    }


async def test_every_loop_view_names_the_worker(
    system: RunningSystem, admin: httpx.AsyncClient
) -> None:
    (worker,) = await enrol(admin)
    code, _ = await link(admin, worker.id_number)
    worker_ref = await worker_ref_of(admin, worker.id_number)

    async with role_client(system, admin, "gate", enterprise_id=worker.enterprise_id) as gate:
        views = {
            "lookup": await lookup(admin, worker.id_number),
            "by ref": (await admin.get(f"/v1/workers/{worker_ref}")).json(),
            "resolve": (await admin.post("/v1/links/resolve", json={"code": code})).json()["loop"],
            "gate decision": (
                await gate.post(
                    "/v1/gate/decision", json={"code": code, "enterprise_id": worker.enterprise_id}
                )
            ).json()["loop"],
            "decision": (
                await admin.post("/v1/decisions", json={"kind": "departure_check", "code": code})
            ).json()["loop"],
        }

    for where, view in views.items():
        assert (view.get("name"), view["id_masked"]) == (worker.name, worker.id_masked), where
        assert worker.id_number not in str(view), where


async def test_alerts_name_the_worker(system: RunningSystem, admin: httpx.AsyncClient) -> None:
    (worker,) = await enrol(admin)
    await post_accepted_scans(admin, feverish(worker))

    async def alerts(client: httpx.AsyncClient) -> list[dict[str, Any]]:
        response = await client.get(
            "/v1/alerts", params={"enterprise_id": worker.enterprise_id, "status": "all"}
        )
        assert response.status_code == 200, response.text
        listed: list[dict[str, Any]] = response.json()["alerts"]
        return listed

    (alert,) = await eventually(
        lambda: alerts(admin), bool, what="the fever alert listed", within=PATIENCE
    )
    async with role_client(system, admin, "gate", enterprise_id=worker.enterprise_id) as gate:
        (seen_by_gate,) = await alerts(gate)

    for shown in (alert, seen_by_gate):
        assert shown["kind"] == "fever_at_departure"
        assert (shown["name"], shown["id_masked"]) == (worker.name, worker.id_masked)
        assert worker.id_number not in str(shown)


async def test_a_worker_on_no_manifest_has_no_name_but_a_masked_id(
    admin: httpx.AsyncClient,
) -> None:
    id_number = random_id_number()
    await post_accepted_scans(admin, feverish(id_number))

    view = await wait_for_view(
        admin, id_number, lambda v: v["status_code"] == 200 and v["alerts"], what="the alert"
    )

    assert view.get("name") is None
    assert view["id_masked"] == id_number[:6] + "********" + id_number[-4:]


async def test_a_corrected_name_on_the_manifest_shows_everywhere(
    admin: httpx.AsyncClient,
) -> None:
    (worker,) = await enrol(admin, departs_at=ago(3))
    corrected = worker.name + "（更正）"
    response = await admin.post(
        "/v1/manifests",
        json={
            "workers": [
                {
                    "id_number": worker.id_number,
                    "name": corrected,
                    "enterprise_id": worker.enterprise_id,
                    "trip_id": worker.trip_id,
                }
            ]
        },
    )
    assert response.status_code == 200, response.text
    await post_accepted_scans(admin, feverish(worker))

    view = await wait_for_view(admin, worker.id_number, lambda v: v["alerts"], what="the alert")
    trip = (await admin.get(f"/v1/trips/{worker.trip_id}")).json()
    (alert,) = (
        await admin.get("/v1/alerts", params={"enterprise_id": worker.enterprise_id})
    ).json()["alerts"]

    assert view["name"] == corrected
    assert alert["name"] == corrected
    assert [w["name"] for w in trip["workers"]] == [corrected]
