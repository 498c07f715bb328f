"""Identify the worker by what they show (contract v1.1): scans that carry the health-code
id or the social-security card number the scanner read instead of the ID number, over HTTP
and over Kafka, and what becomes of a code that nothing resolves."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from shared import topics
from tests.support.api import lookup, post_scans, worker_ref_of
from tests.support.journeys import (
    PATIENCE,
    TopicTail,
    ago,
    card_number,
    enrol,
    headers_of,
    health_code_id,
    holds,
    iso,
    link,
    post_colours,
    recorded,
    replay_dead_letter,
    url_code,
    wait_for_scans,
    wait_for_view,
)
from tests.support.processes import RunningSystem
from tests.support.servers import Servers, random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def scan(kind: str, *, hours_ago: float = 1.0, **fields: Any) -> dict[str, Any]:
    """A scan of ``kind`` naming the worker as ``fields`` say (``code=`` or ``id_number=``)."""
    needs: dict[str, dict[str, Any]] = {
        "departure_check": {"temperature_c": 36.5, "health_code": "green"},
        "boarding": {"trip_id": "T-none"},
        "arrival_check": {"temperature_c": 36.6, "health_code": "green"},
        "checkin": {"enterprise_id": "E-none"},
    }
    return {
        "scan_id": unique("bycode"),
        "kind": kind,
        "occurred_at": iso(ago(hours_ago)),
        "station": "毕节招工组 扫码",
        **needs[kind],
        **fields,
    }


def rejected(reason: str) -> dict[str, str]:
    return {"status": "rejected", "reason": reason}


def outcome(result: dict[str, Any]) -> dict[str, str]:
    return {key: result[key] for key in ("status", "reason") if result.get(key) is not None}


# --- over HTTP ------------------------------------------------------------------------


async def test_a_health_code_id_a_url_code_and_a_card_number_each_reach_their_worker(
    admin: httpx.AsyncClient,
) -> None:
    by_code, by_url, by_card = await enrol(admin, 3)
    code, _ = await link(admin, by_code.id_number)
    long_url = url_code(512)
    await link(admin, by_url.id_number, code=long_url)
    _, card = await link(admin, by_card.id_number)
    unknown = health_code_id()
    scans = [
        scan("departure_check", code=code),
        scan("departure_check", code=long_url),
        scan("departure_check", code=unknown),
        scan("departure_check", code=card),
    ]

    results = await post_scans(admin, *scans)

    assert [outcome(result) for result in results] == [
        {"status": "accepted"},
        {"status": "accepted"},
        rejected("unknown_code"),
        {"status": "accepted"},
    ]
    assert [result["scan_id"] for result in results] == [s["scan_id"] for s in scans]
    for worker, sent in ((by_code, scans[0]), (by_url, scans[1]), (by_card, scans[3])):
        view = await wait_for_view(
            admin,
            worker.id_number,
            recorded("departure_check", sent["scan_id"]),
            what=f"the scan by code applied to {worker.name}",
        )
        assert view["stage"] == "departure_cleared", view
        assert view["checkpoints"]["departure_check"]["passed"] is True


async def test_the_card_number_is_read_as_the_scanner_gives_it(admin: httpx.AsyncClient) -> None:
    (worker,) = await enrol(admin)
    _, card = await link(admin, worker.id_number)
    sent = scan("departure_check", code=f"  {card.lower()} ")

    (result,) = await post_scans(admin, sent)

    assert outcome(result) == {"status": "accepted"}, result
    await wait_for_view(
        admin, worker.id_number, recorded("departure_check", sent["scan_id"]), what="applied"
    )


async def test_an_unknown_code_is_dead_lettered_with_its_reason_and_the_batch_goes_on(
    admin: httpx.AsyncClient, servers: Servers
) -> None:
    (worker,) = await enrol(admin)
    dead_letters = await TopicTail(servers.kafka_bootstrap, topics.REJECTED).start()
    unknown = scan("departure_check", code=health_code_id())
    known = scan("departure_check", id_number=worker.id_number)

    results = await post_scans(admin, unknown, known)

    assert [outcome(result) for result in results] == [
        rejected("unknown_code"),
        {"status": "accepted"},
    ]
    assert results[0]["message"]
    (letter,) = await dead_letters.find(holds(unknown["scan_id"]))
    assert headers_of(letter)["reason"] == "unknown_code"
    assert headers_of(letter)["source_topic"] == "http"
    assert orjson.loads(letter.value) == unknown
    await wait_for_view(
        admin, worker.id_number, recorded("departure_check", known["scan_id"]), what="applied"
    )


async def test_an_id_number_and_a_code_of_different_workers_are_a_code_mismatch(
    admin: httpx.AsyncClient,
) -> None:
    shown, claimed = await enrol(admin, 2)
    code, card = await link(admin, shown.id_number)
    mismatched = [
        scan("departure_check", id_number=claimed.id_number, code=code),
        scan("departure_check", id_number=claimed.id_number, code=card),
    ]
    agreeing = scan("departure_check", id_number=shown.id_number, code=card)

    results = await post_scans(admin, *mismatched, agreeing)

    assert [outcome(result) for result in results] == [
        rejected("code_mismatch"),
        rejected("code_mismatch"),
        {"status": "accepted"},
    ]
    await wait_for_view(
        admin, shown.id_number, recorded("departure_check", agreeing["scan_id"]), what="applied"
    )
    assert (await lookup(admin, claimed.id_number)).get("checkpoints") == {}


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        pytest.param("hc\x00nul", "invalid_code", id="NUL"),
        pytest.param("hc\x07bell", "invalid_code", id="BEL"),
        pytest.param("https://hc.example/q?a=1\nb=2", "invalid_code", id="newline inside"),
        pytest.param("hc\x85next-line", "invalid_code", id="C1 control"),
        pytest.param("x" * 513, "invalid_code", id="513 characters"),
        pytest.param(url_code(4096), "invalid_code", id="4096 characters"),
        pytest.param("", "invalid_code", id="empty"),
        pytest.param(12345678901, "invalid_code", id="a number"),
    ],
)
async def test_a_malformed_code_is_refused_with_a_clear_reason_never_a_5xx(
    admin: httpx.AsyncClient, code: Any, reason: str
) -> None:
    (result,) = await post_scans(admin, scan("departure_check", code=code))

    assert outcome(result) == rejected(reason), result
    assert "code" in result["message"]


async def test_malformed_codes_elsewhere_are_4xx_with_the_error_shape(
    admin: httpx.AsyncClient,
) -> None:
    id_number = random_id_number()
    for bad in ("hc\x01", "y" * 513):
        responses = [
            await admin.post("/v1/links/resolve", json={"code": bad}),
            await admin.post(
                "/v1/links",
                json={"id_number": id_number, "health_code_id": bad, "ssc_card_no": card_number()},
            ),
            await admin.post("/v1/decisions", json={"kind": "departure_check", "code": bad}),
            await admin.post("/v1/gate/decision", json={"code": bad, "enterprise_id": unique("E")}),
        ]
        for response in responses:
            assert response.status_code == 422, (response.request.url, response.text)
            assert response.json()["error"]["code"], response.text
        (update,) = await post_colours(
            admin, {"code": bad, "health_code": "green", "as_of": iso(ago(1))}
        )
        assert outcome(update) == rejected("invalid_code")


async def test_a_512_character_url_code_links_resolves_and_decides(
    admin: httpx.AsyncClient,
) -> None:
    (worker,) = await enrol(admin)
    code = url_code(512)
    await link(admin, worker.id_number, code=code)

    resolved = await admin.post("/v1/links/resolve", json={"code": code})
    decided = await admin.post("/v1/decisions", json={"kind": "departure_check", "code": code})

    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["linked"]["health_code_id"] == code
    assert decided.status_code == 200, decided.text
    assert decided.json()["worker"]["name"] == worker.name


# --- over Kafka -----------------------------------------------------------------------


async def test_an_unknown_code_from_kafka_is_dead_lettered_and_replays_once_linked(
    admin: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    servers: Servers,
    system: RunningSystem,
) -> None:
    (worker,) = await enrol(admin)
    code = health_code_id()
    dead_letters = await TopicTail(servers.kafka_bootstrap, topics.REJECTED).start()
    sent = scan("departure_check", code=code)

    await producer.send_and_wait(topics.INPUT_TOPICS["departure_check"], orjson.dumps(sent))

    (letter,) = await dead_letters.find(holds(sent["scan_id"]))
    headers = headers_of(letter)
    assert headers["reason"] == "unknown_code"
    assert headers["source_topic"] == topics.INPUT_TOPICS["departure_check"]
    assert (await lookup(admin, worker.id_number)).get("checkpoints") == {}

    await link(admin, worker.id_number, code=code)
    replayed = await replay_dead_letter(system, letter, reason="unknown_code")

    assert f"sent to {topics.INPUT_TOPICS['departure_check']}" in replayed
    view = await wait_for_view(
        admin,
        worker.id_number,
        recorded("departure_check", sent["scan_id"]),
        what="the replayed scan applied",
    )
    assert view["stage"] == "departure_cleared"
    again = await replay_dead_letter(system, letter, reason="unknown_code")
    assert "sent 0, already replayed 1" in again


async def test_an_unknown_code_over_http_replays_once_linked(
    admin: httpx.AsyncClient, servers: Servers, system: RunningSystem
) -> None:
    (worker,) = await enrol(admin)
    code = health_code_id()
    dead_letters = await TopicTail(servers.kafka_bootstrap, topics.REJECTED).start()
    departed = scan("departure_check", id_number=worker.id_number, hours_ago=3)
    boarded = scan("boarding", code=code, trip_id=worker.trip_id, hours_ago=2)

    results = await post_scans(admin, departed, boarded)

    assert [outcome(result) for result in results] == [
        {"status": "accepted"},
        rejected("unknown_code"),
    ]
    (letter,) = await dead_letters.find(holds(boarded["scan_id"]))
    # The bus door scanned the health code before the worker's codes were linked.
    await link(admin, worker.id_number, code=code)
    replayed = await replay_dead_letter(system, letter, reason="unknown_code")

    assert f"sent to {topics.INPUT_TOPICS['boarding']}" in replayed
    view = await wait_for_scans(admin, worker.id_number, departed, boarded)
    assert (view["stage"], view["status"]) == ("boarded", "open")


async def test_a_malformed_code_from_kafka_is_dead_lettered_not_retried(
    admin: httpx.AsyncClient, producer: AIOKafkaProducer, servers: Servers
) -> None:
    (worker,) = await enrol(admin)
    dead_letters = await TopicTail(servers.kafka_bootstrap, topics.REJECTED).start()
    bad = [
        scan("departure_check", code="hc\x1b[31m"),
        scan("departure_check", code=url_code(600)),
        scan("departure_check", code=health_code_id(), id_number=wrong_check_digit()),
    ]
    good = scan("departure_check", id_number=worker.id_number)

    for body in (*bad, good):
        await producer.send_and_wait(topics.INPUT_TOPICS["departure_check"], orjson.dumps(body))

    for body, reason in zip(
        bad, ("invalid_code", "invalid_code", "id_number_checksum"), strict=True
    ):
        (letter,) = await dead_letters.find(holds(body["scan_id"]))
        assert headers_of(letter)["reason"] == reason, headers_of(letter)
    await wait_for_view(
        admin, worker.id_number, recorded("departure_check", good["scan_id"]), what="applied"
    )


def wrong_check_digit() -> str:
    valid = random_id_number()
    return valid[:-1] + ("1" if valid[-1] == "0" else "0")


# --- nothing carries the code past intake ---------------------------------------------


async def test_no_code_text_travels_on_scans_accepted(
    admin: httpx.AsyncClient, producer: AIOKafkaProducer, servers: Servers
) -> None:
    over_http, over_kafka = await enrol(admin, 2)
    http_code, http_card = await link(admin, over_http.id_number, code=url_code(300))
    kafka_code, kafka_card = await link(admin, over_kafka.id_number)
    accepted = await TopicTail(servers.kafka_bootstrap, topics.ACCEPTED).start()
    by_code = scan("departure_check", code=http_code)
    by_card = scan("boarding", code=http_card, trip_id=over_http.trip_id, hours_ago=0.5)
    from_kafka = scan("departure_check", code=kafka_card, override_reason="扫码枪读取社保卡")

    await post_scans(admin, by_code, by_card)
    await producer.send_and_wait(topics.INPUT_TOPICS["departure_check"], orjson.dumps(from_kafka))

    secrets = (http_code, http_card, kafka_code, kafka_card, over_http.id_number)
    refs = {
        by_code["scan_id"]: await worker_ref_of(admin, over_http.id_number),
        by_card["scan_id"]: await worker_ref_of(admin, over_http.id_number),
        from_kafka["scan_id"]: await worker_ref_of(admin, over_kafka.id_number),
    }
    for scan_id, worker_ref in refs.items():
        (message,) = await accepted.find(holds(scan_id))
        body = orjson.loads(message.value)
        assert message.key == worker_ref.encode()
        assert body["worker_ref"] == worker_ref
        assert "code" not in body and "id_number" not in body, body
        everything = message.value + b"".join(value for _, value in message.headers or ())
        for secret in (*secrets, over_kafka.id_number):
            assert secret.encode() not in everything, (secret, body)
            assert secret.lower().encode() not in everything.lower()


async def test_no_code_text_travels_on_healthcode_accepted(
    admin: httpx.AsyncClient, producer: AIOKafkaProducer, servers: Servers
) -> None:
    (worker,) = await enrol(admin)
    code, card = await link(admin, worker.id_number, code=url_code(400))
    worker_ref = await worker_ref_of(admin, worker.id_number)
    accepted = await TopicTail(servers.kafka_bootstrap, topics.HEALTHCODE_ACCEPTED).start()

    await post_colours(admin, {"code": code, "health_code": "yellow", "as_of": iso(ago(3))})
    by_card = {"code": card, "health_code": "green", "as_of": iso(ago(2))}
    await producer.send_and_wait(topics.HEALTHCODE_UPDATES, orjson.dumps(by_card))

    messages = await eventually(
        lambda: accepted.find(holds(worker_ref)),
        lambda found: len(found) >= 2,
        what="both colour updates accepted",
        within=PATIENCE,
    )
    for message in messages:
        body = orjson.loads(message.value)
        assert message.key == worker_ref.encode()
        assert "code" not in body and "id_number" not in body, body
        for secret in (code, card, worker.id_number):
            assert secret.encode() not in message.value
    assert sorted(orjson.loads(m.value)["health_code"] for m in messages) == ["green", "yellow"]
