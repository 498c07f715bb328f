"""The health-code platform poller against a fake provincial platform over real HTTP.

A real HTTP server on 127.0.0.1 answers ``/healthcode/v1/query`` as a provincial
platform does; the tracker's own ``ProvincialHealthCodeClient`` asks it, and the
answers go through real Kafka (``healthcode.updates``) and the tracker's intake and
apply into real PostgreSQL. The manifest and the departure are posted to the API
(in this process, with ID encryption keys configured, so the ID numbers are kept).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.api.app import create_app
from services.tracker.main import TrackerProcess
from shared.identity import Pseudonymiser
from shared.settings import Settings
from tests.integration.conftest import loop_state, open_alerts
from tests.support.scans import scan_body
from tests.support.servers import TEST_ID_ENCRYPTION_KEYS, random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

APP_KEY = "integration-tests-platform-app-key"
BEIJING = timezone(timedelta(hours=8))
CHINESE = {"green": "绿码", "yellow": "黄码", "red": "红码"}
ID_KEYS = os.environ.get("RETURNLOOP_ID_ENCRYPTION_KEYS", TEST_ID_ENCRYPTION_KEYS)
POLL_INTERVAL_S = 2.0


@dataclass
class FakePlatform:
    """A provincial health-code platform: colours set by the test, answers as the province's."""

    url: str = ""
    colours: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    refused_keys: int = 0

    async def query(self, request: web.Request) -> web.Response:
        if request.headers.get("X-App-Key") != APP_KEY:
            self.refused_keys += 1
            return web.json_response({"code": 401, "msg": "invalid app key"}, status=401)
        id_card = str((await request.json()).get("idCard", ""))
        self.asked.append(id_card)
        if id_card not in self.colours:
            return web.json_response({"code": 404, "msg": "no health code"})
        colour, as_of = self.colours[id_card]
        return web.json_response(
            {
                "code": 0,
                "msg": "ok",
                "data": {
                    "idCard": id_card,
                    "color": CHINESE[colour],
                    # Beijing time, without an offset, as the province writes it.
                    "colorTime": as_of.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
                },
            }
        )


@pytest.fixture(scope="module")
async def platform() -> AsyncIterator[FakePlatform]:
    fake = FakePlatform()
    app = web.Application()
    app.router.add_post("/healthcode/v1/query", fake.query)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.url = f"http://{host}:{port}"
    yield fake
    await runner.cleanup()


@pytest.fixture(scope="module")
def polling_settings(settings: Settings, platform: FakePlatform) -> Settings:
    return settings.model_copy(
        update={
            "id_encryption_keys": SecretStr(ID_KEYS),
            "platform_poll_interval_seconds": POLL_INTERVAL_S,
            "health_code_platform_url": platform.url,
            "health_code_platform_app_key": SecretStr(APP_KEY),
        }
    )


@pytest.fixture(scope="module")
async def polling_tracker(polling_settings: Settings) -> AsyncIterator[TrackerProcess]:
    """The tracker (plain asyncio engine) with its platform poller running."""
    process = TrackerProcess(polling_settings)
    task = asyncio.create_task(process.run())
    await asyncio.wait_for(process.started.wait(), 30)
    await asyncio.wait_for(
        asyncio.gather(*(consumer.ready.wait() for consumer in process.consumers)), 30
    )
    assert process.poller is not None
    yield process
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture(scope="module")
async def api(polling_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API in this process, with ID encryption keys: manifests keep the ID encrypted."""
    app = create_app(polling_settings, CollectorRegistry())
    assert polling_settings.admin_token is not None
    admin = polling_settings.admin_token.get_secret_value()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api.test",
            headers={"Authorization": f"Bearer {admin}"},
        ) as client,
    ):
        yield client


@pytest.fixture
def poll_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger="services.tracker.main"):
        yield caplog


async def depart(api: httpx.AsyncClient, id_number: str) -> None:
    """A worker on a fresh manifest (enterprise, trip) who passed the departure check an
    hour ago."""
    enterprise, trip = unique("e-poll"), unique("t-poll")
    now = datetime.now(UTC)
    manifest = {
        "enterprises": [{"enterprise_id": enterprise, "name": "宁波纺织"}],
        "trips": [
            {
                "trip_id": trip,
                "mode": "bus",
                "origin": "贵阳",
                "destination": "宁波",
                "departs_at": (now - timedelta(minutes=50)).isoformat(),
                "eta": (now + timedelta(hours=20)).isoformat(),
            }
        ],
        "workers": [
            {"id_number": id_number, "name": "王五", "enterprise_id": enterprise, "trip_id": trip}
        ],
    }
    response = await api.post("/v1/manifests", json=manifest)
    assert response.status_code == 200, response.text
    scan = scan_body("departure_check", id_number, hours=0) | {
        "occurred_at": (now - timedelta(hours=1)).isoformat()
    }
    response = await api.post("/v1/scans", json={"scans": [scan]})
    assert response.status_code == 202, response.text
    assert response.json()["results"][0]["status"] == "accepted", response.text


async def departed(pool: asyncpg.Pool, worker_ref: str) -> dict[str, Any] | None:
    return await eventually(
        lambda: loop_state(pool, worker_ref),
        lambda s: s is not None and s["departed"] and s["stage"] == "departure_cleared",
        what="the departure to be applied",
    )


async def view(api: httpx.AsyncClient, worker_ref: str) -> dict[str, Any]:
    response = await api.get(f"/v1/workers/{worker_ref}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_one_poll_round_brings_the_platforms_colour_into_the_loop(
    polling_tracker: TrackerProcess,
    platform: FakePlatform,
    api: httpx.AsyncClient,
    pool: asyncpg.Pool,
    pseudonymiser: Pseudonymiser,
    poll_logs: pytest.LogCaptureFixture,
) -> None:
    id_number = random_id_number()
    ref = pseudonymiser.worker_ref(id_number)
    await depart(api, id_number)
    assert await pool.fetchval(
        "SELECT id_number_encrypted IS NOT NULL FROM workers WHERE worker_ref = $1", ref
    )
    await departed(pool, ref)
    turned_yellow = datetime.now(BEIJING).replace(microsecond=0)
    platform.colours[id_number] = ("yellow", turned_yellow)

    found = await polling_tracker.poll_platform()

    assert found is not None and found.answered >= 1, found
    assert id_number in platform.asked and platform.refused_keys == 0
    held = await eventually(
        lambda: view(api, ref),
        lambda v: v["status"] == "held" and v["health_code"] == "yellow",
        what="the platform's yellow to hold the worker",
    )
    assert held["stage"] == "departure_cleared"
    assert [
        (alert["kind"], datetime.fromisoformat(alert["raised_at"]))
        for alert in held["alerts"]
        if alert["open"]
    ] == [("code_changed_in_transit", turned_yellow)]
    rows = await pool.fetch(
        "SELECT health_code, as_of FROM health_code_updates WHERE worker_ref = $1", ref
    )
    assert [(row["health_code"], row["as_of"]) for row in rows] == [("yellow", turned_yellow)]
    lines = [r for r in poll_logs.records if r.getMessage() == "health-code platform poll"]
    assert lines and all(id_number not in str(r.__dict__) for r in poll_logs.records)
    last = lines[-1].__dict__
    print(
        f"\npoll round: answered={last['answered']} no_code={last['no_code']} "
        f"errors={last['errors']} pages={last['pages']}; view: stage={held['stage']} "
        f"status={held['status']} health_code={held['health_code']}"
    )


async def test_the_poll_loop_keeps_asking_and_the_same_answer_stays_one_row(
    polling_tracker: TrackerProcess,
    platform: FakePlatform,
    api: httpx.AsyncClient,
    pool: asyncpg.Pool,
    pseudonymiser: Pseudonymiser,
) -> None:
    id_number = random_id_number()
    ref = pseudonymiser.worker_ref(id_number)
    await depart(api, id_number)
    await departed(pool, ref)
    turned_red = datetime.now(BEIJING).replace(microsecond=0)
    platform.colours[id_number] = ("red", turned_red)

    # No round asked for here: the tracker's own loop polls every POLL_INTERVAL_S.
    await eventually(
        lambda: open_alerts(pool, ref),
        lambda alerts: "code_changed_in_transit" in alerts,
        what="the poll loop to bring the platform's red in",
    )
    asked_before = platform.asked.count(id_number)
    await eventually(
        lambda: asyncio.sleep(0.1, platform.asked.count(id_number)),
        lambda count: count >= asked_before + 2,
        what="two more rounds asking again",
        within=6 * POLL_INTERVAL_S,
    )
    # An older colour the platform reports later never overrides the newer one.
    platform.colours[id_number] = ("green", turned_red - timedelta(hours=2))
    await eventually(
        lambda: pool.fetchval(
            "SELECT count(*) FROM health_code_updates WHERE worker_ref = $1", ref
        ),
        lambda count: count == 2,
        what="the older green to be logged",
    )
    state = await loop_state(pool, ref)
    assert state is not None and (state["health_code"], state["status"]) == ("red", "held")
    rows = await pool.fetch(
        "SELECT health_code, as_of FROM health_code_updates WHERE worker_ref = $1 ORDER BY as_of",
        ref,
    )
    assert [(row["health_code"], row["as_of"]) for row in rows] == [
        ("green", turned_red - timedelta(hours=2)),
        ("red", turned_red),
    ]
    polls = {
        sample.labels["outcome"]: sample.value
        for family in polling_tracker.metrics.registry.collect()
        for sample in family.samples
        if sample.name == "returnloop_platform_polls_total"
    }
    assert polls.get("answered", 0) >= 3, polls
