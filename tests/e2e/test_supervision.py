"""Supervisors' views over HTTP: rosters, trip tables, the alert queue and who may read them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import RunningSystem
from tests.support.api import (
    assert_error_body,
    bearer,
    issue_token,
    post_accepted_scans,
    post_manifest,
    worker_ref_of,
)
from tests.support.scans import NOW
from tests.support.scans import recent_scan as at
from tests.support.servers import random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


async def get_json(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def all_pages(client: httpx.AsyncClient, **params: Any) -> list[list[dict[str, Any]]]:
    """Every page of an alert listing, following ``next_cursor`` to the end."""
    pages = []
    cursor = None
    while True:
        page = await get_json(
            client, "/v1/alerts", **params, **({"cursor": cursor} if cursor else {})
        )
        pages.append(page["alerts"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


@dataclass(frozen=True)
class Wave:
    """Enterprise A's five workers on trip T, one of B's boarding T unlisted, and C's alerts."""

    enterprise_a: str
    enterprise_b: str
    enterprise_c: str
    trip_id: str
    refs: dict[str, str]


@pytest.fixture(scope="module")
async def wave(system: RunningSystem) -> AsyncIterator[Wave]:
    async with httpx.AsyncClient(
        base_url=system.url, headers=bearer(system.admin_token), timeout=30
    ) as admin:
        enterprise_a, enterprise_b, enterprise_c = (unique(f"E{n}") for n in "ABC")
        trip_id = unique("B")
        ids = {name: random_id_number() for name in ("closed", "held", "in_transit")}
        ids |= {name: random_id_number() for name in ("wrong_gate", "no_show", "unlisted")}
        ids |= {f"c{n}": random_id_number() for n in range(1, 7)}

        def worker(name: str, enterprise_id: str, trip: str | None) -> dict[str, Any]:
            return {
                "id_number": ids[name],
                "name": name,
                "enterprise_id": enterprise_id,
                "trip_id": trip,
            }

        manifest = {
            "enterprises": [
                {"enterprise_id": enterprise_a, "name": "瓯海服装厂", "shortage": 30},
                {"enterprise_id": enterprise_b, "name": "鹿城鞋业", "shortage": 5},
                {"enterprise_id": enterprise_c, "name": "龙湾电气", "shortage": 0},
            ],
            "trips": [
                {
                    "trip_id": trip_id,
                    "mode": "bus",
                    "origin": "贵州毕节",
                    "destination": "浙江温州",
                    "departs_at": (NOW - timedelta(hours=2)).isoformat(),
                    "eta": (NOW + timedelta(hours=24)).isoformat(),
                }
            ],
            "workers": [
                *(
                    worker(name, enterprise_a, trip_id)
                    for name in ("closed", "held", "in_transit", "wrong_gate", "no_show")
                ),
                worker("unlisted", enterprise_b, None),
                *(worker(f"c{n}", enterprise_c, None) for n in range(1, 7)),
            ],
        }
        await post_manifest(admin, manifest)

        boarding = {"trip_id": trip_id}
        fever = {"temperature_c": 38.6}
        scans = [
            at(0, "departure_check", ids["closed"]),
            at(1, "boarding", ids["closed"], **boarding),
            at(2, "arrival_check", ids["closed"]),
            at(3, "checkin", ids["closed"], enterprise_id=enterprise_a),
            at(0, "departure_check", ids["held"], **fever),
            at(0, "departure_check", ids["in_transit"]),
            at(1, "boarding", ids["in_transit"], **boarding),
            at(0, "departure_check", ids["wrong_gate"]),
            at(1, "boarding", ids["wrong_gate"], **boarding),
            at(2, "arrival_check", ids["wrong_gate"]),
            at(3, "checkin", ids["wrong_gate"], enterprise_id=enterprise_b),
            at(0, "departure_check", ids["unlisted"]),
            at(1, "boarding", ids["unlisted"], **boarding),
            # C: four fevers still open, one fever cleared by a recheck, one yellow code.
            *(at(0, "departure_check", ids[f"c{n}"], **fever) for n in range(1, 6)),
            at(0.5, "departure_check", ids["c5"]),
            at(0, "departure_check", ids["c6"], health_code="yellow"),
        ]
        await post_accepted_scans(admin, *scans)
        refs = {name: await worker_ref_of(admin, id_number) for name, id_number in ids.items()}
        await eventually(
            lambda: get_json(admin, "/v1/alerts", status="all", enterprise_id=enterprise_c),
            lambda page: sorted(alert["open"] for alert in page["alerts"]) == [False] + [True] * 5,
            what="enterprise C's five open alerts and one closed",
        )
        yield Wave(enterprise_a, enterprise_b, enterprise_c, trip_id, refs)


async def test_the_roster_counts_each_worker_where_their_loop_stands(
    admin: httpx.AsyncClient, wave: Wave
) -> None:
    expected = {
        "enterprise_id": wave.enterprise_a,
        "expected": 5,
        "departed": 3,  # closed, in_transit, wrong_gate (held failed its check)
        "in_transit": 1,
        "arrived": 2,  # closed, wrong_gate
        "checked_in": 1,  # the wrong gate's check-in counts nowhere
        "held": 1,
        "broken": 1,
        "withdrawn": 0,
        "on_post_ratio": 0.2,
        "shortage": 30,
    }

    roster = await eventually(
        lambda: get_json(admin, f"/v1/enterprises/{wave.enterprise_a}/roster"),
        lambda roster: roster == expected,
        what="enterprise A's roster",
    )

    assert roster == expected


async def test_a_check_in_at_the_wrong_gate_is_not_counted_there(
    admin: httpx.AsyncClient, wave: Wave
) -> None:
    roster = await eventually(
        lambda: get_json(admin, f"/v1/enterprises/{wave.enterprise_b}/roster"),
        lambda roster: roster["in_transit"] == 1,
        what="enterprise B's roster",
    )

    assert roster == {
        "enterprise_id": wave.enterprise_b,
        "expected": 1,
        "departed": 1,
        "in_transit": 1,
        "arrived": 0,
        "checked_in": 0,
        "held": 0,
        "broken": 0,
        "withdrawn": 0,
        "on_post_ratio": 0.0,
        "shortage": 5,
    }


async def test_the_trip_table_names_who_is_missing_and_who_is_not_on_the_manifest(
    admin: httpx.AsyncClient, wave: Wave
) -> None:
    refs = wave.refs
    expected = {
        "trip_id": wave.trip_id,
        "mode": "bus",
        "manifest": 5,
        "boarded": 4,
        "arrived": 2,
        "missing": sorted([refs["in_transit"], refs["unlisted"]]),
        "not_on_manifest": [refs["unlisted"]],
    }

    def contract_part(trip: dict[str, Any]) -> dict[str, Any]:
        # v1.1 adds departs_at, no_show and the named workers (tests/e2e/test_trips_no_show.py).
        return {key: trip[key] for key in expected if key in trip}

    trip = await eventually(
        lambda: get_json(admin, f"/v1/trips/{wave.trip_id}"),
        lambda trip: contract_part(trip) == expected,
        what="the trip's table",
    )

    assert contract_part(trip) == expected
    listed = {*expected["missing"], *expected["not_on_manifest"], *trip["no_show"]}
    assert {worker["worker_ref"] for worker in trip["workers"]} == listed


async def test_unknown_enterprises_and_trips_are_not_found(admin: httpx.AsyncClient) -> None:
    for path in (f"/v1/enterprises/{unique('E')}/roster", f"/v1/trips/{unique('T')}"):
        response = await admin.get(path)

        assert response.status_code == 404, path
        assert_error_body(response)


async def test_alerts_filter_by_status_kind_enterprise_and_trip(
    admin: httpx.AsyncClient, wave: Wave
) -> None:
    refs = wave.refs

    def listing(**params: Any) -> Any:
        return get_json(admin, "/v1/alerts", **params)

    in_c = {"enterprise_id": wave.enterprise_c}
    opened = (await listing(**in_c))["alerts"]
    closed = (await listing(status="closed", **in_c))["alerts"]
    fevers = (await listing(kind="fever_at_departure", **in_c))["alerts"]
    on_trip = await eventually(
        lambda: listing(trip_id=wave.trip_id),
        lambda page: len(page["alerts"]) == 2,
        what="trip T's two open alerts",
    )

    assert len(opened) == 5 and all(alert["open"] for alert in opened)
    assert {alert["enterprise_id"] for alert in opened} == {wave.enterprise_c}
    assert [(a["worker_ref"], a["kind"], a["open"]) for a in closed] == [
        (refs["c5"], "fever_at_departure", False)
    ]
    assert closed[0]["closed_at"] is not None
    assert sorted(alert["worker_ref"] for alert in fevers) == sorted(
        refs[f"c{n}"] for n in range(1, 5)
    )
    assert sorted((a["worker_ref"], a["kind"]) for a in on_trip["alerts"]) == sorted(
        [(refs["held"], "fever_at_departure"), (refs["wrong_gate"], "wrong_enterprise")]
    )
    assert {alert["trip_id"] for alert in on_trip["alerts"]} == {wave.trip_id}
    assert set(opened[0]) == {
        "alert_id",
        "worker_ref",
        "id_masked",  # v1.1: the manifest's name beside the masked ID
        "name",
        "enterprise_id",
        "trip_id",
        "kind",
        "raised_at",
        "open",
        "closed_at",
        "acknowledged_at",
        "acknowledged_by",
        "resolution_note",
    }


async def test_alert_pages_follow_the_cursor_newest_first_without_gaps_or_repeats(
    admin: httpx.AsyncClient, wave: Wave
) -> None:
    everything = (
        await get_json(admin, "/v1/alerts", status="all", enterprise_id=wave.enterprise_c)
    )["alerts"]

    pages = await all_pages(admin, status="all", enterprise_id=wave.enterprise_c, limit=2)

    assert [len(page) for page in pages] == [2, 2, 2]
    paged = [alert for page in pages for alert in page]
    assert paged == everything
    ids = [alert["alert_id"] for alert in paged]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 6


async def test_acknowledging_records_who_when_and_the_note_and_survives_the_tracker(
    admin: httpx.AsyncClient, system: RunningSystem
) -> None:
    enterprise_id = unique("E")
    id_number = random_id_number()
    manifest = {
        "enterprises": [{"enterprise_id": enterprise_id, "name": "瑞安汽配", "shortage": 1}],
        "workers": [{"id_number": id_number, "name": "王五", "enterprise_id": enterprise_id}],
    }
    await post_manifest(admin, manifest)
    await post_accepted_scans(admin, at(0, "departure_check", id_number, temperature_c=38.1))
    page = await eventually(
        lambda: get_json(admin, "/v1/alerts", enterprise_id=enterprise_id),
        lambda page: len(page["alerts"]) == 1,
        what="the fever alert",
    )
    alert_id = page["alerts"][0]["alert_id"]
    supervisor = bearer(await issue_token(admin, "supervisor"))

    response = await admin.post(
        f"/v1/alerts/{alert_id}/acknowledge",
        json={"note": "已隔离观察，次日复测"},
        headers=supervisor,
    )

    assert response.status_code == 200, response.text
    acknowledged = response.json()
    assert acknowledged["alert_id"] == alert_id and acknowledged["open"] is True
    assert acknowledged["acknowledged_by"].startswith("supervisor")
    assert system.admin_token not in acknowledged["acknowledged_by"]
    assert acknowledged["resolution_note"] == "已隔离观察，次日复测"
    when = datetime.fromisoformat(acknowledged["acknowledged_at"])
    assert abs(datetime.now(UTC) - when) < timedelta(minutes=5)

    # The passing recheck closes the alert; the tracker's upsert keeps the acknowledgement.
    await post_accepted_scans(admin, at(1, "departure_check", id_number))
    page = await eventually(
        lambda: get_json(admin, "/v1/alerts", status="all", enterprise_id=enterprise_id),
        lambda page: not page["alerts"][0]["open"],
        what="the recheck to close the alert",
    )
    assert [alert["alert_id"] for alert in page["alerts"]] == [alert_id]
    assert {k: page["alerts"][0][k] for k in ("acknowledged_by", "resolution_note")} == {
        "acknowledged_by": acknowledged["acknowledged_by"],
        "resolution_note": acknowledged["resolution_note"],
    }


async def test_acknowledging_an_unknown_alert_is_not_found(admin: httpx.AsyncClient) -> None:
    response = await admin.post("/v1/alerts/9223372036854775807/acknowledge", json={"note": "x"})

    assert response.status_code == 404
    assert_error_body(response)


@pytest.mark.parametrize(
    "params",
    [
        {"status": "pending"},
        {"kind": "sneezing"},
        {"limit": 0},
        {"limit": 501},
        {"limit": "many"},
        {"cursor": "not a cursor"},
        {"cursor": "YWxlcnQ6LTE"},  # a well-formed encoding of a negative id
        {"enterprise_id": ""},
    ],
)
async def test_bad_alert_queries_are_client_errors_with_the_error_body(
    admin: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    response = await admin.get("/v1/alerts", params=params)

    assert response.status_code in (400, 422), response.text
    assert_error_body(response)


async def test_gates_read_only_their_own_enterprise_and_only_supervisors_acknowledge(
    admin: httpx.AsyncClient, system: RunningSystem, wave: Wave
) -> None:
    gate = bearer(await issue_token(admin, "gate", enterprise_id=wave.enterprise_a))
    supervisor = bearer(await issue_token(admin, "supervisor"))
    recruiter = bearer(await issue_token(admin, "recruiter"))
    roster_a = f"/v1/enterprises/{wave.enterprise_a}/roster"
    roster_c = f"/v1/enterprises/{wave.enterprise_c}/roster"
    trip = f"/v1/trips/{wave.trip_id}"
    an_alert = (await get_json(admin, "/v1/alerts", enterprise_id=wave.enterprise_c))["alerts"][0]
    acknowledge = f"/v1/alerts/{an_alert['alert_id']}/acknowledge"

    async with httpx.AsyncClient(base_url=system.url, timeout=30) as client:

        async def status_of(method: str, path: str, headers: dict[str, str], **kw: Any) -> int:
            response = await client.request(method, path, headers=headers, **kw)
            if response.status_code >= 400:
                assert_error_body(response)
            return response.status_code

        gate_alerts = await client.get("/v1/alerts", params={"status": "all"}, headers=gate)
        assert gate_alerts.status_code == 200
        assert gate_alerts.json()["alerts"]
        assert {a["enterprise_id"] for a in gate_alerts.json()["alerts"]} == {wave.enterprise_a}

        note = {"json": {"note": "checked"}}
        assert {
            "supervisor roster": await status_of("GET", roster_a, supervisor),
            "supervisor trip": await status_of("GET", trip, supervisor),
            "supervisor alerts": await status_of("GET", "/v1/alerts", supervisor),
            "supervisor acknowledges": await status_of("POST", acknowledge, supervisor, **note),
            "gate own roster": await status_of("GET", roster_a, gate),
            "gate other roster": await status_of("GET", roster_c, gate),
            "gate trip": await status_of("GET", trip, gate),
            "gate other alerts": await status_of(
                "GET", f"/v1/alerts?enterprise_id={wave.enterprise_c}", gate
            ),
            "gate acknowledges": await status_of("POST", acknowledge, gate, **note),
            "recruiter roster": await status_of("GET", roster_a, recruiter),
            "recruiter trip": await status_of("GET", trip, recruiter),
            "recruiter alerts": await status_of("GET", "/v1/alerts", recruiter),
            "recruiter acknowledges": await status_of("POST", acknowledge, recruiter, **note),
            "anonymous roster": await status_of("GET", roster_a, {}),
        } == {
            "supervisor roster": 200,
            "supervisor trip": 200,
            "supervisor alerts": 200,
            "supervisor acknowledges": 200,
            "gate own roster": 200,
            "gate other roster": 404,
            "gate trip": 403,
            "gate other alerts": 403,
            "gate acknowledges": 403,
            "recruiter roster": 403,
            "recruiter trip": 403,
            "recruiter alerts": 403,
            "recruiter acknowledges": 403,
            "anonymous roster": 401,
        }
