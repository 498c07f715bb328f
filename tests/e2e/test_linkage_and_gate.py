"""One code, one person, one loop: linkage, resolve, colour updates and the gate, over HTTP."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from shared import topics
from tests.e2e.conftest import RunningSystem
from tests.support.api import is_known, wait_for_view
from tests.support.postgres import pg_dump
from tests.support.scans import scan_body
from tests.support.servers import Servers, random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def card_number() -> str:
    return "A" + "".join(random.choice("0123456789") for _ in range(8))


def health_code_id() -> str:
    return unique("hc").replace("-", "_")


async def link(client: httpx.AsyncClient, id_number: str, code: str, card: str) -> httpx.Response:
    return await client.post(
        "/v1/links", json={"id_number": id_number, "health_code_id": code, "ssc_card_no": card}
    )


async def resolve(client: httpx.AsyncClient, code: str) -> dict[str, Any]:
    response = await client.post("/v1/links/resolve", json={"code": code})
    return {"status_code": response.status_code, **response.json()}


async def colour_update(
    producer: AIOKafkaProducer, id_number: str, colour: str, as_of: datetime
) -> None:
    body = {"id_number": id_number, "health_code": colour, "as_of": as_of.isoformat()}
    await producer.send_and_wait(topics.HEALTHCODE_UPDATES, orjson.dumps(body))


async def test_a_linked_worker_resolves_to_one_worker_by_either_code(
    admin: httpx.AsyncClient,
) -> None:
    id_number, code, card = random_id_number(), health_code_id(), card_number()

    first = await link(admin, id_number, code, card)
    again = await link(admin, id_number, code, card)

    assert (first.status_code, again.status_code) == (201, 200)
    by_code = await resolve(admin, code)
    by_card = await resolve(admin, card)
    assert by_code["status_code"] == by_card["status_code"] == 200
    assert by_code["worker_ref"] == by_card["worker_ref"] == first.json()["worker_ref"]
    assert by_card["linked"]["health_code_id"] == code
    assert by_card["linked"]["ssc_card_no_masked"] != card
    assert card not in str(by_card) and id_number not in str(by_card)
    assert by_card["id_masked"] == id_number[:6] + "********" + id_number[-4:]
    assert set(by_card) - {"status_code"} == {
        "worker_ref",
        "id_masked",
        "health_code",
        "linked",
        "loop",
    }


async def test_binding_a_card_to_a_second_worker_is_a_conflict_and_changes_nothing(
    admin: httpx.AsyncClient,
) -> None:
    first_id, second_id, card = random_id_number(), random_id_number(), card_number()
    assert (await link(admin, first_id, health_code_id(), card)).status_code == 201

    response = await link(admin, second_id, health_code_id(), card)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    owner = await resolve(admin, card)
    first = await admin.post("/v1/workers/lookup", json={"id_number": first_id})
    assert owner["worker_ref"] == first.json()["worker_ref"]
    # The second worker's health code was not bound either: all or nothing.
    second = await admin.post("/v1/workers/lookup", json={"id_number": second_id})
    assert second.status_code == 404


async def test_an_unknown_code_is_not_found_and_a_malformed_one_is_refused(
    admin: httpx.AsyncClient,
) -> None:
    unknown = await admin.post("/v1/links/resolve", json={"code": card_number()})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    # Contract v1.1: any region's code is 1–512 printable characters; a control
    # character or a longer text is malformed.
    malformed = await admin.post("/v1/links/resolve", json={"code": "HC\u0007-0001"})
    assert malformed.status_code == 422
    too_long = await admin.post("/v1/links/resolve", json={"code": "x" * 513})
    assert too_long.status_code == 422
    bad_card = await link(admin, random_id_number(), health_code_id(), "12")
    assert bad_card.status_code == 422 and bad_card.json()["error"]["code"] == "invalid_card_number"


async def test_every_resolve_is_in_the_audit_log(admin: httpx.AsyncClient) -> None:
    id_number, code = random_id_number(), health_code_id()
    worker_ref = (await link(admin, id_number, code, card_number())).json()["worker_ref"]

    await resolve(admin, code)
    response = await admin.get("/v1/audit", params={"worker_ref": worker_ref})

    actions = [(e["action"], e["role"], e["actor"]) for e in response.json()["entries"]]
    assert ("resolve", "admin", "admin:bootstrap-token") in actions
    assert all(e["at"] for e in response.json()["entries"])


async def test_reading_a_worker_is_audited_once_and_reading_no_worker_not_at_all(
    admin: httpx.AsyncClient,
) -> None:
    # The admin's reads are audited in the statement that reads the worker.
    id_number = random_id_number()
    worker_ref = (await link(admin, id_number, health_code_id(), card_number())).json()[
        "worker_ref"
    ]
    nobody = "w_" + "".join(random.choices("0123456789abcdef", k=24))

    assert (await admin.get(f"/v1/workers/{worker_ref}")).status_code == 200
    assert (await admin.get(f"/v1/workers/{nobody}")).status_code == 404
    assert (await admin.post("/v1/workers/lookup", json={"id_number": id_number})).is_success

    read = (await admin.get("/v1/audit", params={"worker_ref": worker_ref})).json()["entries"]
    assert [e["action"] for e in read if e["action"] != "link"] == [
        "read_worker",
        "lookup_worker",
    ]
    assert all(e["actor"] == "admin:bootstrap-token" for e in read)
    none = await admin.get("/v1/audit", params={"worker_ref": nobody})
    assert none.json()["entries"] == []


async def test_only_an_admin_reads_the_audit_log(
    admin: httpx.AsyncClient, system: RunningSystem
) -> None:
    token = (await admin.post("/v1/tokens", json={"role": "supervisor"})).json()["token"]
    async with httpx.AsyncClient(
        base_url=system.url, headers={"Authorization": f"Bearer {token}"}
    ) as supervisor:
        assert (await supervisor.get("/v1/audit")).status_code == 403


async def test_a_later_red_update_wins_and_an_older_green_one_does_not_undo_it(
    admin: httpx.AsyncClient, producer: AIOKafkaProducer
) -> None:
    id_number, code = random_id_number(), health_code_id()
    await link(admin, id_number, code, card_number())
    now = datetime.now(UTC)

    await colour_update(producer, id_number, "red", now - timedelta(minutes=5))
    await eventually(
        lambda: resolve(admin, code),
        lambda v: v["health_code"] == "red",
        what="the red update applied",
    )
    await colour_update(producer, id_number, "green", now - timedelta(hours=3))
    await colour_update(producer, id_number, "yellow", now - timedelta(hours=2))
    # The older updates are applied (they are in the log) but the colour stays red.
    marker_id = random_id_number()
    await colour_update(producer, marker_id, "green", now)
    await wait_for_view(admin, marker_id, is_known, what="updates behind the older ones applied")
    assert (await resolve(admin, code))["health_code"] == "red"


async def test_a_code_turning_red_in_transit_holds_the_worker_and_the_gate_says_no(
    admin: httpx.AsyncClient, producer: AIOKafkaProducer
) -> None:
    id_number, code = random_id_number(), health_code_id()
    enterprise = unique("E")
    await admin.post(
        "/v1/manifests",
        json={
            "enterprises": [
                {"enterprise_id": enterprise, "name": "瓯海区鞋业第1厂", "shortage": 3}
            ],
            "workers": [{"id_number": id_number, "name": "王芳", "enterprise_id": enterprise}],
        },
    )
    await link(admin, id_number, code, card_number())
    now = datetime.now(UTC)
    scans = [
        scan_body(kind, id_number, hours=0, occurred_at=(now - timedelta(hours=ago)).isoformat())
        for kind, ago in (("departure_check", 10), ("boarding", 9), ("arrival_check", 2))
    ]
    await admin.post("/v1/scans", json={"scans": scans})
    await eventually(
        lambda: resolve(admin, code),
        lambda v: v.get("loop", {}).get("stage") == "arrival_cleared",
        what="arrival cleared",
    )
    decided = await admin.post(
        "/v1/gate/decision", json={"code": code, "enterprise_id": enterprise}
    )
    assert decided.json()["allow"] is True, decided.json()

    # After the arrival recheck (which showed green) and before check-in: still in the loop.
    in_transit = datetime.fromisoformat(scans[2]["occurred_at"]) + timedelta(hours=1)
    await colour_update(producer, id_number, "red", in_transit)
    view = await eventually(
        lambda: resolve(admin, code),
        lambda v: v["health_code"] == "red",
        what="the red update applied",
    )

    assert view["loop"]["status"] == "held"
    assert [a["kind"] for a in view["loop"]["alerts"] if a["open"]] == ["code_changed_in_transit"]
    decided = await admin.post(
        "/v1/gate/decision", json={"code": code, "enterprise_id": enterprise}
    )
    body = decided.json()
    assert decided.status_code == 200 and body["allow"] is False
    assert "health code is red, not green" in body["reasons"]
    assert any(
        reason.startswith("open alert: health code turned non-green") for reason in body["reasons"]
    )


async def test_the_gate_decides_for_its_own_enterprise_only(
    admin: httpx.AsyncClient, system: RunningSystem
) -> None:
    enterprise, other = unique("E"), unique("E")
    id_number = random_id_number()
    await admin.post(
        "/v1/manifests",
        json={
            "enterprises": [{"enterprise_id": enterprise, "name": "乐清电气", "shortage": 1}],
            "workers": [{"id_number": id_number, "name": "李强", "enterprise_id": enterprise}],
        },
    )
    token = (
        await admin.post("/v1/tokens", json={"role": "gate", "enterprise_id": enterprise})
    ).json()["token"]
    async with httpx.AsyncClient(
        base_url=system.url, headers={"Authorization": f"Bearer {token}"}
    ) as gate:
        own = await gate.post(
            "/v1/gate/decision", json={"id_number": id_number, "enterprise_id": enterprise}
        )
        foreign = await gate.post(
            "/v1/gate/decision", json={"id_number": id_number, "enterprise_id": other}
        )
    assert own.status_code == 200 and own.json()["allow"] is False
    assert "no arrival health recheck on record" in own.json()["reasons"][0]
    assert foreign.status_code == 403


async def test_an_admin_unlinks_a_lost_card_and_a_new_one_is_bound(
    admin: httpx.AsyncClient,
) -> None:
    id_number, code, lost, reissued = (
        random_id_number(),
        health_code_id(),
        card_number(),
        card_number(),
    )
    worker_ref = (await link(admin, id_number, code, lost)).json()["worker_ref"]
    assert (await link(admin, id_number, code, reissued)).status_code == 409

    unlinked = await admin.post("/v1/links/unlink", json={"code": lost, "reason": "card lost"})
    relinked = await link(admin, id_number, code, reissued)

    assert unlinked.status_code == 200 and relinked.status_code == 201
    assert (await resolve(admin, lost))["status_code"] == 404
    assert (await resolve(admin, reissued))["worker_ref"] == worker_ref
    history = (await admin.get(f"/v1/links/{worker_ref}/history")).json()["links"]
    assert [h["unlink_reason"] for h in history if h["code_type"] == "ssc_card"] == [
        "card lost",
        None,
    ]


async def test_the_database_holds_no_plain_card_or_id_number(
    admin: httpx.AsyncClient, servers: Servers, tmp_path: Path
) -> None:
    id_number, card = random_id_number(), card_number()
    await link(admin, id_number, health_code_id(), card)

    dump = await asyncio.to_thread(pg_dump, servers.database_url, tmp_path / "dump.sql")

    assert b"code_links" in dump
    assert card.encode() not in dump
    assert id_number.encode() not in dump
