"""Bad requests, bearer tokens and role scopes of the HTTP API, against the running system."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import RunningSystem, running_system
from tests.support.api import (
    assert_error_body,
    bearer,
    is_known,
    issue_token,
    wait_for_view,
    worker_ref_of,
)
from tests.support.servers import random_id_number, running_servers, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def scan(id_number: str, kind: str, **fields: Any) -> dict[str, Any]:
    """A valid scan of ``kind``; ``fields`` override or add to the defaults."""
    needs: dict[str, Any] = {
        "departure_check": {"temperature_c": 36.5, "health_code": "green"},
        "boarding": {"trip_id": "B-0001"},
        "arrival_check": {"temperature_c": 36.4, "health_code": "green"},
        "checkin": {"enterprise_id": "E0001"},
    }
    return {
        "scan_id": unique("scan"),
        "kind": kind,
        "id_number": id_number,
        "occurred_at": "2020-03-01T06:00:00+08:00",
        "station": "测试站",
        **needs[kind],
        **fields,
    }


def manifest_for(id_number: str, enterprise_id: str) -> dict[str, Any]:
    return {
        "enterprises": [{"enterprise_id": enterprise_id, "name": "瓯海服装厂", "shortage": 30}],
        "workers": [{"id_number": id_number, "name": "李四", "enterprise_id": enterprise_id}],
    }


def is_client_error(response: httpx.Response) -> bool:
    return 400 <= response.status_code < 500


def statuses(response: httpx.Response) -> list[tuple[str, str | None]]:
    return [(r["status"], r.get("reason")) for r in response.json()["results"]]


# --- authentication -----------------------------------------------------------------


async def test_a_request_without_a_token_is_unauthorized(anonymous: httpx.AsyncClient) -> None:
    id_number = random_id_number()
    responses = [
        await anonymous.post("/v1/scans", json=scan(id_number, "departure_check")),
        await anonymous.post("/v1/workers/lookup", json={"id_number": id_number}),
        await anonymous.get("/v1/workers/w_0123456789abcdef01234567"),
        await anonymous.post("/v1/manifests", json=manifest_for(id_number, unique("E"))),
        await anonymous.post("/v1/tokens", json={"role": "supervisor"}),
    ]

    for response in responses:
        assert response.status_code == 401, response.request.url
        assert_error_body(response)


async def test_a_wrong_token_is_unauthorized(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post(
        "/v1/workers/lookup",
        json={"id_number": random_id_number()},
        headers=bearer("rl_not-a-token-anyone-issued"),
    )

    assert response.status_code == 401
    assert_error_body(response)


async def test_an_issued_token_stops_working_once_it_expires(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    token = await issue_token(admin, "supervisor", expires_in_hours=0.0005)  # 1.8 s

    async def read_unknown_worker() -> httpx.Response:
        return await anonymous.post(
            "/v1/workers/lookup", json={"id_number": random_id_number()}, headers=bearer(token)
        )

    assert (await read_unknown_worker()).status_code == 404
    response = await eventually(
        read_unknown_worker,
        lambda r: r.status_code != 404,
        what="the token to expire",
    )
    assert response.status_code == 401
    assert_error_body(response)


# --- malformed bodies ---------------------------------------------------------------


async def test_a_body_that_is_not_json_is_a_bad_request(admin: httpx.AsyncClient) -> None:
    response = await admin.post(
        "/v1/scans", content=b'{"scan_id": "s-1", ', headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert_error_body(response)


@pytest.mark.parametrize(
    "body",
    [[], [{"scan_id": "s-1"}], "a scan", 42, None],
    ids=["empty list", "list of scans", "string", "number", "null"],
)
async def test_a_body_that_is_neither_a_scan_nor_a_batch_is_a_client_error(
    admin: httpx.AsyncClient, body: Any
) -> None:
    response = await admin.post("/v1/scans", json=body)

    assert is_client_error(response), response.text
    assert_error_body(response)


@pytest.mark.parametrize("scans", ["x", {"scan_id": "s-1"}, None, 7])
async def test_a_batch_whose_scans_are_not_a_list_is_a_client_error(
    admin: httpx.AsyncClient, scans: Any
) -> None:
    response = await admin.post("/v1/scans", json={"scans": scans})

    assert is_client_error(response), response.text
    assert_error_body(response)


async def test_a_batch_of_more_than_1000_scans_is_too_large(admin: httpx.AsyncClient) -> None:
    id_number = random_id_number()
    batch = [scan(id_number, "departure_check", temperature_c=50) for _ in range(1001)]

    response = await admin.post("/v1/scans", json={"scans": batch})

    assert response.status_code == 413
    assert_error_body(response)


async def test_a_batch_of_exactly_1000_scans_answers_1000_results(
    admin: httpx.AsyncClient,
) -> None:
    id_number = random_id_number()
    batch = [scan(id_number, "departure_check", temperature_c=50) for _ in range(1000)]

    response = await admin.post("/v1/scans", json={"scans": batch})

    assert response.status_code == 202
    assert [r["scan_id"] for r in response.json()["results"]] == [s["scan_id"] for s in batch]


@pytest.mark.parametrize(
    "id_number",
    ["520502199001011234X", "52050219900101123", "52050219901301123X", 520502199001011234, None],
    ids=["too long", "too short", "month 13", "a number", "null"],
)
async def test_a_lookup_with_an_invalid_id_number_is_a_client_error(
    admin: httpx.AsyncClient, id_number: Any
) -> None:
    response = await admin.post("/v1/workers/lookup", json={"id_number": id_number})

    assert is_client_error(response), response.text
    assert_error_body(response)


async def test_a_lookup_with_a_wrong_check_digit_is_a_client_error(
    admin: httpx.AsyncClient,
) -> None:
    id_number = random_id_number()
    wrong = id_number[:-1] + next(c for c in "0123456789X" if c != id_number[-1])

    response = await admin.post("/v1/workers/lookup", json={"id_number": wrong})

    assert is_client_error(response), response.text
    assert_error_body(response)


async def test_a_lookup_whose_body_is_not_json_is_a_client_error(
    admin: httpx.AsyncClient,
) -> None:
    response = await admin.post(
        "/v1/workers/lookup", content=b"id_number=1", headers={"Content-Type": "application/json"}
    )

    assert is_client_error(response), response.text
    assert_error_body(response)


async def test_a_manifest_with_an_invalid_id_number_names_the_worker_and_changes_nothing(
    admin: httpx.AsyncClient,
) -> None:
    valid, invalid = random_id_number(), random_id_number()
    manifest = manifest_for(valid, unique("E"))
    manifest["workers"].append({**manifest["workers"][0], "id_number": invalid[:-1] + "Y"})

    response = await admin.post("/v1/manifests", json=manifest)

    assert is_client_error(response), response.text
    assert_error_body(response)
    assert "workers[1]" in response.json()["error"]["message"]
    lookup = await admin.post("/v1/workers/lookup", json={"id_number": valid})
    assert lookup.status_code == 404


async def test_a_trip_with_an_unknown_mode_is_unprocessable(admin: httpx.AsyncClient) -> None:
    trip = {
        "trip_id": unique("S"),
        "mode": "ship",
        "origin": "贵州毕节",
        "destination": "浙江温州",
        "departs_at": "2020-03-01T06:45:00+08:00",
        "eta": "2020-03-02T06:45:00+08:00",
    }

    response = await admin.post("/v1/manifests", json={"trips": [trip]})

    assert response.status_code == 422
    assert_error_body(response)


# --- tokens and roles ---------------------------------------------------------------


async def test_an_admin_issues_a_role_token(admin: httpx.AsyncClient) -> None:
    enterprise_id = unique("E")
    await admin.post("/v1/manifests", json=manifest_for(random_id_number(), enterprise_id))

    response = await admin.post(
        "/v1/tokens", json={"role": "gate", "enterprise_id": enterprise_id, "expires_in_hours": 2}
    )

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"token", "token_id", "role", "enterprise_id", "expires_at"}
    assert body["role"] == "gate"
    assert body["enterprise_id"] == enterprise_id
    assert isinstance(body["token"], str) and body["token"]
    assert body["token_id"] not in body["token"]  # a name for the token, not part of it
    assert datetime.fromisoformat(body["expires_at"]) > datetime.now(UTC)


async def test_a_revoked_token_is_unauthorized_from_then_on(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    issued = (await admin.post("/v1/tokens", json={"role": "supervisor"})).json()
    headers = bearer(issued["token"])
    assert (await anonymous.get("/v1/alerts", headers=headers)).status_code == 200

    revoked = await admin.delete(f"/v1/tokens/{issued['token_id']}")

    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["token_id"] == issued["token_id"]
    refused = await anonymous.get("/v1/alerts", headers=headers)
    assert refused.status_code == 401
    assert_error_body(refused)
    again = await admin.delete(f"/v1/tokens/{issued['token_id']}")
    assert again.status_code == 200  # revoking twice is harmless and keeps the first time
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]


async def test_revoking_an_unknown_token_is_not_found(admin: httpx.AsyncClient) -> None:
    for token_id in ("tok_0123456789abcdef", "not-a-token-id", "rl_" + "x" * 40):
        response = await admin.delete(f"/v1/tokens/{token_id}")

        assert response.status_code == 404, token_id
        assert_error_body(response)


async def test_revocations_are_in_the_audit_log(admin: httpx.AsyncClient) -> None:
    token_id = (await admin.post("/v1/tokens", json={"role": "recruiter"})).json()["token_id"]

    await admin.delete(f"/v1/tokens/{token_id}")

    entries = await eventually(
        lambda: _all_audit_entries(admin),
        lambda entries: any(e["detail"] == token_id for e in entries),
        what="the revocation in the audit log",
    )
    entry = next(e for e in entries if e["detail"] == token_id)
    assert entry["action"] == "revoke_token" and entry["role"] == "admin"


async def _all_audit_entries(admin: httpx.AsyncClient) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        page = (await admin.get("/v1/audit", params={"after": after, "limit": 500})).json()
        entries.extend(page["entries"])
        if page["next_after"] is None:
            return entries
        after = page["next_after"]


async def test_a_gate_token_needs_an_enterprise(admin: httpx.AsyncClient) -> None:
    response = await admin.post("/v1/tokens", json={"role": "gate"})

    assert response.status_code == 422
    assert_error_body(response)


async def test_only_an_admin_may_issue_tokens(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    supervisor = await issue_token(admin, "supervisor")

    response = await anonymous.post(
        "/v1/tokens", json={"role": "admin"}, headers=bearer(supervisor)
    )

    assert response.status_code == 403
    assert_error_body(response)


async def test_only_an_admin_may_post_manifests(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    id_number, enterprise_id = random_id_number(), unique("E")
    supervisor = await issue_token(admin, "supervisor")

    response = await anonymous.post(
        "/v1/manifests", json=manifest_for(id_number, enterprise_id), headers=bearer(supervisor)
    )

    assert response.status_code == 403
    assert_error_body(response)
    assert (
        await admin.post("/v1/workers/lookup", json={"id_number": id_number})
    ).status_code == 404


async def test_a_recruiter_may_post_departure_checks_and_boardings_but_not_checkins(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    id_number = random_id_number()
    recruiter = await issue_token(admin, "recruiter")
    batch = [
        scan(id_number, "departure_check"),
        scan(id_number, "boarding", occurred_at="2020-03-01T06:30:00+08:00"),
        scan(id_number, "checkin", occurred_at="2020-03-01T21:00:00+08:00"),
    ]

    response = await anonymous.post("/v1/scans", json={"scans": batch}, headers=bearer(recruiter))

    assert response.status_code == 202
    assert statuses(response) == [
        ("accepted", None),
        ("accepted", None),
        ("rejected", "not_permitted"),
    ]
    view = await wait_for_view(
        admin,
        id_number,
        lambda v: is_known(v) and "boarding" in v["checkpoints"],
        what="the recruiter's scans to be applied",
    )
    assert set(view["checkpoints"]) == {"departure_check", "boarding"}


async def test_a_gate_may_check_in_only_at_its_own_enterprise(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    id_number, own, other = random_id_number(), unique("E"), unique("E")
    await admin.post("/v1/manifests", json=manifest_for(random_id_number(), own))
    gate = await issue_token(admin, "gate", enterprise_id=own)
    batch = [
        scan(id_number, "checkin", enterprise_id=own),
        scan(id_number, "checkin", enterprise_id=other),
        scan(id_number, "arrival_check"),
    ]

    response = await anonymous.post("/v1/scans", json={"scans": batch}, headers=bearer(gate))

    assert response.status_code == 202
    assert statuses(response) == [
        ("accepted", None),
        ("rejected", "not_permitted"),
        ("rejected", "not_permitted"),
    ]


async def test_a_gate_cannot_read_a_worker_of_another_enterprise(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    id_number, own, other = random_id_number(), unique("E"), unique("E")
    await admin.post("/v1/manifests", json=manifest_for(id_number, other))
    await admin.post("/v1/manifests", json=manifest_for(random_id_number(), own))
    worker_ref = await worker_ref_of(admin, id_number)
    own_gate = await issue_token(admin, "gate", enterprise_id=own)
    others_gate = await issue_token(admin, "gate", enterprise_id=other)

    by_reference = await anonymous.get(f"/v1/workers/{worker_ref}", headers=bearer(own_gate))
    by_id_number = await anonymous.post(
        "/v1/workers/lookup", json={"id_number": id_number}, headers=bearer(own_gate)
    )

    for response in (by_reference, by_id_number):
        assert response.status_code == 404
        assert_error_body(response)
    own_read = await anonymous.get(f"/v1/workers/{worker_ref}", headers=bearer(others_gate))
    assert own_read.status_code == 200
    assert own_read.json()["worker_ref"] == worker_ref


async def test_a_supervisor_may_read_any_worker(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    id_number = random_id_number()
    await admin.post("/v1/manifests", json=manifest_for(id_number, unique("E")))
    worker_ref = await worker_ref_of(admin, id_number)
    supervisor = await issue_token(admin, "supervisor")

    by_reference = await anonymous.get(f"/v1/workers/{worker_ref}", headers=bearer(supervisor))
    by_id_number = await anonymous.post(
        "/v1/workers/lookup", json={"id_number": id_number}, headers=bearer(supervisor)
    )

    assert by_reference.status_code == 200
    assert by_id_number.status_code == 200
    assert by_reference.json() == by_id_number.json()


async def test_a_supervisor_may_not_post_scans(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    supervisor = await issue_token(admin, "supervisor")

    response = await anonymous.post(
        "/v1/scans", json=scan(random_id_number(), "departure_check"), headers=bearer(supervisor)
    )

    assert response.status_code == 202
    assert statuses(response) == [("rejected", "not_permitted")]


# --- input that must never reach a server error -------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/workers/w_%00abc", None),
        ("POST", "/v1/manifests", {"enterprises": [{"enterprise_id": "E\u0000", "name": "x"}]}),
        ("POST", "/v1/tokens", {"role": "gate", "enterprise_id": "E\u0000"}),
    ],
    ids=["worker_ref", "manifest enterprise_id", "token enterprise_id"],
)
async def test_text_with_a_nul_character_is_a_client_error(
    admin: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    response = await admin.request(method, path, json=body)

    assert is_client_error(response), response.text
    assert_error_body(response)


@pytest.mark.parametrize("listed_twice", ["enterprises", "trips", "workers"])
async def test_a_manifest_listing_an_entry_twice_is_not_a_server_error(
    admin: httpx.AsyncClient, listed_twice: str
) -> None:
    id_number, enterprise_id = random_id_number(), unique("E")
    manifest: dict[str, Any] = {
        **manifest_for(id_number, enterprise_id),
        "trips": [
            {
                "trip_id": unique("B"),
                "mode": "bus",
                "origin": "贵州毕节",
                "destination": "浙江温州",
                "departs_at": "2020-03-01T06:45:00+08:00",
                "eta": "2020-03-01T19:30:00+08:00",
            }
        ],
    }
    manifest[listed_twice] = manifest[listed_twice] * 2

    response = await admin.post("/v1/manifests", json=manifest)

    assert response.status_code < 500, response.text
    if is_client_error(response):
        assert_error_body(response)


async def test_a_trip_time_out_of_range_is_not_a_server_error(admin: httpx.AsyncClient) -> None:
    trip = {
        "trip_id": unique("B"),
        "mode": "train",
        "origin": "贵州毕节",
        "destination": "浙江温州",
        "departs_at": "0001-01-01T00:00:00+14:00",
        "eta": "2020-03-02T06:45:00+08:00",
    }

    response = await admin.post("/v1/manifests", json={"trips": [trip]})

    assert response.status_code < 500, response.text
    if is_client_error(response):
        assert_error_body(response)


# --- input that could stall the tracker: on servers of its own ----------------------


@pytest.fixture
def isolated_system(tmp_path: Path) -> Iterator[RunningSystem]:
    """A tracker and an API on embedded servers of their own, so that a scan that
    stalls the tracker cannot stall the tracker every other test shares."""
    with (
        running_servers(tmp_path, own_embedded=True) as servers,
        running_system(servers, tmp_path) as system,
    ):
        yield system


@pytest.mark.parametrize(
    "odd_field",
    [{"occurred_at": "0001-01-01T00:00:00+14:00"}, {"station": "门岗\u00001"}],
    ids=["occurred_at before year 1 in UTC", "station with a nul character"],
)
async def test_a_scan_the_api_takes_never_stops_the_tracker_applying_later_scans(
    isolated_system: RunningSystem, odd_field: dict[str, str]
) -> None:
    headers = bearer(isolated_system.admin_token)
    async with httpx.AsyncClient(base_url=isolated_system.url, headers=headers) as admin:
        odd = scan(random_id_number(), "departure_check", **odd_field)
        later_worker = random_id_number()
        await admin.post("/v1/scans", json=odd)

        response = await admin.post("/v1/scans", json=scan(later_worker, "departure_check"))

        assert response.status_code == 202
        await wait_for_view(
            admin, later_worker, is_known, within=20, what="the later scan to be applied"
        )
