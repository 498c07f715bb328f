"""Every endpoint × every role (and no token): who is let through, who is refused, in one table.

The table is checked against the served OpenAPI schema, so an endpoint added
without a row here fails ``test_every_endpoint_in_the_schema_has_a_row``.
A gate token is bound to one enterprise: another enterprise's worker is "not
found" to it on every path that names a worker, a code or an enterprise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import RunningSystem
from tests.support.servers import random_id_number, unique

pytestmark = pytest.mark.e2e

PRINCIPALS = ("none", "recruiter", "health_station", "gate", "supervisor", "integrator", "admin")
ROLES = PRINCIPALS[1:]
ACCEPTED, REJECTED = "accepted", "rejected"  # one scan's result in a 202 answer


@dataclass(frozen=True)
class Worker:
    id_number: str
    worker_ref: str
    health_code_id: str
    ssc_card_no: str


@dataclass
class World:
    """What the matrix reads and writes: two enterprises, a worker in each, one token a role.

    The gate token serves ``own``; ``other`` is another employer's.
    """

    admin: httpx.Client  # the bootstrap admin, to set things up
    own: str
    other: str
    trip_id: str
    own_worker: Worker
    other_worker: Worker
    alert_id: int
    tokens: dict[str, str] = field(default_factory=dict)


Expect = dict[str, int | str]
Build = Callable[[World], dict[str, Any]]


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # as the OpenAPI schema names it
    case: str
    build: Build  # the request: url, and json or params
    expect: Expect  # principal -> HTTP status, or ACCEPTED / REJECTED for one scan


def only(*roles: str, ok: int | str = 200) -> Expect:
    """``roles`` get ``ok``, other roles 403, no token 401."""
    return {"none": 401, **{role: ok if role in roles else 403 for role in ROLES}}


def every_role(ok: int | str = 200) -> Expect:
    return only(*ROLES, ok=ok)


def public() -> Expect:
    return dict.fromkeys(PRINCIPALS, 200)


def scans_of(accepted_by: tuple[str, ...]) -> Expect:
    return {
        "none": 401,
        **{role: ACCEPTED if role in accepted_by else REJECTED for role in ROLES},
    }


def scan(world: World, kind: str, worker: Worker, **fields: Any) -> dict[str, Any]:
    needs: dict[str, dict[str, Any]] = {
        "departure_check": {"temperature_c": 36.5, "health_code": "green"},
        "boarding": {"trip_id": world.trip_id},
        "arrival_check": {"temperature_c": 36.4, "health_code": "green"},
        "checkin": {"enterprise_id": world.own},
    }
    return {
        "url": "/v1/scans",
        "json": {
            "scan_id": unique("matrix"),
            "kind": kind,
            "id_number": worker.id_number,
            "occurred_at": "2020-03-01T06:00:00+08:00",
            "station": "matrix",
            **needs[kind],
            **fields,
        },
    }


def fresh_link(world: World) -> dict[str, str]:
    return {
        "id_number": random_id_number(),
        "health_code_id": unique("hc").replace("-", "_"),
        "ssc_card_no": "M" + unique("").replace("-", "")[:12].upper(),
    }


def linked_code(world: World) -> str:
    body = fresh_link(world)
    response = world.admin.post("/v1/links", json=body)
    assert response.status_code == 201, response.text
    return body["health_code_id"]


def fresh_token_id(world: World) -> str:
    response = world.admin.post("/v1/tokens", json={"role": "recruiter"})
    assert response.status_code == 201, response.text
    token_id: str = response.json()["token_id"]
    return token_id


def fresh_webhook_id(world: World) -> str:
    """A registration for an enterprise that never has events: nothing is ever sent to it."""
    body = {
        "url": "http://127.0.0.1:9/matrix",
        "event_kinds": ["transition"],
        "enterprise_id": "matrix-no-such-enterprise",
    }
    response = world.admin.post("/v1/webhooks", json=body)
    assert response.status_code == 201, response.text
    webhook_id: str = response.json()["webhook_id"]
    return webhook_id


def gate_decision(world: World, enterprise_id: str, **identifier: str) -> dict[str, Any]:
    return {"url": "/v1/gate/decision", "json": {**identifier, "enterprise_id": enterprise_id}}


def decision(world: World, kind: str, worker: Worker, enterprise_id: str) -> dict[str, Any]:
    return {
        "url": "/v1/decisions",
        "json": {
            "kind": kind,
            "code": worker.health_code_id,
            "trip_id": world.trip_id,
            "enterprise_id": enterprise_id,
        },
    }


def worker_sheet(world: World) -> dict[str, Any]:
    sheet = (
        "id_number,name,enterprise_id,trip_id,travel,expected_arrival\n"
        f"{random_id_number()},矩阵导入,{world.own},,organised,\n"
    )
    return {
        "url": "/v1/manifests/import",
        "content": sheet.encode(),
        "headers": {"Content-Type": "text/csv; charset=utf-8"},
    }


def colour_update(world: World, **worker: str) -> dict[str, Any]:
    # Before the world's scans: it changes no state another row reads.
    update = {**worker, "health_code": "green", "as_of": "2020-03-01T04:00:00+08:00"}
    return {"url": "/v1/healthcode/updates", "json": {"updates": [update]}}


# Gates read their own enterprise only; supervisors and admins read all; the
# scanning roles read one worker's loop (the checkpoint shows it) but no lists.
# An integrator feeds manifests and colours and reads no one.
READ_A_WORKER = only("recruiter", "health_station", "gate", "supervisor", "admin")
READ_ANOTHER_ENTERPRISES_WORKER = {**READ_A_WORKER, "gate": 404}

ROWS: tuple[Row, ...] = (
    Row("POST", "/v1/scans", "departure_check", lambda w: scan(w, "departure_check", w.own_worker),
        scans_of(("recruiter", "admin"))),
    Row("POST", "/v1/scans", "boarding", lambda w: scan(w, "boarding", w.own_worker),
        scans_of(("recruiter", "admin"))),
    Row("POST", "/v1/scans", "arrival_check", lambda w: scan(w, "arrival_check", w.own_worker),
        scans_of(("health_station", "admin"))),
    Row("POST", "/v1/scans", "checkin at the gate's enterprise",
        lambda w: scan(w, "checkin", w.own_worker), scans_of(("gate", "admin"))),
    Row("POST", "/v1/scans", "checkin at another enterprise",
        lambda w: scan(w, "checkin", w.other_worker, enterprise_id=w.other),
        scans_of(("admin",))),
    Row("POST", "/v1/manifests", "an enterprise",
        lambda w: {"url": "/v1/manifests", "json": {"enterprises": [
            {"enterprise_id": unique("E"), "name": "矩阵厂", "shortage": 1}]}},
        only("admin", "integrator")),
    Row("GET", "/v1/manifests/template", "as CSV", lambda w: {"url": "/v1/manifests/template"},
        only("admin", "integrator")),
    Row("POST", "/v1/manifests/import", "a CSV sheet of one worker", worker_sheet,
        only("admin", "integrator")),
    Row("POST", "/v1/healthcode/updates", "by ID number",
        lambda w: colour_update(w, id_number=w.own_worker.id_number),
        only("integrator", "admin", ok=202)),
    Row("POST", "/v1/healthcode/updates", "by card number",
        lambda w: colour_update(w, code=w.other_worker.ssc_card_no),
        only("integrator", "admin", ok=202)),
    Row("POST", "/v1/decisions", "departure_check",
        lambda w: decision(w, "departure_check", w.own_worker, w.own), only("recruiter", "admin")),
    Row("POST", "/v1/decisions", "boarding",
        lambda w: decision(w, "boarding", w.own_worker, w.own), only("recruiter", "admin")),
    Row("POST", "/v1/decisions", "arrival_check",
        lambda w: decision(w, "arrival_check", w.own_worker, w.own),
        only("health_station", "admin")),
    Row("POST", "/v1/decisions", "checkin at the gate's enterprise",
        lambda w: decision(w, "checkin", w.own_worker, w.own), only("gate", "admin")),
    # Answered (allow: false, the loop's details withheld) so the gate can turn them away.
    Row("POST", "/v1/decisions", "checkin of another enterprise's worker at the gate's",
        lambda w: decision(w, "checkin", w.other_worker, w.own), only("gate", "admin")),
    Row("POST", "/v1/decisions", "checkin at another enterprise",
        lambda w: decision(w, "checkin", w.other_worker, w.other), only("admin")),
    Row("POST", "/v1/workers/lookup", "own enterprise's worker",
        lambda w: {"url": "/v1/workers/lookup", "json": {"id_number": w.own_worker.id_number}},
        READ_A_WORKER),
    Row("POST", "/v1/workers/lookup", "another enterprise's worker",
        lambda w: {"url": "/v1/workers/lookup", "json": {"id_number": w.other_worker.id_number}},
        READ_ANOTHER_ENTERPRISES_WORKER),
    Row("GET", "/v1/workers/{worker_ref}", "own enterprise's worker",
        lambda w: {"url": f"/v1/workers/{w.own_worker.worker_ref}"}, READ_A_WORKER),
    Row("GET", "/v1/workers/{worker_ref}", "another enterprise's worker",
        lambda w: {"url": f"/v1/workers/{w.other_worker.worker_ref}"},
        READ_ANOTHER_ENTERPRISES_WORKER),
    Row("POST", "/v1/workers/{worker_ref}/reveal", "own enterprise's worker",
        lambda w: {"url": f"/v1/workers/{w.own_worker.worker_ref}/reveal",
                   "json": {"reason": "role matrix"}}, only("admin")),
    Row("POST", "/v1/workers/{worker_ref}/reveal", "another enterprise's worker",
        lambda w: {"url": f"/v1/workers/{w.other_worker.worker_ref}/reveal",
                   "json": {"reason": "role matrix"}}, only("admin")),
    Row("POST", "/v1/tokens", "a supervisor token",
        lambda w: {"url": "/v1/tokens", "json": {"role": "supervisor", "expires_in_hours": 1}},
        only("admin", ok=201)),
    # A scope the role cannot use is refused, never ignored (a supervisor's is a district).
    Row("POST", "/v1/tokens", "a supervisor token scoped to an enterprise",
        lambda w: {"url": "/v1/tokens", "json": {"role": "supervisor", "enterprise_id": w.own}},
        only("admin", ok=422)),
    Row("POST", "/v1/tokens", "a gate token for the world's enterprise",
        lambda w: {"url": "/v1/tokens", "json": {"role": "gate", "enterprise_id": w.own}},
        only("admin", ok=201)),
    Row("POST", "/v1/tokens", "a gate token for an enterprise on no manifest",
        lambda w: {"url": "/v1/tokens", "json": {"role": "gate", "enterprise_id": unique("E-no")}},
        only("admin", ok=422)),
    Row("DELETE", "/v1/tokens/{token_id}", "a recruiter token",
        lambda w: {"url": f"/v1/tokens/{fresh_token_id(w)}"}, only("admin")),
    Row("POST", "/v1/links", "a new worker's codes",
        lambda w: {"url": "/v1/links", "json": fresh_link(w)}, only("admin", "recruiter", ok=201)),
    Row("POST", "/v1/links/unlink", "a bound code",
        lambda w: {"url": "/v1/links/unlink",
                   "json": {"code": linked_code(w), "reason": "role matrix"}}, only("admin")),
    Row("POST", "/v1/links/resolve", "own enterprise's worker's code",
        lambda w: {"url": "/v1/links/resolve", "json": {"code": w.own_worker.health_code_id}},
        READ_A_WORKER),
    Row("POST", "/v1/links/resolve", "another enterprise's worker's card",
        lambda w: {"url": "/v1/links/resolve", "json": {"code": w.other_worker.ssc_card_no}},
        READ_ANOTHER_ENTERPRISES_WORKER),
    Row("GET", "/v1/links/{worker_ref}/history", "own enterprise's worker",
        lambda w: {"url": f"/v1/links/{w.own_worker.worker_ref}/history"}, only("admin")),
    Row("GET", "/v1/audit", "the first page", lambda w: {"url": "/v1/audit"}, only("admin")),
    Row("POST", "/v1/gate/decision", "own worker at the gate's enterprise",
        lambda w: gate_decision(w, w.own, code=w.own_worker.health_code_id),
        only("gate", "supervisor", "admin")),
    # Answered (allow: false, the loop's details withheld) so the gate can turn them away.
    Row("POST", "/v1/gate/decision", "another enterprise's worker at the gate's enterprise",
        lambda w: gate_decision(w, w.own, id_number=w.other_worker.id_number),
        only("gate", "supervisor", "admin")),
    Row("POST", "/v1/gate/decision", "for another enterprise",
        lambda w: gate_decision(w, w.other, code=w.other_worker.health_code_id),
        {**only("gate", "supervisor", "admin"), "gate": 403}),
    Row("GET", "/v1/enterprises", "all", lambda w: {"url": "/v1/enterprises"},
        only("supervisor", "admin")),
    Row("GET", "/v1/enterprises/{enterprise_id}/roster", "the gate's enterprise",
        lambda w: {"url": f"/v1/enterprises/{w.own}/roster"},
        only("gate", "supervisor", "admin")),
    Row("GET", "/v1/enterprises/{enterprise_id}/roster", "another enterprise",
        lambda w: {"url": f"/v1/enterprises/{w.other}/roster"},
        {**only("gate", "supervisor", "admin"), "gate": 404}),
    Row("GET", "/v1/enterprises/{enterprise_id}/not_back", "the gate's enterprise",
        lambda w: {"url": f"/v1/enterprises/{w.own}/not_back"},
        only("gate", "supervisor", "admin")),
    Row("GET", "/v1/enterprises/{enterprise_id}/not_back", "another enterprise",
        lambda w: {"url": f"/v1/enterprises/{w.other}/not_back"},
        {**only("gate", "supervisor", "admin"), "gate": 404}),
    Row("GET", "/v1/enterprises/{enterprise_id}/daily", "the gate's enterprise",
        lambda w: {"url": f"/v1/enterprises/{w.own}/daily"},
        only("gate", "supervisor", "admin")),
    Row("GET", "/v1/enterprises/{enterprise_id}/daily", "another enterprise",
        lambda w: {"url": f"/v1/enterprises/{w.other}/daily"},
        {**only("gate", "supervisor", "admin"), "gate": 404}),
    Row("GET", "/v1/districts", "all", lambda w: {"url": "/v1/districts"},
        only("supervisor", "admin")),
    Row("GET", "/v1/subsidies", "no filter", lambda w: {"url": "/v1/subsidies"},
        only("gate", "supervisor", "admin")),
    Row("GET", "/v1/subsidies", "another enterprise",
        lambda w: {"url": "/v1/subsidies", "params": {"enterprise_id": w.other}},
        {**only("gate", "supervisor", "admin"), "gate": 403}),
    Row("POST", "/v1/workers/{worker_ref}/dispositions", "isolation of own enterprise's worker",
        lambda w: {"url": f"/v1/workers/{w.own_worker.worker_ref}/dispositions",
                   "json": {"kind": "isolation", "note": "role matrix"}},
        only("health_station", "supervisor", "admin", ok=201)),
    Row("POST", "/v1/workers/{worker_ref}/dispositions", "observation of another's worker",
        lambda w: {"url": f"/v1/workers/{w.other_worker.worker_ref}/dispositions",
                   "json": {"kind": "medical_observation", "note": "role matrix"}},
        only("health_station", "supervisor", "admin", ok=201)),
    Row("GET", "/v1/subsidies", "the gate's enterprise as CSV",
        lambda w: {"url": "/v1/subsidies", "params": {"enterprise_id": w.own, "format": "csv"}},
        only("gate", "supervisor", "admin")),
    Row("GET", "/v1/subsidies", "another enterprise as XLSX",
        lambda w: {"url": "/v1/subsidies", "params": {"enterprise_id": w.other, "format": "xlsx"}},
        {**only("gate", "supervisor", "admin"), "gate": 403}),
    Row("GET", "/v1/held", "no filter", lambda w: {"url": "/v1/held"},
        only("gate", "supervisor", "admin")),
    Row("GET", "/v1/held", "the gate's enterprise",
        lambda w: {"url": "/v1/held", "params": {"enterprise_id": w.own}},
        only("gate", "supervisor", "admin")),
    Row("GET", "/v1/held", "another enterprise",
        lambda w: {"url": "/v1/held", "params": {"enterprise_id": w.other}},
        {**only("gate", "supervisor", "admin"), "gate": 403}),
    Row("GET", "/v1/trips", "all", lambda w: {"url": "/v1/trips"}, only("supervisor", "admin")),
    Row("GET", "/v1/trips/{trip_id}", "the worlds' trip",
        lambda w: {"url": f"/v1/trips/{w.trip_id}"}, only("supervisor", "admin")),
    Row("GET", "/v1/alerts", "no filter", lambda w: {"url": "/v1/alerts"},
        only("gate", "supervisor", "admin")),
    Row("GET", "/v1/alerts", "the gate's enterprise",
        lambda w: {"url": "/v1/alerts", "params": {"enterprise_id": w.own, "status": "all"}},
        only("gate", "supervisor", "admin")),
    Row("GET", "/v1/alerts", "another enterprise",
        lambda w: {"url": "/v1/alerts", "params": {"enterprise_id": w.other, "status": "all"}},
        {**only("gate", "supervisor", "admin"), "gate": 403}),
    Row("POST", "/v1/alerts/{alert_id}/acknowledge", "an alert of the gate's enterprise",
        lambda w: {"url": f"/v1/alerts/{w.alert_id}/acknowledge", "json": {"note": "matrix"}},
        only("supervisor", "admin")),
    Row("POST", "/v1/webhooks", "a receiver of one enterprise's transitions",
        lambda w: {"url": "/v1/webhooks",
                   "json": {"url": "https://receiver.example/hook", "event_kinds": ["transition"],
                            "enterprise_id": "matrix-no-such-enterprise"}},
        only("admin", ok=201)),
    Row("GET", "/v1/webhooks", "all", lambda w: {"url": "/v1/webhooks"}, only("admin")),
    Row("POST", "/v1/webhooks/{webhook_id}/disable", "a registration",
        lambda w: {"url": f"/v1/webhooks/{fresh_webhook_id(w)}/disable"}, only("admin")),
    Row("POST", "/v1/webhooks/{webhook_id}/enable", "a registration",
        lambda w: {"url": f"/v1/webhooks/{fresh_webhook_id(w)}/enable"}, only("admin")),
    Row("DELETE", "/v1/webhooks/{webhook_id}", "a registration",
        lambda w: {"url": f"/v1/webhooks/{fresh_webhook_id(w)}"}, only("admin")),
    Row("GET", "/v1/webhooks/{webhook_id}/deliveries", "a registration's log",
        lambda w: {"url": f"/v1/webhooks/{fresh_webhook_id(w)}/deliveries"}, only("admin")),
    Row("GET", "/healthz", "", lambda w: {"url": "/healthz"}, public()),
    Row("GET", "/readyz", "", lambda w: {"url": "/readyz"}, public()),
    Row("GET", "/metrics", "", lambda w: {"url": "/metrics"}, public()),
)  # fmt: skip


def _worker(admin: httpx.Client, enterprise_id: str, trip_id: str) -> Worker:
    id_number = random_id_number()
    code, card = unique("hc").replace("-", "_"), "C" + unique("").replace("-", "")[:12].upper()
    manifest = {
        "workers": [
            {"id_number": id_number, "name": "王五", "enterprise_id": enterprise_id,
             "trip_id": trip_id}
        ]
    }  # fmt: skip
    assert admin.post("/v1/manifests", json=manifest).status_code == 200
    linked = admin.post(
        "/v1/links", json={"id_number": id_number, "health_code_id": code, "ssc_card_no": card}
    )
    assert linked.status_code == 201, linked.text
    return Worker(id_number, linked.json()["worker_ref"], code, card)


def _wait_for_alert(admin: httpx.Client, enterprise_id: str, within: float = 30) -> int:
    deadline = time.monotonic() + within
    while True:
        alerts = admin.get("/v1/alerts", params={"enterprise_id": enterprise_id}).json()["alerts"]
        if alerts:
            alert_id: int = alerts[0]["alert_id"]
            return alert_id
        assert time.monotonic() < deadline, "no alert was raised for the matrix's worker"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def world(system: RunningSystem) -> Iterator[World]:
    headers = {"Authorization": f"Bearer {system.admin_token}"}
    with httpx.Client(base_url=system.url, headers=headers, timeout=30) as admin:
        own, other, trip_id = unique("E-own"), unique("E-other"), unique("T")
        # In two districts: a district-scoped supervisor reads own's only (see the end).
        own_district = unique("区")
        manifest = {
            "enterprises": [
                {"enterprise_id": own, "name": "本厂", "shortage": 3, "district": own_district},
                {"enterprise_id": other, "name": "他厂", "shortage": 5, "district": unique("区")},
            ],
            "trips": [
                {"trip_id": trip_id, "mode": "bus", "origin": "贵州", "destination": "温州",
                 "departs_at": "2020-03-01T06:00:00+08:00", "eta": "2020-03-02T06:00:00+08:00"}
            ],
        }  # fmt: skip
        assert admin.post("/v1/manifests", json=manifest).status_code == 200
        own_worker, other_worker = _worker(admin, own, trip_id), _worker(admin, other, trip_id)
        fever = scan_body_with_fever(own_worker)
        assert admin.post("/v1/scans", json=fever).status_code == 202
        assert admin.post("/v1/scans", json=scan_body_with_fever(other_worker)).status_code == 202
        world = World(
            admin, own, other, trip_id, own_worker, other_worker, _wait_for_alert(admin, own)
        )
        _wait_for_alert(admin, other)
        for role in ROLES:
            body = {"role": role, **({"enterprise_id": own} if role == "gate" else {})}
            issued = admin.post("/v1/tokens", json=body)
            assert issued.status_code == 201, issued.text
            world.tokens[role] = issued.json()["token"]
        scoped = {"role": "supervisor", "district": own_district}
        issued = admin.post("/v1/tokens", json=scoped)
        assert issued.status_code == 201, issued.text
        world.tokens[DISTRICT_SUPERVISOR] = issued.json()["token"]
        yield world


def scan_body_with_fever(worker: Worker) -> dict[str, Any]:
    return {
        "scan_id": unique("matrix-fever"),
        "kind": "departure_check",
        "id_number": worker.id_number,
        "occurred_at": "2020-03-01T05:00:00+08:00",
        "station": "matrix",
        "temperature_c": 38.4,
        "health_code": "green",
    }


def call(system: RunningSystem, world: World, row: Row, principal: str) -> httpx.Response:
    request = row.build(world)
    headers = {"Authorization": f"Bearer {world.tokens[principal]}"} if principal != "none" else {}
    with httpx.Client(base_url=system.url, timeout=30) as client:
        return client.request(
            row.method,
            request["url"],
            json=request.get("json"),
            content=request.get("content"),
            params=request.get("params"),
            headers={**request.get("headers", {}), **headers},
        )


CASES = [
    pytest.param(row, principal, id=f"{row.method} {row.path} [{row.case}] as {principal}")
    for row in ROWS
    for principal in PRINCIPALS
]


@pytest.mark.parametrize(("row", "principal"), CASES)
def test_each_role_is_allowed_or_refused_as_the_table_says(
    system: RunningSystem, world: World, row: Row, principal: str
) -> None:
    expected = row.expect[principal]

    response = call(system, world, row, principal)

    if expected in (ACCEPTED, REJECTED):
        assert response.status_code == 202, response.text
        (result,) = response.json()["results"]
        assert result["status"] == expected, result
        if expected == REJECTED:
            assert result["reason"] == "not_permitted"
        return
    assert response.status_code == expected, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"] and error["message"]
    if row.path.startswith("/v1/"):  # personal data, or an answer about it: never cached
        assert response.headers["cache-control"] == "no-store", response.headers


def test_every_row_names_every_principal() -> None:
    incomplete = [
        f"{row.method} {row.path} [{row.case}]"
        for row in ROWS
        if set(row.expect) != set(PRINCIPALS)
    ]
    assert incomplete == []


def test_every_endpoint_in_the_schema_has_a_row(system: RunningSystem) -> None:
    schema = httpx.get(f"{system.url}/openapi.json", timeout=30).json()
    served = {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    in_table = {(row.method, row.path) for row in ROWS}

    assert served - in_table == set(), "endpoints with no row in the role matrix"
    assert in_table - served == set(), "rows for endpoints the API does not serve"


# --- what a gate sees of another enterprise ------------------------------------------


def gate_client(system: RunningSystem, world: World) -> httpx.Client:
    headers = {"Authorization": f"Bearer {world.tokens['gate']}"}
    return httpx.Client(base_url=system.url, headers=headers, timeout=30)


def test_a_gate_deciding_on_another_enterprises_worker_is_told_no_and_sees_no_details(
    system: RunningSystem, world: World
) -> None:
    with gate_client(system, world) as gate:
        for identifier in (
            {"id_number": world.other_worker.id_number},
            {"code": world.other_worker.health_code_id},
            {"code": world.other_worker.ssc_card_no},
        ):
            response = gate.post(
                "/v1/gate/decision", json={**identifier, "enterprise_id": world.own}
            )

            assert response.status_code == 200, response.text
            body = response.json()
            assert body["allow"] is False
            assert body["loop"]["checkpoints"] == {}
            assert body["loop"]["alerts"] == []
            assert body["loop"]["trip_id"] is None


def test_a_gate_lists_only_its_own_enterprises_alerts(system: RunningSystem, world: World) -> None:
    with gate_client(system, world) as gate:
        for status in ("open", "closed", "all"):
            response = gate.get("/v1/alerts", params={"status": status, "limit": 500})

            assert response.status_code == 200, response.text
            alerts = response.json()["alerts"]
            assert {alert["enterprise_id"] for alert in alerts} <= {world.own}
            if status == "all":  # the matrix's passing departure checks may have closed it
                assert world.alert_id in {alert["alert_id"] for alert in alerts}


def test_a_gate_cannot_acknowledge_or_reveal_even_its_own_workers(
    system: RunningSystem, world: World
) -> None:
    with gate_client(system, world) as gate:
        acknowledged = gate.post(
            f"/v1/alerts/{world.alert_id}/acknowledge", json={"note": "not mine to do"}
        )
        revealed = gate.post(
            f"/v1/workers/{world.own_worker.worker_ref}/reveal", json={"reason": "curious"}
        )

    assert acknowledged.status_code == 403
    assert revealed.status_code == 403


def test_a_gate_asking_before_a_checkin_sees_no_details_of_another_enterprises_worker(
    system: RunningSystem, world: World
) -> None:
    with gate_client(system, world) as gate:
        response = gate.post(
            "/v1/decisions",
            json={
                "kind": "checkin",
                "code": world.other_worker.ssc_card_no,
                "enterprise_id": world.own,
            },
        )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["allow"] is False
    assert "wrong_enterprise" in [reason["code"] for reason in body["reasons"]]
    assert body["loop"]["checkpoints"] == {}
    assert body["loop"]["alerts"] == []
    assert body["loop"]["trip_id"] is None


# --- a supervisor scoped to one district --------------------------------------------
# The world's enterprises lie in two districts; this supervisor's token is scoped to own's.
# It may do what any supervisor may, within its district: what names the other
# enterprise or its worker is "not found" to it, and it decides at no gate there.
DISTRICT_SUPERVISOR = "district_supervisor"
OUTSIDE_THE_DISTRICT: dict[tuple[str, str, str], int] = {
    ("POST", "/v1/workers/lookup", "another enterprise's worker"): 404,
    ("GET", "/v1/workers/{worker_ref}", "another enterprise's worker"): 404,
    ("POST", "/v1/links/resolve", "another enterprise's worker's card"): 404,
    ("POST", "/v1/gate/decision", "for another enterprise"): 403,
    ("GET", "/v1/enterprises/{enterprise_id}/roster", "another enterprise"): 404,
    ("GET", "/v1/enterprises/{enterprise_id}/not_back", "another enterprise"): 404,
    ("GET", "/v1/enterprises/{enterprise_id}/daily", "another enterprise"): 404,
    ("POST", "/v1/workers/{worker_ref}/dispositions", "observation of another's worker"): 404,
}


def test_the_district_exceptions_name_rows_of_the_table() -> None:
    assert set(OUTSIDE_THE_DISTRICT) <= {(row.method, row.path, row.case) for row in ROWS}


@pytest.mark.parametrize(
    "row",
    ROWS,
    ids=[f"{row.method} {row.path} [{row.case}] as {DISTRICT_SUPERVISOR}" for row in ROWS],
)
def test_a_district_supervisor_may_do_what_a_supervisor_may_in_its_district_only(
    system: RunningSystem, world: World, row: Row
) -> None:
    expected = OUTSIDE_THE_DISTRICT.get((row.method, row.path, row.case), row.expect["supervisor"])

    response = call(system, world, row, DISTRICT_SUPERVISOR)

    if expected == REJECTED:
        assert response.status_code == 202, response.text
        assert [result["reason"] for result in response.json()["results"]] == ["not_permitted"]
        return
    assert response.status_code == expected, response.text


def test_a_district_supervisors_lists_hold_its_district_only(
    system: RunningSystem, world: World
) -> None:
    headers = {"Authorization": f"Bearer {world.tokens[DISTRICT_SUPERVISOR]}"}
    with httpx.Client(base_url=system.url, headers=headers, timeout=30) as scoped:
        enterprises = scoped.get("/v1/enterprises").json()["enterprises"]
        alerts = scoped.get("/v1/alerts", params={"status": "all", "limit": 500}).json()["alerts"]
        other = scoped.get("/v1/alerts", params={"enterprise_id": world.other, "status": "all"})

    assert [enterprise["enterprise_id"] for enterprise in enterprises] == [world.own]
    assert {alert["enterprise_id"] for alert in alerts} == {world.own}
    assert other.json()["alerts"] == []


def test_a_district_supervisors_held_list_and_subsidies_hold_its_district_only(
    system: RunningSystem, world: World
) -> None:
    headers = {"Authorization": f"Bearer {world.tokens[DISTRICT_SUPERVISOR]}"}
    with httpx.Client(base_url=system.url, headers=headers, timeout=30) as scoped:
        held = scoped.get("/v1/held").json()["workers"]
        other_held = scoped.get("/v1/held", params={"enterprise_id": world.other}).json()
        ledger = scoped.get("/v1/subsidies").json()
        other_ledger = scoped.get("/v1/subsidies", params={"enterprise_id": world.other}).json()

    assert {worker["enterprise_id"] for worker in held} <= {world.own}
    assert world.other_worker.worker_ref not in {worker["worker_ref"] for worker in held}
    assert other_held["workers"] == []
    assert {row["enterprise_id"] for row in ledger["enterprises"]} <= {world.own}
    assert {row["enterprise_id"] for row in ledger["workers"]} <= {world.own}
    assert (other_ledger["workers"], other_ledger["total_yuan"]) == ([], 0.0)


# --- what is audited ----------------------------------------------------------------
# Reading one worker, looking one up (by ID number or by a code) and deciding about one
# each leave an entry naming the worker by worker_ref (the ID number a request named is
# never kept), with who asked. The principal is one the table lets through.
AUDITED: dict[tuple[str, str, str], tuple[str, str]] = {
    ("POST", "/v1/workers/lookup", "own enterprise's worker"): ("supervisor", "lookup_worker"),
    ("GET", "/v1/workers/{worker_ref}", "own enterprise's worker"): ("gate", "read_worker"),
    ("POST", "/v1/links/resolve", "own enterprise's worker's code"): ("recruiter", "resolve"),
    ("POST", "/v1/decisions", "checkin at the gate's enterprise"): ("gate", "decision"),
    ("POST", "/v1/decisions", "arrival_check"): ("health_station", "decision"),
    ("POST", "/v1/gate/decision", "own worker at the gate's enterprise"): (
        "supervisor",
        "gate_decision",
    ),
}


def audit_entries(world: World, *, after: int = 0, **filters: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    while True:
        page = world.admin.get("/v1/audit", params={"after": after, "limit": 500, **filters}).json()
        entries.extend(page["entries"])
        if page["next_after"] is None:
            return entries
        after = page["next_after"]


def last_audit_id(world: World) -> int:
    """An entry made now (the admin reads the own worker), so later ones are after it."""
    world.admin.get(f"/v1/workers/{world.own_worker.worker_ref}")
    audit_id: int = audit_entries(world, worker_ref=world.own_worker.worker_ref)[-1]["audit_id"]
    return audit_id


def test_the_audited_rows_name_rows_of_the_table() -> None:
    rows = {(row.method, row.path, row.case): row for row in ROWS}
    assert set(AUDITED) <= set(rows)
    for key, (principal, _) in AUDITED.items():
        assert rows[key].expect[principal] == 200, key


@pytest.mark.parametrize(
    "row",
    [row for row in ROWS if (row.method, row.path, row.case) in AUDITED],
    ids=lambda row: f"{row.method} {row.path} [{row.case}]",
)
def test_reading_looking_up_and_deciding_about_a_worker_is_audited(
    system: RunningSystem, world: World, row: Row
) -> None:
    principal, action = AUDITED[(row.method, row.path, row.case)]
    since = last_audit_id(world)

    response = call(system, world, row, principal)

    assert response.status_code == 200, response.text
    entries = audit_entries(world, after=since, worker_ref=world.own_worker.worker_ref)
    assert [(e["action"], e["role"]) for e in entries] == [(action, principal)], entries
    (entry,) = entries
    assert entry["actor"].startswith(f"{principal}:")
    assert world.own_worker.id_number not in str(entry)
    assert world.own_worker.ssc_card_no not in str(entry)


def test_issuing_a_token_is_audited_by_its_name_and_scope_never_the_token(
    world: World,
) -> None:
    since = last_audit_id(world)

    issued = world.admin.post("/v1/tokens", json={"role": "gate", "enterprise_id": world.own})

    assert issued.status_code == 201, issued.text
    token, token_id = issued.json()["token"], issued.json()["token_id"]
    entries = [e for e in audit_entries(world, after=since) if e["action"] == "issue_token"]
    assert len(entries) == 1, entries
    (entry,) = entries
    assert entry["role"] == "admin" and entry["worker_ref"] is None
    assert entry["detail"].startswith(f"{token_id} gate enterprise_id={world.own} until ")
    assert token not in str(entry)


# --- tokens expire by default -------------------------------------------------------
# The system runs with the default RETURNLOOP_TOKEN_DEFAULT_HOURS: 12 hours, one shift.


@pytest.mark.parametrize("role", ROLES)
def test_a_token_issued_without_a_lifetime_expires_after_a_shift(world: World, role: str) -> None:
    before = datetime.now(UTC)
    body = {"role": role, **({"enterprise_id": world.own} if role == "gate" else {})}

    issued = world.admin.post("/v1/tokens", json=body)

    assert issued.status_code == 201, issued.text
    expires_at = datetime.fromisoformat(issued.json()["expires_at"])
    assert before + timedelta(hours=12) <= expires_at <= datetime.now(UTC) + timedelta(hours=12)


def test_a_lifetime_asked_for_wins_over_the_default(world: World) -> None:
    before = datetime.now(UTC)

    issued = world.admin.post("/v1/tokens", json={"role": "supervisor", "expires_in_hours": 72})

    assert issued.status_code == 201, issued.text
    expires_at = datetime.fromisoformat(issued.json()["expires_at"])
    assert before + timedelta(hours=72) <= expires_at <= datetime.now(UTC) + timedelta(hours=72)
