"""Webhooks through the running system, to a real receiver on 127.0.0.1.

The receiver checks every signature as a receiver is told to (README, "Webhooks"):
it goes down (the deliveries fail, are retried and show their failed tries in the
log) and comes back (each message arrives, exactly once after dropping repeats by
X-Returnloop-Delivery). A receiver that never answers gets dead deliveries after
the last try, counted in returnloop_webhook_deliveries_total{outcome="dead"}.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from shared.domain.webhooks import signature_valid
from tests.support.api import bearer, post_accepted_scans, post_manifest, worker_ref_of
from tests.support.journeys import PATIENCE
from tests.support.processes import RunningSystem, free_port, running_webhooks
from tests.support.scans import recent_scan
from tests.support.servers import random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

MAX_ATTEMPTS = 6
SECRET = "e2e-webhook-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def webhooks(system: RunningSystem, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The webhooks process with a quick back-off (0.3 s doubling to 1 s); its metrics URL."""
    logs: Path = tmp_path_factory.mktemp("webhooks-logs")
    with running_webhooks(
        system,
        logs,
        RETURNLOOP_WEBHOOK_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
        RETURNLOOP_WEBHOOK_BACKOFF_BASE_SECONDS="0.3",
        RETURNLOOP_WEBHOOK_BACKOFF_MAX_SECONDS="1",
        RETURNLOOP_WEBHOOK_TIMEOUT_SECONDS="2",
    ) as metrics_url:
        yield metrics_url


@pytest.fixture
async def admin(system: RunningSystem) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=system.url, headers=bearer(system.admin_token), timeout=30
    ) as client:
        yield client


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps what it is sent with a valid signature."""

    def __init__(self, port: int, secret: str) -> None:
        self.port = port
        self.secret = secret
        self.received: list[tuple[str, str, bytes]] = []  # (path, delivery id, body)
        self.bad_signatures = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        if not signature_valid(
            self.secret,
            headers.get("X-Returnloop-Timestamp", ""),
            body,
            headers.get("X-Returnloop-Signature", ""),
            now=time.time(),
            tolerance_s=300,
        ):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.received.append((request.path, headers["X-Returnloop-Delivery"], body))
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{name}", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def unique_deliveries(self, path: str) -> dict[str, bytes]:
        """What arrived at ``path``, one body per delivery id (repeats dropped, as told)."""
        kept: dict[str, bytes] = {}
        for where, delivery_id, body in self.received:
            if where == path:
                assert kept.setdefault(delivery_id, body) == body, "a repeat changed its body"
        return kept


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver(free_port(), SECRET)
    await found.start()
    try:
        yield found
    finally:
        await found.stop()


async def place_with_workers(admin: httpx.AsyncClient, count: int) -> tuple[str, str, list[str]]:
    """A fresh enterprise in a fresh district, a trip to it, ``count`` workers on both."""
    enterprise_id, district, trip_id = unique("WH-E"), unique("WH-D"), unique("WH-T")
    now = datetime.now(UTC)
    id_numbers = [random_id_number() for _ in range(count)]
    await post_manifest(
        admin,
        {
            "enterprises": [
                {"enterprise_id": enterprise_id, "name": "回调测试厂", "shortage": 1,
                 "district": district}
            ],
            "trips": [
                {"trip_id": trip_id, "mode": "bus", "origin": "贵州", "destination": "宁波",
                 "departs_at": now.isoformat(), "eta": (now + timedelta(days=1)).isoformat()}
            ],
            "workers": [
                {"id_number": id_number, "name": "赵六", "enterprise_id": enterprise_id,
                 "trip_id": trip_id}
                for id_number in id_numbers
            ],
        },
    )  # fmt: skip
    return enterprise_id, district, id_numbers


async def register(admin: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await admin.post("/v1/webhooks", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def deliveries(admin: httpx.AsyncClient, webhook_id: str) -> list[dict[str, Any]]:
    """The whole delivery log of a registration, newest first, page by page."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = await admin.get(f"/v1/webhooks/{webhook_id}/deliveries", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["deliveries"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def fever(id_number: str) -> dict[str, Any]:
    return recent_scan(0, "departure_check", id_number, temperature_c=38.6, health_code="green")


def alert_for(log: list[dict[str, Any]], worker_ref: str) -> list[dict[str, Any]]:
    return [
        d for d in log
        if d["event_kind"] == "fever_at_departure" and d["body"]["data"]["worker_ref"] == worker_ref
    ]  # fmt: skip


async def test_a_receiver_that_goes_down_and_comes_back_gets_each_message_exactly_once(
    admin: httpx.AsyncClient, webhooks: str, receiver: Receiver
) -> None:
    enterprise_id, district, (first, second) = await place_with_workers(admin, 2)
    by_enterprise = await register(
        admin,
        url=f"{receiver.url}/enterprise",
        event_kinds=["fever_at_departure", "transition"],
        enterprise_id=enterprise_id,
        secret=SECRET,
    )
    assert by_enterprise["secret"] == SECRET and by_enterprise["enabled"] is True
    by_district = await register(
        admin, url=f"{receiver.url}/district", event_kinds=["transition"], district=district,
        secret=SECRET,
    )  # fmt: skip
    listed = (await admin.get("/v1/webhooks")).json()["webhooks"]
    assert by_enterprise["webhook_id"] in {w["webhook_id"] for w in listed}
    assert all("secret" not in w for w in listed)
    webhook_id = by_enterprise["webhook_id"]

    # Up: the first worker's fever arrives (the alert and the transition to held).
    await post_accepted_scans(admin, fever(first))
    first_ref = await worker_ref_of(admin, first)
    log = await eventually(
        lambda: deliveries(admin, webhook_id),
        lambda log: (
            bool(alert_for(log, first_ref)) and all(d["status"] == "delivered" for d in log)
        ),
        within=PATIENCE,
        what="the first worker's fever delivered",
    )

    # Down: the second worker's deliveries fail, and the log shows the failed tries.
    await receiver.stop()
    await post_accepted_scans(admin, fever(second))
    second_ref = await worker_ref_of(admin, second)
    failing = await eventually(
        lambda: deliveries(admin, webhook_id),
        lambda log: any(d["attempts"] >= 2 for d in alert_for(log, second_ref)),
        within=PATIENCE,
        what="failed tries of the second worker's fever",
    )
    [tried] = alert_for(failing, second_ref)
    assert tried["status"] == "pending" and tried["last_error"], tried
    assert tried["last_status_code"] is None  # nobody answered

    # Back: everything pending is delivered.
    await receiver.start()
    log = await eventually(
        lambda: deliveries(admin, webhook_id),
        lambda log: (
            all(d["status"] == "delivered" for d in log)
            and bool(alert_for(log, second_ref))
            # The transitions come on their own topic, maybe behind the alerts.
            and any(d["event_kind"] == "transition" for d in log)
        ),
        within=PATIENCE,
        what="every delivery delivered once the receiver is back, a transition among them",
    )
    assert [d["created_at"] for d in log] == sorted((d["created_at"] for d in log), reverse=True)
    assert len({d["message_id"] for d in log}) == len(log)  # one delivery per message
    arrived = receiver.unique_deliveries("/enterprise")
    assert set(arrived) == {d["delivery_id"] for d in log}
    for delivery in log:
        assert orjson.loads(arrived[delivery["delivery_id"]]) == delivery["body"]
        assert delivery["body"]["data"]["enterprise_id"] == enterprise_id
    kinds = sorted(orjson.loads(body)["event"] for body in arrived.values())
    assert kinds.count("fever_at_departure") == 2 and "transition" in kinds
    assert receiver.bad_signatures == 0
    for body in arrived.values():  # a worker_ref, never a plain ID number
        assert first.encode() not in body and second.encode() not in body

    # The district's registration heard the transitions of the enterprise in it.
    district_log = await eventually(
        lambda: deliveries(admin, by_district["webhook_id"]),
        lambda log: (
            {d["body"]["data"]["worker_ref"] for d in log} == {first_ref, second_ref}
            and all(d["status"] == "delivered" for d in log)
        ),
        within=PATIENCE,
        what="the district's transitions",
    )
    assert {d["event_kind"] for d in district_log} == {"transition"}


async def test_a_receiver_that_never_answers_gets_dead_deliveries_after_the_last_try(
    admin: httpx.AsyncClient, webhooks: str
) -> None:
    enterprise_id, _, (worker,) = await place_with_workers(admin, 1)
    nobody = f"http://127.0.0.1:{free_port()}/hook"
    created = await register(
        admin, url=nobody, event_kinds=["fever_at_departure"], enterprise_id=enterprise_id
    )
    assert created["secret"].startswith("whsec_")  # generated, shown this once
    await post_accepted_scans(admin, fever(worker))
    [dead] = await eventually(
        lambda: deliveries(admin, created["webhook_id"]),
        lambda log: len(log) == 1 and log[0]["status"] == "dead",
        within=PATIENCE,
        what="a dead delivery",
    )
    assert dead["attempts"] == MAX_ATTEMPTS and dead["last_error"] and dead["finished_at"]
    dead_page = await admin.get(
        f"/v1/webhooks/{created['webhook_id']}/deliveries", params={"status": "dead"}
    )
    assert [d["delivery_id"] for d in dead_page.json()["deliveries"]] == [dead["delivery_id"]]
    async with httpx.AsyncClient(timeout=5) as client:
        metrics = (await client.get(webhooks)).text
    assert 'returnloop_webhook_deliveries_total{outcome="dead"}' in metrics


async def test_a_registration_disabled_then_enabled_hears_again_and_a_deleted_one_is_gone(
    admin: httpx.AsyncClient, webhooks: str, receiver: Receiver
) -> None:
    enterprise_id, _, (worker,) = await place_with_workers(admin, 1)
    created = await register(
        admin, url=f"{receiver.url}/toggled", event_kinds=["fever_at_departure"],
        enterprise_id=enterprise_id, secret=SECRET,
    )  # fmt: skip
    webhook_id = created["webhook_id"]
    disabled = await admin.post(f"/v1/webhooks/{webhook_id}/disable")
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    listed = {w["webhook_id"]: w for w in (await admin.get("/v1/webhooks")).json()["webhooks"]}
    assert listed[webhook_id]["enabled"] is False
    enabled = await admin.post(f"/v1/webhooks/{webhook_id}/enable")
    assert enabled.status_code == 200 and enabled.json()["enabled"] is True
    await post_accepted_scans(admin, fever(worker))
    worker_ref = await worker_ref_of(admin, worker)
    await eventually(
        lambda: deliveries(admin, webhook_id),
        lambda log: [d["status"] for d in alert_for(log, worker_ref)] == ["delivered"],
        within=PATIENCE,
        what="the fever after enabling",
    )

    assert (await admin.delete(f"/v1/webhooks/{webhook_id}")).json() == {
        "webhook_id": webhook_id,
        "deleted": True,
    }
    for gone in (
        await admin.delete(f"/v1/webhooks/{webhook_id}"),
        await admin.get(f"/v1/webhooks/{webhook_id}/deliveries"),
        await admin.post(f"/v1/webhooks/{webhook_id}/enable"),
    ):
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"url": "ftp://receiver.example/hook"}, "http:// or https://"),
        ({"url": "receiver.example/hook"}, "http:// or https://"),
        ({"url": "http:///hook"}, "host"),
        ({"url": "https://user:pass@receiver.example/"}, "credentials"),
        ({"event_kinds": []}, "event_kinds"),
        ({"event_kinds": ["fever"]}, "event_kinds"),
        ({"secret": "short"}, "16 to 256"),
    ],
)
async def test_a_bad_registration_is_refused_with_a_clear_422(
    admin: httpx.AsyncClient, change: dict[str, Any], says: str
) -> None:
    body = {"url": "https://receiver.example/hook", "event_kinds": ["transition"], **change}
    response = await admin.post("/v1/webhooks", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and says in error["message"], error
