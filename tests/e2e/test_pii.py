"""A known ID number and card number, sent through every door, are found in no store, log,
metric or topic past validation; the one way back to the full number is an audited admin call.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import topics
from tests.e2e.conftest import RunningSystem
from tests.support.api import is_known, post_manifest, post_scans, wait_for_view, worker_ref_of
from tests.support.kafka import read_topic
from tests.support.postgres import pg_dump
from tests.support.scans import four_scans, scan_body
from tests.support.servers import Servers, random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


async def audit_of(admin: httpx.AsyncClient, worker_ref: str) -> list[dict[str, Any]]:
    response = await admin.get("/v1/audit", params={"worker_ref": worker_ref, "limit": 500})
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


async def test_a_known_id_number_is_in_no_dump_log_metric_or_downstream_topic(
    admin: httpx.AsyncClient, system: RunningSystem, servers: Servers, tmp_path: Path
) -> None:
    enterprise_id = unique("E-pii")
    id_number, lowercase_x = random_id_number(), random_id_number()
    card = "P" + unique("").replace("-", "")[:12].upper()
    manifest = {
        "enterprises": [{"enterprise_id": enterprise_id, "name": "隐私厂", "shortage": 1}],
        "workers": [{"id_number": id_number, "name": "赵六", "enterprise_id": enterprise_id}],
    }
    await post_manifest(admin, manifest)
    link = {"id_number": id_number, "health_code_id": unique("hc_pii"), "ssc_card_no": card}
    assert (await admin.post("/v1/links", json=link)).status_code == 201
    journey = four_scans(id_number, checkin={"enterprise_id": enterprise_id})
    # One more worker who is only ever scanned, with a lower-case check letter if any,
    # and one scan the tracker rejects (it still names the worker).
    journey.append(scan_body("departure_check", lowercase_x.lower(), hours=0))
    journey.append(scan_body("arrival_check", id_number, hours=20, temperature_c=None))
    await post_scans(admin, *journey)
    await admin.post("/v1/workers/lookup", json={"id_number": "not-an-id-" + id_number})
    worker_ref = await worker_ref_of(admin, id_number)
    await eventually(
        lambda: admin.get(f"/v1/workers/{worker_ref}"),
        lambda r: r.json()["stage"] == "checked_in",
        what="the loop to close",
    )
    await wait_for_view(admin, lowercase_x, is_known, what="the scanned-only worker to be known")
    secrets = [id_number.encode(), lowercase_x.encode(), lowercase_x.lower().encode()]
    secrets.append(card.encode())

    dump = await asyncio.to_thread(pg_dump, servers.database_url, tmp_path / "dump.sql")
    downstream = [
        record
        for topic in topics.KEYED_TOPICS
        for record in await read_topic(servers.kafka_bootstrap, topic)
    ]
    metrics = (await admin.get("/metrics")).content
    logs = system.api.log_path.read_bytes() + system.tracker.log_path.read_bytes()

    assert b"id_number_encrypted" in dump and b"code_links" in dump
    assert worker_ref.encode() in dump
    assert downstream and any(worker_ref.encode() == record.key for record in downstream)
    for secret in secrets:
        assert secret not in dump
        assert secret not in metrics
        assert secret not in logs
        for record in downstream:
            assert secret not in (record.key or b"") + (record.value or b"")
            assert all(secret not in (value or b"") for _, value in record.headers)


async def test_an_admin_recovers_a_full_id_number_and_the_recovery_is_audited(
    admin: httpx.AsyncClient,
) -> None:
    id_number = random_id_number()
    manifest = {"workers": [{"id_number": id_number, "name": "钱七"}]}
    await post_manifest(admin, manifest)
    worker_ref = await worker_ref_of(admin, id_number)

    response = await admin.post(
        f"/v1/workers/{worker_ref}/reveal", json={"reason": "社保补办 ticket 42"}
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"worker_ref": worker_ref, "id_number": id_number}
    entries = await audit_of(admin, worker_ref)
    reveals = [entry for entry in entries if entry["action"] == "reveal_id_number"]
    assert [(e["role"], e["actor"], e["detail"]) for e in reveals] == [
        ("admin", "admin:bootstrap-token", "社保补办 ticket 42")
    ]


async def test_a_worker_first_named_by_a_link_is_recoverable_too(
    admin: httpx.AsyncClient,
) -> None:
    id_number = random_id_number()
    link = {
        "id_number": id_number,
        "health_code_id": unique("hc_reveal"),
        "ssc_card_no": "R" + unique("").replace("-", "")[:12].upper(),
    }
    linked = await admin.post("/v1/links", json=link)
    assert linked.status_code == 201, linked.text

    response = await admin.post(
        f"/v1/workers/{linked.json()['worker_ref']}/reveal", json={"reason": "card reissue"}
    )

    assert response.status_code == 200, response.text
    assert response.json()["id_number"] == id_number


async def test_a_worker_only_ever_scanned_has_no_recoverable_id_number(
    admin: httpx.AsyncClient,
) -> None:
    id_number = random_id_number()
    await admin.post("/v1/scans", json=scan_body("departure_check", id_number, hours=0))
    known = await wait_for_view(admin, id_number, is_known, what="the scanned worker to be known")

    response = await admin.post(
        f"/v1/workers/{known['worker_ref']}/reveal", json={"reason": "none kept"}
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_recoverable"
    assert id_number not in response.text


@pytest.mark.parametrize("worker_ref", ["w_0123456789abcdef01234567", "not-a-ref", "w_" + "f" * 80])
async def test_revealing_an_unknown_worker_is_not_found(
    admin: httpx.AsyncClient, worker_ref: str
) -> None:
    response = await admin.post(f"/v1/workers/{worker_ref}/reveal", json={"reason": "probe"})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_a_reveal_without_a_reason_is_refused_and_not_audited(
    admin: httpx.AsyncClient,
) -> None:
    id_number = random_id_number()
    await admin.post("/v1/manifests", json={"workers": [{"id_number": id_number, "name": "孙八"}]})
    worker_ref = await worker_ref_of(admin, id_number)

    response = await admin.post(f"/v1/workers/{worker_ref}/reveal", json={})

    assert response.status_code == 422
    assert id_number not in response.text
    assert not [e for e in await audit_of(admin, worker_ref) if e["action"] == "reveal_id_number"]
