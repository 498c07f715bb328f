"""Scans straight onto Kafka, through the tracker, into PostgreSQL (real broker and database)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from services.tracker.main import TrackerProcess
from shared import topics
from shared.identity import Pseudonymiser
from tests.integration.conftest import loop_state, open_alerts, send
from tests.support.kafka import read_topic
from tests.support.scans import four_scans, scan_body
from tests.support.servers import Servers, random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def test_four_scans_out_of_order_with_duplicates_close_the_loop(
    tracker: TrackerProcess,
    producer: AIOKafkaProducer,
    pool: asyncpg.Pool,
    pseudonymiser: Pseudonymiser,
) -> None:
    id_number = random_id_number()
    scans = four_scans(id_number)
    delivered = scans + scans[1:3]
    random.shuffle(delivered)

    for body in delivered:
        await send(producer, topics.INPUT_TOPICS[body["kind"]], body)

    ref = pseudonymiser.worker_ref(id_number)
    state = await eventually(
        lambda: loop_state(pool, ref),
        lambda s: s is not None and s["scan_count"] == 4 and s["stage"] == "checked_in",
        what="the loop to close",
    )
    assert state["status"] == "closed"
    assert await open_alerts(pool, ref) == set()
    applied = await pool.fetchval("SELECT count(*) FROM applied_scans WHERE worker_ref = $1", ref)
    assert applied == 4


async def test_a_fever_at_departure_holds_the_worker(
    tracker: TrackerProcess,
    producer: AIOKafkaProducer,
    pool: asyncpg.Pool,
    pseudonymiser: Pseudonymiser,
) -> None:
    id_number = random_id_number()

    await send(
        producer,
        topics.INPUT_TOPICS["departure_check"],
        scan_body("departure_check", id_number, hours=0, temperature_c=38.5),
    )

    ref = pseudonymiser.worker_ref(id_number)
    state = await eventually(
        lambda: loop_state(pool, ref), lambda s: s is not None, what="the state row"
    )
    assert (state["stage"], state["status"]) == ("registered", "held")
    assert await open_alerts(pool, ref) == {"fever_at_departure"}


async def _dead_letters(servers: Servers, marker: bytes) -> list[tuple[bytes, dict[str, bytes]]]:
    return [
        (record.value, dict(record.headers))
        for record in await read_topic(servers.kafka_bootstrap, topics.REJECTED)
        if marker in (record.value or b"")
    ]


async def test_bad_input_goes_to_the_dead_letter_topic_and_the_stream_carries_on(
    tracker: TrackerProcess,
    producer: AIOKafkaProducer,
    pool: asyncpg.Pool,
    pseudonymiser: Pseudonymiser,
    servers: Servers,
) -> None:
    marker = unique("poison")
    id_number = random_id_number()
    bad_checksum = id_number[:-1] + ("0" if id_number[-1] != "0" else "1")
    poison = [
        (topics.INPUT_TOPICS["boarding"], f"not json {marker}".encode(), "invalid_json"),
        (
            topics.INPUT_TOPICS["departure_check"],
            orjson.dumps(scan_body("departure_check", bad_checksum, hours=0, station=marker)),
            "id_number_checksum",
        ),
        (
            topics.INPUT_TOPICS["checkin"],
            orjson.dumps(scan_body("boarding", id_number, hours=1, station=marker)),
            "kind_topic_mismatch",
        ),
        (
            topics.INPUT_TOPICS["arrival_check"],
            orjson.dumps(
                {
                    **scan_body("arrival_check", id_number, hours=2, station=marker),
                    "kind": "teleport",
                }
            ),
            "unknown_kind",
        ),
    ]
    # One key: the bad-checksum scan sits on the same partition, ahead of the good one.
    key = unique("scanner").encode()
    for topic, raw, _ in poison:
        await send(producer, topic, raw, key=key)
    good = scan_body("departure_check", id_number, hours=0)
    await send(producer, topics.INPUT_TOPICS["departure_check"], good, key=key)

    ref = pseudonymiser.worker_ref(id_number)
    await eventually(
        lambda: loop_state(pool, ref),
        lambda s: s is not None and s["stage"] == "departure_cleared",
        what="the good scan behind the poison ones",
    )
    letters = await eventually(
        lambda: _dead_letters(servers, marker.encode()),
        lambda found: len(found) == len(poison),
        what="every poison message in scans.rejected",
    )
    by_value = {value: headers for value, headers in letters}
    for topic, raw, reason in poison:
        headers = by_value[raw]  # the original bytes, unchanged
        assert headers["reason"].decode() == reason
        assert headers["source_topic"].decode() == topic
        assert int(headers["source_offset"]) >= 0
    good_on = [
        record.partition
        for record in await read_topic(
            servers.kafka_bootstrap, topics.INPUT_TOPICS["departure_check"]
        )
        if good["scan_id"].encode() in (record.value or b"")
    ]
    assert good_on == [int(by_value[poison[1][1]]["source_partition"])]


async def _topic_values(servers: Servers, topic: str) -> bytes:
    """Every key and value on ``topic``, joined."""
    records = await read_topic(servers.kafka_bootstrap, topic)
    return b"\n".join((r.key or b"") + (r.value or b"") for r in records)


async def test_no_topic_past_validation_carries_the_plain_id_number(
    tracker: TrackerProcess,
    producer: AIOKafkaProducer,
    pool: asyncpg.Pool,
    pseudonymiser: Pseudonymiser,
    servers: Servers,
) -> None:
    id_number = random_id_number()
    for body in four_scans(id_number, checkin={"enterprise_id": "E-wrong"}):
        await send(producer, topics.INPUT_TOPICS[body["kind"]], body)
    ref = pseudonymiser.worker_ref(id_number)
    await eventually(
        lambda: loop_state(pool, ref),
        lambda s: s is not None and s["scan_count"] == 4,
        what="all four scans applied",
    )

    for topic in topics.KEYED_TOPICS:
        seen = await _topic_values(servers, topic)
        assert id_number.encode() not in seen, topic
    assert ref.encode() in await _topic_values(servers, topics.ACCEPTED)


async def test_the_sweep_raises_overdue_arrival_when_the_eta_passes(
    tracker: TrackerProcess,
    producer: AIOKafkaProducer,
    pool: asyncpg.Pool,
    pseudonymiser: Pseudonymiser,
) -> None:
    id_number = random_id_number()
    ref = pseudonymiser.worker_ref(id_number)
    trip_id = unique("B")
    now = datetime.now(UTC)
    # Grace is 2 h: an eta 2 h minus 3 s ago makes the deadline pass 3 s from now.
    eta = now - timedelta(hours=2) + timedelta(seconds=3)
    await pool.execute(
        "INSERT INTO trips (trip_id, mode, origin, destination, departs_at, eta) "
        "VALUES ($1, 'bus', '贵州省毕节市', '温州市鹿城区', $2, $3)",
        trip_id,
        now - timedelta(hours=12),
        eta,
    )
    await send(
        producer,
        topics.INPUT_TOPICS["departure_check"],
        scan_body(
            "departure_check",
            id_number,
            hours=0,
            occurred_at=(now - timedelta(hours=12)).isoformat(),
        ),
    )
    await send(
        producer,
        topics.INPUT_TOPICS["boarding"],
        scan_body(
            "boarding",
            id_number,
            hours=0,
            trip_id=trip_id,
            occurred_at=(now - timedelta(hours=11)).isoformat(),
        ),
    )

    state = await eventually(
        lambda: loop_state(pool, ref),
        lambda s: s is not None and s["stage"] == "boarded",
        what="boarding applied",
    )
    assert state["status"] == "open"
    await eventually(
        lambda: open_alerts(pool, ref),
        lambda kinds: "overdue_arrival" in kinds,
        within=30,
        what="the sweep to raise overdue_arrival",
    )
    state = await loop_state(pool, ref)
    assert state is not None and state["status"] == "broken"
