"""Decide before recording (contract v1.1): POST /v1/decisions says allow or deny with every
reason code, asked by whoever may post that kind of scan, audited; a scan recorded against a
denial carries its override reason, and no scan is refused for want of clearance."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.api import post_accepted_scans, post_scans
from tests.support.journeys import (
    Enrolled,
    ago,
    card_number,
    colour,
    enrol,
    iso,
    link,
    post_colours,
    recorded,
    role_client,
    wait_for_scans,
    wait_for_view,
)
from tests.support.processes import RunningSystem
from tests.support.servers import random_id_number, unique

pytestmark = pytest.mark.e2e


# --- scans of a journey over the last few hours ---------------------------------------


def departure(worker: Enrolled, *, hours_ago: float = 5, **fields: Any) -> dict[str, Any]:
    return _scan(
        "departure_check",
        worker,
        hours_ago,
        **{"temperature_c": 36.5, "health_code": "green", **fields},
    )


def boarding(worker: Enrolled, *, hours_ago: float = 4.5, **fields: Any) -> dict[str, Any]:
    return _scan("boarding", worker, hours_ago, **{"trip_id": worker.trip_id, **fields})


def arrival(worker: Enrolled, *, hours_ago: float = 1, **fields: Any) -> dict[str, Any]:
    return _scan(
        "arrival_check",
        worker,
        hours_ago,
        **{"temperature_c": 36.6, "health_code": "green", **fields},
    )


def _scan(kind: str, worker: Enrolled, hours_ago: float, **fields: Any) -> dict[str, Any]:
    return {
        "scan_id": unique("decide"),
        "kind": kind,
        "id_number": worker.id_number,
        "occurred_at": iso(ago(hours_ago)),
        "station": f"{kind} 检查点",
        **fields,
    }


async def travelled(admin: httpx.AsyncClient, worker: Enrolled, *scans: dict[str, Any]) -> None:
    """Post ``scans`` and wait until the last of them is the worker's checkpoint."""
    await post_accepted_scans(admin, *scans)
    await wait_for_scans(admin, worker.id_number, *scans)


async def decide(client: httpx.AsyncClient, kind: str, **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/decisions", json={"kind": kind, **fields})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"kind", "allow", "reasons", "worker", "loop"}, body
    assert body["kind"] == kind
    assert all(reason["code"] and reason["message"] for reason in body["reasons"]), body
    return body


def codes(body: dict[str, Any]) -> list[str]:
    return [reason["code"] for reason in body["reasons"]]


# --- departure_check ------------------------------------------------------------------


async def test_a_departure_check_is_allowed_for_a_manifest_worker(
    admin: httpx.AsyncClient,
) -> None:
    (worker,) = await enrol(admin)

    body = await decide(admin, "departure_check", id_number=worker.id_number)

    assert (body["allow"], codes(body)) == (True, [])
    assert body["worker"]["name"] == worker.name
    assert body["worker"]["id_masked"] == worker.id_masked
    assert body["loop"]["worker_ref"] == body["worker"]["worker_ref"]
    assert body["loop"]["stage"] == "registered"
    assert worker.id_number not in str(body)


async def test_a_worker_on_no_manifest_is_not_on_manifest(admin: httpx.AsyncClient) -> None:
    id_number = random_id_number()
    code, card = await link(admin, id_number)

    for named in ({"id_number": id_number}, {"code": code}, {"code": card}):
        body = await decide(admin, "departure_check", **named)

        assert (body["allow"], codes(body)) == (False, ["not_on_manifest"])
        assert body["worker"]["name"] is None


# --- boarding -------------------------------------------------------------------------


async def test_boarding_is_allowed_after_a_passed_departure_check_on_the_manifest_trip(
    admin: httpx.AsyncClient,
) -> None:
    (worker,) = await enrol(admin)
    await travelled(admin, worker, departure(worker))

    right = await decide(admin, "boarding", id_number=worker.id_number, trip_id=worker.trip_id)
    wrong = await decide(admin, "boarding", id_number=worker.id_number, trip_id=unique("T"))
    unsaid = await decide(admin, "boarding", id_number=worker.id_number)

    assert (right["allow"], codes(right)) == (True, [])
    assert (wrong["allow"], codes(wrong)) == (False, ["wrong_trip"])
    assert worker.trip_id in wrong["reasons"][0]["message"]
    assert (unsaid["allow"], codes(unsaid)) == (False, ["wrong_trip"])


async def test_boarding_with_no_departure_check_is_denied(admin: httpx.AsyncClient) -> None:
    (worker,) = await enrol(admin)

    body = await decide(admin, "boarding", id_number=worker.id_number, trip_id=worker.trip_id)

    assert body["allow"] is False
    # And the colour is unknown: nothing was scanned and the platform said nothing.
    assert codes(body) == ["departure_check_missing", "code_not_green"]


async def test_boarding_after_a_failed_departure_check_is_denied(
    admin: httpx.AsyncClient,
) -> None:
    (worker,) = await enrol(admin)
    await travelled(admin, worker, departure(worker, temperature_c=38.2))

    body = await decide(admin, "boarding", id_number=worker.id_number, trip_id=worker.trip_id)

    assert (body["allow"], codes(body)) == (False, ["departure_check_failed"])


@pytest.mark.parametrize(
    "how",
    ["red from the platform since", "the departure check's green is 30 h old"],
)
async def test_boarding_needs_a_green_colour_now(
    admin: httpx.AsyncClient, integrator: httpx.AsyncClient, how: str
) -> None:
    (worker,) = await enrol(admin, departs_at=ago(29))
    if how.startswith("red"):
        await travelled(admin, worker, departure(worker))
        await post_colours(integrator, colour("red", ago(2), id_number=worker.id_number))
        await wait_for_view(
            admin, worker.id_number, lambda v: v["health_code"] == "red", what="red applied"
        )
    else:
        await travelled(admin, worker, departure(worker, hours_ago=30))

    body = await decide(admin, "boarding", id_number=worker.id_number, trip_id=worker.trip_id)

    assert (body["allow"], codes(body)) == (False, ["code_not_green"])


# --- arrival_check: always allowed, the reasons inform ---------------------------------


async def test_an_arrival_recheck_is_always_allowed_and_says_what_is_missing(
    admin: httpx.AsyncClient,
) -> None:
    (nothing_yet, not_boarded, boarded) = await enrol(admin, 3)
    await travelled(admin, not_boarded, departure(not_boarded))
    await travelled(admin, boarded, departure(boarded), boarding(boarded))

    bodies = [
        await decide(admin, "arrival_check", id_number=worker.id_number)
        for worker in (nothing_yet, not_boarded, boarded)
    ]

    assert [body["allow"] for body in bodies] == [True, True, True]
    assert [codes(body) for body in bodies] == [
        ["departure_check_missing", "not_boarded", "code_not_green"],
        ["not_boarded"],
        [],
    ]


async def test_an_arrival_recheck_after_a_failed_departure_says_so(
    admin: httpx.AsyncClient,
) -> None:
    (worker,) = await enrol(admin)
    await travelled(admin, worker, departure(worker, health_code="yellow"))

    body = await decide(admin, "arrival_check", id_number=worker.id_number)

    assert body["allow"] is True
    assert codes(body) == ["departure_check_failed", "not_boarded", "code_not_green"]


# --- checkin: the gate's rules --------------------------------------------------------


async def test_a_cleared_worker_may_check_in_at_their_enterprise_and_nowhere_else(
    admin: httpx.AsyncClient,
) -> None:
    (worker,) = await enrol(admin)
    await travelled(admin, worker, departure(worker), boarding(worker), arrival(worker))
    code, _ = await link(admin, worker.id_number)

    here = await decide(admin, "checkin", code=code, enterprise_id=worker.enterprise_id)
    elsewhere = await decide(
        admin, "checkin", id_number=worker.id_number, enterprise_id=unique("E")
    )
    gate = await admin.post(
        "/v1/gate/decision", json={"code": code, "enterprise_id": worker.enterprise_id}
    )

    assert (here["allow"], codes(here)) == (True, [])
    assert here["worker"]["name"] == worker.name
    assert here["loop"]["stage"] == "arrival_cleared"
    assert gate.json()["allow"] is True
    assert (elsewhere["allow"], codes(elsewhere)) == (False, ["wrong_enterprise"])


async def test_a_checkin_with_no_arrival_recheck_is_denied(admin: httpx.AsyncClient) -> None:
    (worker,) = await enrol(admin)
    await travelled(admin, worker, departure(worker), boarding(worker))

    body = await decide(
        admin, "checkin", id_number=worker.id_number, enterprise_id=worker.enterprise_id
    )

    assert (body["allow"], codes(body)) == (False, ["arrival_check_missing"])


async def test_a_checkin_after_a_failed_arrival_recheck_is_denied_with_its_alert(
    admin: httpx.AsyncClient,
) -> None:
    (worker,) = await enrol(admin)
    await travelled(
        admin, worker, departure(worker), boarding(worker), arrival(worker, temperature_c=37.9)
    )

    body = await decide(
        admin, "checkin", id_number=worker.id_number, enterprise_id=worker.enterprise_id
    )

    assert body["allow"] is False
    assert codes(body) == ["arrival_check_failed", "open_alert"]
    assert "fever" in body["reasons"][1]["message"]


async def test_a_checkin_with_an_open_alert_is_denied(admin: httpx.AsyncClient) -> None:
    (worker,) = await enrol(admin)
    await travelled(
        admin,
        worker,
        departure(worker),
        boarding(worker, trip_id=unique("T-other")),
        arrival(worker),
    )

    body = await decide(
        admin, "checkin", id_number=worker.id_number, enterprise_id=worker.enterprise_id
    )

    assert (body["allow"], codes(body)) == (False, ["open_alert"])
    assert "trip" in body["reasons"][0]["message"]
    assert body["loop"]["status"] == "broken"


# --- unknown workers, bad requests ----------------------------------------------------


async def test_an_unknown_worker_or_code_is_not_found(admin: httpx.AsyncClient) -> None:
    unknown = ({"id_number": random_id_number()}, {"code": unique("hc")}, {"code": card_number()})
    for named in unknown:
        response = await admin.post("/v1/decisions", json={"kind": "departure_check", **named})

        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"


async def test_an_id_number_and_a_code_of_different_workers_are_a_code_mismatch(
    admin: httpx.AsyncClient,
) -> None:
    """As for scans: the person typed in and the code they show must be one worker."""
    shown, typed = await enrol(admin, 2)
    code, card = await link(admin, shown.id_number)

    agreeing = await decide(admin, "departure_check", id_number=shown.id_number, code=card)
    for other in (code, card):
        response = await admin.post(
            "/v1/decisions",
            json={"kind": "departure_check", "id_number": typed.id_number, "code": other},
        )

        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "code_mismatch"
    assert agreeing["worker"]["name"] == shown.name


VALID = random_id_number()
WRONG_DIGIT = VALID[:-1] + ("1" if VALID[-1] == "0" else "0")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"kind": "departure_check"}, id="no worker"),
        pytest.param({"kind": "teleport", "id_number": VALID}, id="unknown kind"),
        pytest.param({"kind": "departure_check", "id_number": WRONG_DIGIT}, id="checksum"),
        pytest.param({"kind": "departure_check", "id_number": int(VALID[:17])}, id="a number"),
        pytest.param({"kind": "checkin", "id_number": "x" * 200}, id="long ID number"),
        pytest.param(["departure_check"], id="a list"),
    ],
)
async def test_a_malformed_question_is_a_422(admin: httpx.AsyncClient, body: Any) -> None:
    response = await admin.post("/v1/decisions", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"]


# --- who may ask ----------------------------------------------------------------------


@pytest.fixture
async def integrator(system: RunningSystem, admin: httpx.AsyncClient) -> Any:
    async with role_client(system, admin, "integrator") as client:
        yield client


ASKS = {
    "recruiter": {"departure_check": 200, "boarding": 200, "arrival_check": 403, "checkin": 403},
    "health_station": {
        "departure_check": 403,
        "boarding": 403,
        "arrival_check": 200,
        "checkin": 403,
    },
    "gate": {"departure_check": 403, "boarding": 403, "arrival_check": 403, "checkin": 200},
    "supervisor": dict.fromkeys(("departure_check", "boarding", "arrival_check", "checkin"), 403),
    "integrator": dict.fromkeys(("departure_check", "boarding", "arrival_check", "checkin"), 403),
}


@pytest.mark.parametrize("role", sorted(ASKS))
async def test_whoever_may_post_a_kind_of_scan_may_ask_about_it(
    system: RunningSystem, admin: httpx.AsyncClient, role: str
) -> None:
    (worker,) = await enrol(admin)
    scope = {"enterprise_id": worker.enterprise_id} if role == "gate" else {}
    async with role_client(system, admin, role, **scope) as client:
        statuses = {
            kind: (
                await client.post(
                    "/v1/decisions",
                    json={
                        "kind": kind,
                        "id_number": worker.id_number,
                        "trip_id": worker.trip_id,
                        "enterprise_id": worker.enterprise_id,
                    },
                )
            ).status_code
            for kind in ASKS[role]
        }

    assert statuses == ASKS[role]


async def test_a_gate_asks_for_its_own_enterprise_only(
    system: RunningSystem, admin: httpx.AsyncClient
) -> None:
    own, foreign = await enrol(admin), await enrol(admin)
    (worker,), (stranger,) = own, foreign
    await travelled(admin, stranger, departure(stranger), boarding(stranger), arrival(stranger))
    async with role_client(system, admin, "gate", enterprise_id=worker.enterprise_id) as gate:
        elsewhere = await gate.post(
            "/v1/decisions",
            json={
                "kind": "checkin",
                "id_number": worker.id_number,
                "enterprise_id": stranger.enterprise_id,
            },
        )
        unsaid = await gate.post(
            "/v1/decisions", json={"kind": "checkin", "id_number": worker.id_number}
        )
        stranger_here = await decide(
            gate, "checkin", id_number=stranger.id_number, enterprise_id=worker.enterprise_id
        )

    assert elsewhere.status_code == 403, elsewhere.text
    assert elsewhere.json()["error"]["code"] == "forbidden"
    assert unsaid.status_code == 403, unsaid.text
    # Another employer's worker at this gate: turned away, their record not shown.
    assert (stranger_here["allow"], codes(stranger_here)) == (False, ["wrong_enterprise"])
    assert stranger_here["loop"]["checkpoints"] == {}
    assert stranger_here["loop"]["alerts"] == []
    assert stranger_here["loop"]["trip_id"] is None


# --- every decision is audited --------------------------------------------------------


async def test_every_decision_is_in_the_audit_log(
    system: RunningSystem, admin: httpx.AsyncClient
) -> None:
    (worker,) = await enrol(admin)
    code, _ = await link(admin, worker.id_number)
    async with role_client(system, admin, "recruiter") as recruiter:
        await decide(recruiter, "departure_check", id_number=worker.id_number)
        await decide(recruiter, "boarding", code=code, trip_id=worker.trip_id)
    async with role_client(system, admin, "gate", enterprise_id=worker.enterprise_id) as gate:
        await decide(gate, "checkin", code=code, enterprise_id=worker.enterprise_id)
    denied = await admin.post("/v1/decisions", json={"kind": "checkin", "code": code})
    assert denied.status_code == 200
    worker_ref = denied.json()["worker"]["worker_ref"]

    response = await admin.get("/v1/audit", params={"worker_ref": worker_ref, "limit": 500})

    assert response.status_code == 200, response.text
    decisions = [e for e in response.json()["entries"] if e["action"] == "decision"]
    assert [(e["role"], e["detail"].split(":")[0]) for e in decisions] == [
        ("recruiter", "departure_check"),
        ("recruiter", "boarding"),
        ("gate", "checkin"),
        ("admin", "checkin"),
    ]
    assert "allow=True" in decisions[0]["detail"]
    assert "allow=False" in decisions[1]["detail"]
    assert "departure_check_missing" in decisions[1]["detail"]
    assert all(e["worker_ref"] == worker_ref and e["actor"] and e["at"] for e in decisions)
    assert code not in str(decisions) and worker.id_number not in str(decisions)


# --- recorded although the decision said no -------------------------------------------


async def test_a_scan_after_a_denial_is_recorded_with_its_override_reason(
    admin: httpx.AsyncClient,
) -> None:
    (worker,) = await enrol(admin)
    denied = await decide(admin, "boarding", id_number=worker.id_number, trip_id=worker.trip_id)
    assert denied["allow"] is False
    why = "体温复测正常，招工组负责人同意先上车，离线清单稍后同步"
    overridden = boarding(worker, override_reason=why)

    await travelled(admin, worker, overridden)

    view = await wait_for_view(
        admin, worker.id_number, recorded("boarding", overridden["scan_id"]), what="recorded"
    )
    assert view["checkpoints"]["boarding"]["override_reason"] == why
    assert view["checkpoints"]["boarding"]["passed"] is False
    assert [a["kind"] for a in view["alerts"] if a["open"]] == ["boarded_without_clearance"]


async def test_scans_are_facts_recorded_without_clearance_or_override(
    admin: httpx.AsyncClient,
) -> None:
    """The clearance may still sit in a scanner's offline queue: nothing is refused for it."""
    (worker,) = await enrol(admin)
    late_departure = departure(worker, hours_ago=5)
    scans = [
        boarding(worker),
        arrival(worker),
        _scan("checkin", worker, 0.5, enterprise_id=worker.enterprise_id),
    ]

    await travelled(admin, worker, *scans)
    view = await wait_for_view(
        admin, worker.id_number, lambda v: v["status"] == "broken", what="boarded uncleared"
    )
    assert "override_reason" not in view["checkpoints"]["boarding"]

    await travelled(admin, worker, late_departure)
    view = await wait_for_view(
        admin, worker.id_number, lambda v: v["status"] == "closed", what="the loop closed"
    )
    assert view["stage"] == "checked_in"


@pytest.mark.parametrize(
    ("override_reason", "reason"),
    [
        pytest.param("x" * 501, "invalid_field", id="501 characters"),
        pytest.param("ok\x00", "invalid_field", id="NUL"),
        pytest.param("", "invalid_field", id="empty"),
        pytest.param(["list"], "invalid_field", id="not text"),
    ],
)
async def test_a_malformed_override_reason_is_refused_with_a_reason(
    admin: httpx.AsyncClient, override_reason: Any, reason: str
) -> None:
    (worker,) = await enrol(admin)

    (result,) = await post_scans(admin, boarding(worker, override_reason=override_reason))

    assert (result["status"], result["reason"]) == ("rejected", reason), result
    assert "override_reason" in result["message"]


async def test_an_override_reason_of_500_characters_is_kept_whole(
    admin: httpx.AsyncClient,
) -> None:
    (worker,) = await enrol(admin)
    why = ("离线放行" * 125)[:500]
    sent = departure(worker, override_reason=why)

    await travelled(admin, worker, sent)

    view = await wait_for_view(
        admin, worker.id_number, recorded("departure_check", sent["scan_id"]), what="recorded"
    )
    assert view["checkpoints"]["departure_check"]["override_reason"] == why
