"""Colour from the platform (contract v1.1): a check with no scanned colour goes by the
worker's latest platform colour at or before it (at most 24 h older), and the checkpoint
says where its colour came from. Colour updates over POST /v1/healthcode/updates."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from shared import topics
from tests.support.api import post_accepted_scans
from tests.support.journeys import (
    Enrolled,
    TopicTail,
    ago,
    colour,
    enrol,
    headers_of,
    health_code_id,
    holds,
    iso,
    link,
    post_colours,
    recorded,
    replay_dead_letter,
    role_client,
    wait_for_scans,
    wait_for_view,
)
from tests.support.processes import RunningSystem
from tests.support.servers import Servers, random_id_number, unique

pytestmark = pytest.mark.e2e


def check(kind: str, worker: Enrolled, at: datetime, **fields: Any) -> dict[str, Any]:
    """A health check with a normal temperature and, unless ``fields`` give one, no colour."""
    return {
        "scan_id": unique("colour"),
        "kind": kind,
        "id_number": worker.id_number,
        "occurred_at": iso(at),
        "station": "毕节招工组" if kind == "departure_check" else "鹿城健康服务站",
        "temperature_c": 36.5,
        **fields,
    }


async def checked(
    admin: httpx.AsyncClient, worker: Enrolled, sent: dict[str, Any]
) -> dict[str, Any]:
    """The worker's view once ``sent`` is their checkpoint of its kind."""
    return await wait_for_view(
        admin,
        worker.id_number,
        recorded(sent["kind"], sent["scan_id"]),
        what="the check applied",
    )


async def colour_applied(admin: httpx.AsyncClient, worker: Enrolled, shade: str) -> None:
    """Wait until the tracker has applied the worker's colour updates (their latest colour
    is ``shade``): they travel another topic than the scans, so nothing else orders them."""
    await wait_for_view(
        admin,
        worker.id_number,
        lambda view: view["health_code"] == shade,
        what=f"the platform's {shade} applied",
    )


def open_alerts(view: dict[str, Any]) -> list[str]:
    return sorted(alert["kind"] for alert in view["alerts"] if alert["open"])


@pytest.fixture
async def integrator(system: RunningSystem, admin: httpx.AsyncClient) -> Any:
    async with role_client(system, admin, "integrator") as client:
        yield client


# --- a departure check without a scanned colour ---------------------------------------


@pytest.mark.parametrize(
    ("name_by", "hours_before"),
    [
        pytest.param("id_number", 3.0, id="by ID number, 3 h before"),
        pytest.param("code", 23.5, id="by health-code id, 23.5 h before"),
        pytest.param("id_number", 24.0, id="by ID number, 24 h before to the second"),
        pytest.param("card", 0.0, id="by card number, at the same instant"),
    ],
)
async def test_a_green_platform_colour_at_or_before_the_check_lets_it_pass(
    admin: httpx.AsyncClient, integrator: httpx.AsyncClient, name_by: str, hours_before: float
) -> None:
    (worker,) = await enrol(admin)
    code, card = await link(admin, worker.id_number)
    named = {"id_number": worker.id_number, "code": code, "card": card}[name_by]
    field = "id_number" if name_by == "id_number" else "code"
    at = ago(2)

    (result,) = await post_colours(
        integrator, colour("green", at - timedelta(hours=hours_before), **{field: named})
    )
    await colour_applied(admin, worker, "green")
    sent = check("departure_check", worker, at)
    await post_accepted_scans(admin, sent)

    assert result["status"] == "accepted", result
    view = await checked(admin, worker, sent)
    departure = view["checkpoints"]["departure_check"]
    assert departure["passed"] is True, view
    assert (departure["health_code"], departure["health_code_source"]) == ("green", "platform")
    assert view["stage"] == "departure_cleared"
    assert open_alerts(view) == []


async def test_the_scan_may_come_before_the_colour_it_goes_by(
    admin: httpx.AsyncClient, integrator: httpx.AsyncClient
) -> None:
    """Event time decides: the colour update arriving after the scan still counts."""
    (worker,) = await enrol(admin)
    at = ago(2)
    sent = check("departure_check", worker, at)
    await post_accepted_scans(admin, sent)
    view = await checked(admin, worker, sent)
    assert view["checkpoints"]["departure_check"]["passed"] is False

    await post_colours(
        integrator, colour("green", at - timedelta(hours=1), id_number=worker.id_number)
    )

    view = await wait_for_view(
        admin,
        worker.id_number,
        lambda v: v["checkpoints"]["departure_check"]["passed"] is True,
        what="the check re-decided with the platform colour",
    )
    assert view["checkpoints"]["departure_check"]["health_code_source"] == "platform"
    assert view["status"] == "open" and open_alerts(view) == []


@pytest.mark.parametrize(
    ("updates", "colour_shown", "source"),
    [
        pytest.param([], None, "missing", id="no platform colour"),
        pytest.param([("green", 24.5)], None, "missing", id="green 24.5 h before: too old"),
        pytest.param([("green", -0.5)], None, "missing", id="green only after the check"),
        pytest.param([("red", 1.0)], "red", "platform", id="red 1 h before"),
        pytest.param([("yellow", 2.0)], "yellow", "platform", id="yellow 2 h before"),
        pytest.param(
            [("green", 3.0), ("red", 1.0)], "red", "platform", id="green, then red: the latest"
        ),
    ],
)
async def test_without_a_recent_green_platform_colour_the_departure_check_fails(
    admin: httpx.AsyncClient,
    integrator: httpx.AsyncClient,
    updates: list[tuple[str, float]],
    colour_shown: str | None,
    source: str,
) -> None:
    (worker,) = await enrol(admin)
    at = ago(2)
    if updates:
        await post_colours(
            integrator,
            *(
                colour(shade, at - timedelta(hours=hours), id_number=worker.id_number)
                for shade, hours in updates
            ),
        )
        latest = min(updates, key=lambda update: update[1])[0]
        await colour_applied(admin, worker, latest)
    sent = check("departure_check", worker, at)

    await post_accepted_scans(admin, sent)

    view = await checked(admin, worker, sent)
    departure = view["checkpoints"]["departure_check"]
    assert departure["passed"] is False, view
    assert departure.get("health_code") == colour_shown
    assert departure["health_code_source"] == source
    assert "code_not_green_at_departure" in open_alerts(view)
    assert (view["stage"], view["status"]) == ("registered", "held")


async def test_a_later_recheck_with_a_fresh_green_releases_the_hold(
    admin: httpx.AsyncClient, integrator: httpx.AsyncClient
) -> None:
    (worker,) = await enrol(admin)
    first = check("departure_check", worker, ago(3))
    await post_accepted_scans(admin, first)
    assert (await checked(admin, worker, first))["status"] == "held"

    await post_colours(integrator, colour("green", ago(2.5), id_number=worker.id_number))
    await colour_applied(admin, worker, "green")
    again = check("departure_check", worker, ago(2))
    await post_accepted_scans(admin, again)

    view = await checked(admin, worker, again)
    assert (view["stage"], view["status"]) == ("departure_cleared", "open")
    alert = next(a for a in view["alerts"] if a["kind"] == "code_not_green_at_departure")
    assert alert["open"] is False and alert["closed_at"]


# --- the checkpoint says where its colour came from -----------------------------------


async def test_each_checkpoint_shows_its_colour_and_where_it_came_from(
    admin: httpx.AsyncClient, integrator: httpx.AsyncClient
) -> None:
    (worker,) = await enrol(admin, departs_at=ago(6))
    await post_colours(integrator, colour("green", ago(10), id_number=worker.id_number))
    await colour_applied(admin, worker, "green")
    scans = [
        check("departure_check", worker, ago(5), health_code="green"),
        {
            "scan_id": unique("colour"),
            "kind": "boarding",
            "id_number": worker.id_number,
            "occurred_at": iso(ago(4.5)),
            "station": f"{worker.trip_id} 车门",
            "trip_id": worker.trip_id,
        },
        check("arrival_check", worker, ago(1)),
    ]

    await post_accepted_scans(admin, *scans)

    view = await wait_for_scans(admin, worker.id_number, *scans)
    departure, arrival = (
        view["checkpoints"]["departure_check"],
        view["checkpoints"]["arrival_check"],
    )
    assert (departure["health_code"], departure["health_code_source"]) == ("green", "scanned")
    assert (arrival["health_code"], arrival["health_code_source"]) == ("green", "platform")
    assert arrival["passed"] is True
    assert "health_code_source" not in view["checkpoints"]["boarding"]
    assert (view["stage"], view["status"]) == ("arrival_cleared", "open")


async def test_an_arrival_recheck_with_no_platform_colour_fails_at_arrival(
    admin: httpx.AsyncClient,
) -> None:
    (worker,) = await enrol(admin, departs_at=ago(6))
    scans = [
        check("departure_check", worker, ago(5), health_code="green"),
        {
            "scan_id": unique("colour"),
            "kind": "boarding",
            "id_number": worker.id_number,
            "occurred_at": iso(ago(4.5)),
            "station": "车门",
            "trip_id": worker.trip_id,
        },
        # The green scanned at departure is no platform colour: the recheck needs its own.
        check("arrival_check", worker, ago(1)),
    ]

    await post_accepted_scans(admin, *scans)

    view = await wait_for_scans(admin, worker.id_number, *scans)
    arrival = view["checkpoints"]["arrival_check"]
    assert arrival["passed"] is False
    assert arrival["health_code_source"] == "missing"
    assert open_alerts(view) == ["code_not_green_at_arrival"]
    assert view["status"] == "held"


# --- POST /v1/healthcode/updates ------------------------------------------------------


async def test_updates_are_answered_one_result_per_index_and_bad_ones_do_not_sink_the_batch(
    admin: httpx.AsyncClient, integrator: httpx.AsyncClient
) -> None:
    (worker,) = await enrol(admin)
    code, _ = await link(admin, worker.id_number)
    wrong_digit = worker.id_number[:-1] + ("1" if worker.id_number[-1] == "0" else "0")
    updates: list[Any] = [
        colour("green", ago(1), id_number=worker.id_number),
        colour("blue", ago(1), id_number=worker.id_number),
        colour("green", ago(1), id_number=wrong_digit),
        {"id_number": worker.id_number, "health_code": "green", "as_of": "yesterday"},
        {"id_number": worker.id_number, "health_code": "green", "as_of": "2020-03-01T08:00:00"},
        colour("green", ago(1), code=unique("hc-unknown")),
        {"health_code": "green", "as_of": iso(ago(1))},
        "green",
        colour("green", ago(1), code="hc\x00"),
        colour("yellow", ago(0.5), code=code),
        colour("green", ago(1), id_number=random_id_number(), code=code),
    ]

    results = await post_colours(integrator, *updates)

    assert [(r["status"], r.get("reason")) for r in results] == [
        ("accepted", None),
        ("rejected", "invalid_health_code"),
        ("rejected", "id_number_checksum"),
        ("rejected", "invalid_timestamp"),
        ("rejected", "invalid_timestamp"),
        ("rejected", "unknown_code"),
        ("rejected", "missing_field"),
        ("rejected", "not_an_object"),
        ("rejected", "invalid_code"),
        ("accepted", None),
        ("rejected", "code_mismatch"),
    ]
    assert all(r["message"] for r in results if r["status"] == "rejected")
    view = await wait_for_view(
        admin, worker.id_number, lambda v: v.get("health_code") == "yellow", what="yellow applied"
    )
    assert view["health_code"] == "yellow"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"updates": "green"}, id="updates not a list"),
        pytest.param({"id_number": "x", "health_code": "green"}, id="no updates key"),
        pytest.param([], id="a list"),
        pytest.param({"updates": [{}] * 1001}, id="1001 updates"),
    ],
)
async def test_a_body_that_is_not_a_batch_of_updates_is_a_4xx(
    integrator: httpx.AsyncClient, body: Any
) -> None:
    response = await integrator.post("/v1/healthcode/updates", json=body)

    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["code"]


async def test_an_empty_batch_is_answered_with_no_results(integrator: httpx.AsyncClient) -> None:
    assert await post_colours(integrator) == []


@pytest.mark.parametrize(
    ("role", "fields", "status"),
    [
        ("integrator", {}, 202),
        ("recruiter", {}, 403),
        ("health_station", {}, 403),
        ("supervisor", {}, 403),
        ("gate", {"enterprise_id": "E-colour"}, 403),
    ],
)
async def test_who_may_post_colour_updates(
    system: RunningSystem,
    admin: httpx.AsyncClient,
    role: str,
    fields: dict[str, Any],
    status: int,
) -> None:
    id_number = random_id_number()
    body = {"updates": [colour("green", ago(1), id_number=id_number)]}
    if "enterprise_id" in fields:  # a gate token is issued for an enterprise on a manifest only
        enterprise = {"enterprise_id": fields["enterprise_id"], "name": "色码厂", "shortage": 0}
        assert (await admin.post("/v1/manifests", json={"enterprises": [enterprise]})).is_success
    async with role_client(system, admin, role, **fields) as client:
        response = await client.post("/v1/healthcode/updates", json=body)

    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["error"]["code"] == "forbidden"
        assert (
            await admin.post("/v1/workers/lookup", json={"id_number": id_number})
        ).status_code == 404


# --- colour updates naming a code, over Kafka and replayed ----------------------------


async def test_a_colour_update_on_kafka_may_name_the_worker_by_code(
    admin: httpx.AsyncClient, producer: AIOKafkaProducer
) -> None:
    (worker,) = await enrol(admin)
    _, card = await link(admin, worker.id_number)
    at = ago(2)
    update = colour("green", at - timedelta(hours=1), code=card)

    await producer.send_and_wait(topics.HEALTHCODE_UPDATES, orjson.dumps(update))
    sent = check("departure_check", worker, at)
    await post_accepted_scans(admin, sent)

    view = await wait_for_view(
        admin,
        worker.id_number,
        lambda v: v["checkpoints"].get("departure_check", {}).get("passed") is True,
        what="the check passed on the platform's green",
    )
    assert view["checkpoints"]["departure_check"]["health_code_source"] == "platform"


@pytest.mark.parametrize("over", ["kafka", "http"])
async def test_a_colour_update_by_an_unknown_code_replays_once_linked(
    admin: httpx.AsyncClient,
    integrator: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    servers: Servers,
    system: RunningSystem,
    over: str,
) -> None:
    (worker,) = await enrol(admin)
    code = health_code_id()
    at = ago(2)
    update = colour("green", at - timedelta(hours=1), code=code)
    dead_letters = await TopicTail(servers.kafka_bootstrap, topics.REJECTED).start()
    if over == "kafka":
        await producer.send_and_wait(topics.HEALTHCODE_UPDATES, orjson.dumps(update))
    else:
        (result,) = await post_colours(integrator, update)
        assert (result["status"], result["reason"]) == ("rejected", "unknown_code")
    (letter,) = await dead_letters.find(holds(code))
    assert headers_of(letter)["reason"] == "unknown_code"
    assert headers_of(letter)["source_topic"] == (
        topics.HEALTHCODE_UPDATES if over == "kafka" else "http"
    )

    await link(admin, worker.id_number, code=code)
    replayed = await replay_dead_letter(system, letter, reason="unknown_code")
    sent = check("departure_check", worker, at)
    await post_accepted_scans(admin, sent)

    assert f"sent to {topics.HEALTHCODE_UPDATES}" in replayed
    view = await wait_for_view(
        admin,
        worker.id_number,
        lambda v: v["checkpoints"].get("departure_check", {}).get("passed") is True,
        what="the replayed colour applied",
    )
    assert view["checkpoints"]["departure_check"]["health_code_source"] == "platform"
