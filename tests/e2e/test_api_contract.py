"""The HTTP API's public contract (PRODUCT.md, "HTTP API"), driven against the running system."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.support.api import assert_error_body, lookup, post_scans, wait_for_view
from tests.support.servers import random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

LOOP_VIEW_KEYS = {
    "worker_ref",
    "id_masked",
    "name",  # contract v1.1: the manifest's name beside the masked ID
    "enterprise_id",
    "trip_id",
    "travel",  # contract v1.1: organised or self
    "dispositions",  # contract v1.1: what was recorded after a failed check
    "stage",
    "status",
    "health_code",
    "checkpoints",
    "alerts",
    "updated_at",
}
ALERT_KEYS = {"kind", "raised_at", "open", "closed_at"}


# --- scans of one worker's journey (event times on one day) ---------------------------


def departure_check(
    id_number: str,
    *,
    at: str = "2020-03-01T06:00:00+08:00",
    temperature_c: float = 36.5,
    health_code: str = "green",
) -> dict[str, Any]:
    return {
        "scan_id": unique("scan"),
        "kind": "departure_check",
        "id_number": id_number,
        "occurred_at": at,
        "station": "毕节招工组",
        "temperature_c": temperature_c,
        "health_code": health_code,
    }


def boarding(
    id_number: str, trip_id: str, *, at: str = "2020-03-01T06:30:00+08:00"
) -> dict[str, Any]:
    return {
        "scan_id": unique("scan"),
        "kind": "boarding",
        "id_number": id_number,
        "occurred_at": at,
        "station": f"{trip_id} 车门",
        "trip_id": trip_id,
    }


def arrival_check(id_number: str, *, at: str = "2020-03-01T20:00:00+08:00") -> dict[str, Any]:
    return {
        "scan_id": unique("scan"),
        "kind": "arrival_check",
        "id_number": id_number,
        "occurred_at": at,
        "station": "鹿城健康服务站",
        "temperature_c": 36.4,
        "health_code": "green",
    }


def checkin(
    id_number: str, enterprise_id: str, *, at: str = "2020-03-01T21:00:00+08:00"
) -> dict[str, Any]:
    return {
        "scan_id": unique("scan"),
        "kind": "checkin",
        "id_number": id_number,
        "occurred_at": at,
        "station": f"{enterprise_id} 门岗",
        "enterprise_id": enterprise_id,
    }


def with_wrong_check_digit(id_number: str) -> str:
    wrong = next(char for char in "0123456789X" if char != id_number[-1])
    return id_number[:-1] + wrong


def manifest_for(id_number: str, *, enterprise_id: str, trip_id: str) -> dict[str, Any]:
    return {
        "enterprises": [{"enterprise_id": enterprise_id, "name": "鹿城鞋业", "shortage": 120}],
        "trips": [
            {
                "trip_id": trip_id,
                "mode": "bus",
                "origin": "贵州毕节",
                "destination": "浙江温州鹿城",
                "departs_at": "2020-03-01T06:45:00+08:00",
                "eta": "2020-03-01T19:30:00+08:00",
            }
        ],
        "workers": [
            {
                "id_number": id_number,
                "name": "张三",
                "enterprise_id": enterprise_id,
                "trip_id": trip_id,
            }
        ],
    }


# --- reading through the API --------------------------------------------------------


def view_of(probe: dict[str, Any]) -> dict[str, Any]:
    """A lookup result without the status code added by ``lookup``."""
    return {key: value for key, value in probe.items() if key != "status_code"}


def alerts_by_kind(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {alert["kind"]: alert for alert in view.get("alerts", [])}


def metric_samples(text: str, name: str) -> dict[str, float]:
    """Samples of one metric from Prometheus text, keyed by their label string."""
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    return {labels or "": float(value) for labels, value in pattern.findall(text)}


# --- POST /v1/scans -----------------------------------------------------------------


async def test_a_batch_of_invalid_scans_answers_one_rejection_per_item_in_order(
    admin: httpx.AsyncClient,
) -> None:
    id_number = random_id_number()
    no_temperature = departure_check(id_number)
    del no_temperature["temperature_c"]
    batch = [
        departure_check(with_wrong_check_digit(id_number)),
        {**departure_check(id_number), "kind": "teleport"},
        no_temperature,
        departure_check(id_number, temperature_c=50),
        departure_check(id_number, at="2020-03-01T06:00:00"),
    ]

    results = await post_scans(admin, *batch)

    assert [r["scan_id"] for r in results] == [scan["scan_id"] for scan in batch]
    assert [r["status"] for r in results] == ["rejected"] * len(batch)
    assert [r["reason"] for r in results] == [
        "id_number_checksum",
        "unknown_kind",
        "missing_field",
        "temperature_out_of_range",
        "invalid_timestamp",
    ]


async def test_batch_items_that_are_not_scan_objects_are_rejected_one_by_one(
    admin: httpx.AsyncClient,
) -> None:
    batch: list[Any] = [1, "scan", None, [], {}]

    response = await admin.post("/v1/scans", json={"scans": batch})

    assert response.status_code == 202
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["rejected"] * len(batch)
    assert all(r["reason"] for r in results)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", ["departure_check"]),
        ("kind", {"name": "departure_check"}),
        ("kind", 1),
        ("scan_id", 42),
        ("id_number", 520502199001011234),
        ("temperature_c", "hot"),
        ("occurred_at", 1583013600),
        ("station", ["毕节招工组"]),
    ],
    ids=[
        "kind list",
        "kind object",
        "kind number",
        "scan_id number",
        "id_number number",
        "temperature_c text",
        "occurred_at number",
        "station list",
    ],
)
async def test_a_scan_with_a_field_of_the_wrong_json_type_is_rejected_not_a_server_error(
    admin: httpx.AsyncClient, field: str, value: Any
) -> None:
    scan = {**departure_check(random_id_number()), field: value}

    response = await admin.post("/v1/scans", json={"scans": [scan]})

    assert response.status_code == 202, response.text
    [result] = response.json()["results"]
    assert result["status"] == "rejected"
    assert result["reason"]


async def test_a_single_scan_object_answers_one_result(admin: httpx.AsyncClient) -> None:
    scan = departure_check(random_id_number())

    response = await admin.post("/v1/scans", json=scan)

    assert response.status_code == 202
    results = response.json()["results"]
    assert [(r["scan_id"], r["status"]) for r in results] == [(scan["scan_id"], "accepted")]


async def test_valid_scans_of_a_mixed_batch_are_applied_and_invalid_ones_are_not(
    admin: httpx.AsyncClient,
) -> None:
    applied_worker, rejected_worker = random_id_number(), random_id_number()
    boarding_without_trip = boarding(applied_worker, "B-unused")
    del boarding_without_trip["trip_id"]
    batch = [
        departure_check(applied_worker),
        departure_check(rejected_worker, temperature_c=50),
        boarding_without_trip,
    ]

    results = await post_scans(admin, *batch)

    assert [r["status"] for r in results] == ["accepted", "rejected", "rejected"]
    view = await wait_for_view(
        admin,
        applied_worker,
        lambda v: "departure_check" in v.get("checkpoints", {}),
        what="the valid departure check to be applied",
    )
    assert set(view["checkpoints"]) == {"departure_check"}
    assert view["stage"] == "departure_cleared"
    assert (await lookup(admin, rejected_worker))["status_code"] == 404


# --- POST /v1/manifests -------------------------------------------------------------


async def test_a_manifest_registers_a_worker_with_its_enterprise_and_trip(
    admin: httpx.AsyncClient,
) -> None:
    id_number, enterprise_id, trip_id = random_id_number(), unique("E"), unique("B")

    response = await admin.post(
        "/v1/manifests", json=manifest_for(id_number, enterprise_id=enterprise_id, trip_id=trip_id)
    )

    assert response.is_success, response.text
    view = await lookup(admin, id_number)
    assert view["status_code"] == 200
    assert view["enterprise_id"] == enterprise_id
    assert view["trip_id"] == trip_id
    assert view["stage"] == "registered"
    assert view["status"] == "open"
    assert view["checkpoints"] == {}
    assert view["alerts"] == []


async def test_posting_the_same_manifest_again_changes_nothing(admin: httpx.AsyncClient) -> None:
    id_number = random_id_number()
    manifest = manifest_for(id_number, enterprise_id=unique("E"), trip_id=unique("B"))
    first = await admin.post("/v1/manifests", json=manifest)
    before = await lookup(admin, id_number)

    again = await admin.post("/v1/manifests", json=manifest)

    assert first.is_success and again.is_success
    assert again.json() == first.json()
    after = await lookup(admin, id_number)
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }


# --- reading workers ----------------------------------------------------------------


async def test_reading_a_worker_by_reference_gives_the_same_view_as_lookup(
    admin: httpx.AsyncClient,
) -> None:
    id_number = random_id_number()
    await post_scans(admin, departure_check(id_number))
    looked_up = view_of(
        await wait_for_view(
            admin,
            id_number,
            lambda v: v.get("stage") == "departure_cleared",
            what="the departure check to be applied",
        )
    )

    response = await admin.get(f"/v1/workers/{looked_up['worker_ref']}")

    assert response.status_code == 200
    assert response.json() == looked_up


async def test_an_unknown_worker_is_not_found_with_an_error_body(
    admin: httpx.AsyncClient,
) -> None:
    by_id_number = await admin.post("/v1/workers/lookup", json={"id_number": random_id_number()})
    by_reference = await admin.get(f"/v1/workers/{unique('w_unknown')}")

    for response in (by_id_number, by_reference):
        assert response.status_code == 404
        assert_error_body(response)


# --- loop rules seen through the API ------------------------------------------------


async def test_a_checkin_at_another_enterprise_than_the_manifests_breaks_the_loop(
    admin: httpx.AsyncClient,
) -> None:
    id_number, enterprise_id, trip_id = random_id_number(), unique("E"), unique("B")
    await admin.post(
        "/v1/manifests", json=manifest_for(id_number, enterprise_id=enterprise_id, trip_id=trip_id)
    )

    await post_scans(
        admin,
        departure_check(id_number),
        boarding(id_number, trip_id),
        arrival_check(id_number),
        checkin(id_number, unique("E-other")),
    )

    view = await wait_for_view(
        admin,
        id_number,
        lambda v: "wrong_enterprise" in alerts_by_kind(v),
        what="a wrong_enterprise alert",
    )
    assert alerts_by_kind(view)["wrong_enterprise"]["open"] is True
    assert view["status"] == "broken"
    assert view["stage"] == "arrival_cleared"


async def test_a_late_arrival_check_closes_the_loop_and_the_alert_its_absence_raised(
    admin: httpx.AsyncClient,
) -> None:
    id_number, trip_id = random_id_number(), unique("B")
    await post_scans(
        admin,
        departure_check(id_number),
        boarding(id_number, trip_id),
        checkin(id_number, "E0001", at="2020-03-01T21:00:00+08:00"),
    )
    await wait_for_view(
        admin,
        id_number,
        lambda v: alerts_by_kind(v).get("checkin_without_arrival_check", {}).get("open") is True,
        what="the check-in without an arrival check to be flagged",
    )

    await post_scans(admin, arrival_check(id_number, at="2020-03-01T20:00:00+08:00"))

    view = await wait_for_view(
        admin,
        id_number,
        lambda v: v.get("status") == "closed",
        what="the late arrival check to close the loop",
    )
    assert view["stage"] == "checked_in"
    alert = alerts_by_kind(view)["checkin_without_arrival_check"]
    assert alert["open"] is False
    assert alert["closed_at"] is not None
    assert not [a for a in view["alerts"] if a["open"]]


async def test_a_passing_recheck_after_a_failed_departure_check_releases_the_hold(
    admin: httpx.AsyncClient,
) -> None:
    id_number = random_id_number()
    await post_scans(admin, departure_check(id_number, temperature_c=38.2))
    await wait_for_view(
        admin, id_number, lambda v: v.get("status") == "held", what="the worker to be held"
    )

    await post_scans(admin, departure_check(id_number, at="2020-03-01T06:20:00+08:00"))

    view = await wait_for_view(
        admin,
        id_number,
        lambda v: v.get("status") != "held",
        what="the passing recheck to release the hold",
    )
    assert view["status"] == "open"
    assert view["stage"] == "departure_cleared"
    fever = alerts_by_kind(view)["fever_at_departure"]
    assert fever["open"] is False
    assert fever["closed_at"] is not None


async def test_the_loop_view_has_exactly_the_contract_fields(admin: httpx.AsyncClient) -> None:
    id_number = random_id_number()
    await post_scans(admin, departure_check(id_number, health_code="yellow"))

    view = view_of(
        await wait_for_view(
            admin, id_number, lambda v: bool(v.get("alerts")), what="an alert on the worker"
        )
    )

    assert set(view) == LOOP_VIEW_KEYS
    assert view["alerts"] and all(set(alert) == ALERT_KEYS for alert in view["alerts"])
    checkpoint = view["checkpoints"]["departure_check"]
    assert {"at", "passed", "station"} <= set(checkpoint)
    assert checkpoint["passed"] is False
    assert view["id_masked"] == id_number[:6] + "********" + id_number[-4:]


async def test_no_response_contains_the_plain_id_number(admin: httpx.AsyncClient) -> None:
    id_number = random_id_number()
    responses = [
        await admin.post(
            "/v1/manifests",
            json=manifest_for(id_number, enterprise_id=unique("E"), trip_id=unique("B")),
        ),
        await admin.post(
            "/v1/scans",
            json={
                "scans": [
                    departure_check(id_number),
                    departure_check(id_number, temperature_c=50),
                    {**departure_check(id_number), "kind": "teleport"},
                ]
            },
        ),
        await admin.post("/v1/scans", json=departure_check(id_number, health_code="purple")),
    ]
    await wait_for_view(
        admin,
        id_number,
        lambda v: "departure_check" in v.get("checkpoints", {}),
        what="the departure check to be applied",
    )
    looked_up = await admin.post("/v1/workers/lookup", json={"id_number": id_number.lower()})
    responses += [
        looked_up,
        await admin.get(f"/v1/workers/{looked_up.json()['worker_ref']}"),
        await admin.post("/v1/workers/lookup", json={"id_number": id_number, "extra": id_number}),
    ]

    for response in responses:
        assert response.status_code < 500, response.text
        assert id_number not in response.text, response.request.url


# --- operations: metrics, health, documentation -------------------------------------


async def test_metrics_count_the_scans_received_and_rejected(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    received = '{kind="departure_check",outcome="received"}'
    rejected = '{kind="departure_check",outcome="rejected"}'
    before = metric_samples((await anonymous.get("/metrics")).text, "returnloop_scans_total")
    id_number = random_id_number()

    await post_scans(admin, departure_check(id_number), departure_check(id_number, at="bad"))

    response = await anonymous.get("/metrics")
    assert response.status_code == 200
    after = metric_samples(response.text, "returnloop_scans_total")
    assert after[received] >= before.get(received, 0) + 1
    assert after[rejected] >= before.get(rejected, 0) + 1


async def test_the_workers_gauge_comes_to_count_a_newly_registered_worker(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    async def workers_counted() -> float:
        text = (await anonymous.get("/metrics")).text
        return sum(metric_samples(text, "returnloop_workers").values())

    before = await workers_counted()

    await admin.post(
        "/v1/manifests",
        json=manifest_for(random_id_number(), enterprise_id=unique("E"), trip_id=unique("B")),
    )

    await eventually(
        workers_counted, lambda count: count > before, what="the workers gauge to refresh"
    )


async def test_liveness_and_readiness_answer_without_a_token(
    anonymous: httpx.AsyncClient,
) -> None:
    for path in ("/healthz", "/readyz"):
        response = await anonymous.get(path)
        assert response.status_code == 200, (path, response.text)


async def test_the_openapi_document_lists_the_endpoints(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"post"} <= set(paths["/v1/scans"])
    assert {"post"} <= set(paths["/v1/manifests"])
    assert {"post"} <= set(paths["/v1/workers/lookup"])
    assert {"get"} <= set(paths["/v1/workers/{worker_ref}"])
    assert {"post"} <= set(paths["/v1/tokens"])
    assert (await anonymous.get("/docs")).status_code == 200
