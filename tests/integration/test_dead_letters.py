"""`returnloop dlq`: dead letters listed, shown masked, and replayed once after a fix."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from services.tracker.main import TrackerProcess
from shared import topics
from shared.identity import Pseudonymiser, mask_id_number
from shared.service_layer.messages import DeadLetter
from tests.integration.conftest import loop_state, send
from tests.support.kafka import read_topic
from tests.support.scans import scan_body
from tests.support.servers import Servers, random_id_number, server_env, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


async def dlq(servers: Servers, *args: str, **env: str) -> Run:
    """`returnloop dlq ARGS` in a child process pointed at the test servers."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "dlq",
        *args,
        env=server_env(servers, **env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


async def dead_letter_ids(servers: Servers, marker: str) -> dict[str, str]:
    """reason -> ``PARTITION:OFFSET`` of the dead letters whose bytes hold ``marker``."""
    return {
        dict(record.headers)["reason"].decode(): f"{record.partition}:{record.offset}"
        for record in await read_topic(servers.kafka_bootstrap, topics.REJECTED)
        if marker.encode() in (record.value or b"")
    }


async def test_rejected_input_is_listed_and_shown_with_id_numbers_masked(
    tracker: TrackerProcess, producer: AIOKafkaProducer, servers: Servers
) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    marker = unique("dlq-listed")
    id_number = random_id_number()
    bad_checksum = id_number[:-1] + ("0" if id_number[-1] != "0" else "1")
    await send(
        producer,
        topics.INPUT_TOPICS["departure_check"],
        scan_body("departure_check", bad_checksum, hours=0, station=marker),
    )
    await send(
        producer,
        topics.INPUT_TOPICS["arrival_check"],
        {**scan_body("arrival_check", id_number, hours=2, station=marker), "kind": "teleport"},
    )
    ids = await eventually(
        lambda: dead_letter_ids(servers, marker),
        lambda found: len(found) == 2,
        what="both dead letters",
    )

    listed = await dlq(servers, "list", "--since", since, "--limit", "1000")
    assert listed.code == 0, listed.err
    checksum_row = next(
        line for line in listed.out.splitlines() if line.startswith(ids["id_number_checksum"] + " ")
    )
    assert "id_number_checksum" in checksum_row and "scans.departure_check:" in checksum_row
    assert ids["unknown_kind"] in listed.out
    assert bad_checksum not in listed.out and id_number not in listed.out
    only = await dlq(servers, "list", "--since", since, "--reason", "unknown_kind")
    assert ids["unknown_kind"] in only.out and ids["id_number_checksum"] + " " not in only.out
    from_topic = await dlq(
        servers, "list", "--since", since, "--source-topic", topics.INPUT_TOPICS["arrival_check"]
    )
    assert ids["unknown_kind"] in from_topic.out

    shown = await dlq(servers, "show", ids["id_number_checksum"])
    assert shown.code == 0, shown.err
    assert marker in shown.out and "id_number_checksum" in shown.out
    assert mask_id_number(bad_checksum) in shown.out and bad_checksum not in shown.out
    revealed = await dlq(servers, "show", "--reveal", ids["id_number_checksum"])
    assert bad_checksum in revealed.out


async def test_a_bad_id_or_no_servers_is_a_clear_error(servers: Servers) -> None:
    nowhere = await dlq(servers, "show", "0:999999999")
    assert nowhere.code == 2 and "no dead letter 0:999999999" in nowhere.err
    garbled = await dlq(servers, "show", "seventeen")
    assert garbled.code == 2 and "PARTITION:OFFSET" in garbled.err
    unset = await dlq(servers, "list", RETURNLOOP_KAFKA_BOOTSTRAP="")
    assert unset.code == 2 and "RETURNLOOP_KAFKA_BOOTSTRAP" in unset.err
    unfiltered = await dlq(servers, "replay")
    assert unfiltered.code == 2 and "--ids" in unfiltered.err


async def put_dead_letter(
    producer: AIOKafkaProducer, value: bytes, source_topic: str, reason: str = "invalid_field"
) -> str:
    """A dead letter as a since-fixed bug would have left it; returns its id."""
    letter = DeadLetter(
        reason=reason,
        message="rejected by a bug since fixed",
        original_key=None,
        original_value=value,
        source_topic=source_topic,
        source_partition=None if source_topic == "http" else 0,
        source_offset=None if source_topic == "http" else 0,
        rejected_at=datetime.now(UTC),
    )
    sent = await producer.send_and_wait(topics.REJECTED, value, headers=letter.headers())
    return f"{sent.partition}:{sent.offset}"


async def copies_on(servers: Servers, topic: str, scan_id: str) -> int:
    records = await read_topic(servers.kafka_bootstrap, topic)
    return sum(scan_id.encode() in (record.value or b"") for record in records)


async def test_replay_after_a_fix_applies_the_scans_once(
    tracker: TrackerProcess,
    producer: AIOKafkaProducer,
    pool: asyncpg.Pool,
    pseudonymiser: Pseudonymiser,
    servers: Servers,
) -> None:
    from_kafka, from_http = random_id_number(), random_id_number()
    kafka_scan = scan_body("departure_check", from_kafka, hours=0)
    http_scan = scan_body("departure_check", from_http, hours=0)
    ids = [
        await put_dead_letter(producer, orjson.dumps(kafka_scan), "scans.departure_check"),
        await put_dead_letter(producer, orjson.dumps(http_scan), "http"),
        await put_dead_letter(producer, f"not json {unique('x')}".encode(), "http", "invalid_json"),
    ]
    departures = topics.INPUT_TOPICS["departure_check"]

    dry = await dlq(servers, "replay", "--dry-run", "--ids", ",".join(ids))
    assert dry.code == 0, dry.err
    assert "would send 2, already replayed 0, skipped 1" in dry.out
    assert await copies_on(servers, departures, kafka_scan["scan_id"]) == 0

    replayed = await dlq(servers, "replay", "--ids", ids[0], "--ids", f"{ids[1]},{ids[2]}")
    assert replayed.code == 0, replayed.err
    assert "sent 2, already replayed 0, skipped 1" in replayed.out
    assert f"{ids[2]}: skipped" in replayed.out
    for ref in (pseudonymiser.worker_ref(from_kafka), pseudonymiser.worker_ref(from_http)):
        await eventually(
            partial(loop_state, pool, ref),
            lambda state: state is not None and state["stage"] == "departure_cleared",
            what="the replayed scan applied",
        )

    again = await dlq(servers, "replay", "--ids", ",".join(ids))
    assert "sent 0, already replayed 2, skipped 1" in again.out
    assert await copies_on(servers, departures, kafka_scan["scan_id"]) == 1
    assert await copies_on(servers, departures, http_scan["scan_id"]) == 1
    listed = await dlq(servers, "list", "--reason", "invalid_field", "--limit", "1000")
    replayed_row = next(line for line in listed.out.splitlines() if line.startswith(ids[0] + " "))
    assert replayed_row.split()[5] != "-"  # the replayed column has a time
    assert from_kafka not in listed.out
