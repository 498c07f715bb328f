"""A failed batch is never skipped: its offsets are committed only after it is applied."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from kafka.admin import KafkaAdminClient

from services.tracker.main import TrackerProcess
from shared import topics
from shared.adapters.kafka.admin import ensure_topics
from shared.adapters.kafka.consumer import BatchConsumer
from shared.identity import Pseudonymiser
from shared.service_layer.ports import InputRecord
from shared.settings import Settings
from tests.integration.conftest import loop_state, send
from tests.support.kafka import read_topic
from tests.support.scans import scan_body
from tests.support.servers import Servers, random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def test_a_batch_whose_handler_fails_is_delivered_again_and_nothing_is_skipped(
    servers: Servers, producer: AIOKafkaProducer
) -> None:
    topic = unique("test.retry")
    ensure_topics(servers.kafka_bootstrap, partitions=2, names=[topic])
    sent = [f"message-{index}".encode() for index in range(50)]
    for value in sent:
        await producer.send_and_wait(topic, value, key=value[-2:])
    calls: list[list[bytes]] = []

    async def flaky(records: Sequence[InputRecord]) -> None:
        calls.append([record.value or b"" for record in records])
        if len(calls) <= 2:
            raise RuntimeError("database unavailable")

    consumer = BatchConsumer(
        name="retry-test",
        bootstrap=servers.kafka_bootstrap,
        group_id=unique("group"),
        topics=[topic],
        handler=flaky,
        max_records=100,
        retry_backoff_s=0.05,
    )
    task = asyncio.create_task(consumer.run())
    try:

        async def handled() -> set[bytes]:
            return {value for batch in calls[2:] for value in batch}

        await eventually(
            handled,
            lambda values: values == set(sent),
            within=30,
            what="every message handled after the failures",
        )
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 30)
    # The records of the failed calls came again: the first failed batch reappears whole.
    assert set(calls[0]) <= {value for batch in calls[2:] for value in batch}


async def test_with_two_batches_in_flight_no_commit_passes_a_batch_not_yet_applied(
    servers: Servers, producer: AIOKafkaProducer
) -> None:
    topic = unique("test.pipeline")
    ensure_topics(servers.kafka_bootstrap, partitions=1, names=[topic])
    sent = [f"message-{index:03}".encode() for index in range(300)]
    for value in sent:
        await producer.send(topic, value)
    await producer.flush()
    group = unique("group")
    first_batch_fails = asyncio.Event()
    release = asyncio.Event()
    handled: list[bytes] = []
    first: list[int] = []

    async def stuck_first(records: Sequence[InputRecord]) -> None:
        if not first:
            first.append(records[0].offset)
        if records[0].offset == first[0] and not release.is_set():
            first_batch_fails.set()
            raise RuntimeError("database unavailable")
        handled.extend(record.value or b"" for record in records)

    consumer = BatchConsumer(
        name="pipeline-test",
        bootstrap=servers.kafka_bootstrap,
        group_id=group,
        topics=[topic],
        handler=stuck_first,
        max_records=50,
        retry_backoff_s=0.05,
        retry_backoff_max_s=0.1,
        depth=2,
    )
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(first_batch_fails.wait(), 30)
        # The second batch is applied meanwhile, but its offsets wait for the first's.
        await eventually(
            lambda: asyncio.sleep(0, len(handled)),
            lambda count: count >= 50,
            within=30,
            what="the second batch handled while the first one fails",
        )
        for _ in range(10):
            await asyncio.sleep(0.1)
            committed = _committed(servers, group, topic).get(0, -1)
            assert committed <= first[0], "committed past a batch that was never applied"
        release.set()
        await eventually(
            lambda: asyncio.to_thread(_committed, servers, group, topic),
            lambda offsets: offsets.get(0, -1) == len(sent),
            within=30,
            what="every offset committed once the first batch is applied",
        )
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 30)
    assert set(handled) == set(sent)


async def test_a_consumer_stopped_has_committed_every_batch_it_handled(
    servers: Servers, producer: AIOKafkaProducer
) -> None:
    # A batch's commit goes on while the next batch is fetched; stopping waits for it.
    topic = unique("test.last-commit")
    ensure_topics(servers.kafka_bootstrap, partitions=1, names=[topic])
    sent = [f"message-{index:03}".encode() for index in range(120)]
    for value in sent:
        await producer.send(topic, value)
    await producer.flush()
    group = unique("group")
    handled: list[bytes] = []
    batches = 0
    consumer: BatchConsumer

    async def stop_after_the_last(records: Sequence[InputRecord]) -> None:
        nonlocal batches
        batches += 1
        handled.extend(record.value or b"" for record in records)
        if len(handled) == len(sent):
            consumer.stop()

    consumer = BatchConsumer(
        name="last-commit-test",
        bootstrap=servers.kafka_bootstrap,
        group_id=group,
        topics=[topic],
        handler=stop_after_the_last,
        max_records=10,
    )
    await asyncio.wait_for(consumer.run(), 30)
    assert handled == sent
    assert batches > 1 and consumer.batches_committed == batches
    assert _committed(servers, group, topic) == {0: len(sent)}


def _committed(servers: Servers, group: str, topic: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=servers.kafka_bootstrap)
    try:
        offsets = admin.list_group_offsets(group)[group]
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def _position_of(servers: Servers, topic: str, marker: bytes) -> tuple[int, int] | None:
    for record in await read_topic(servers.kafka_bootstrap, topic):
        if marker in (record.value or b""):
            return record.partition, record.offset
    return None


async def test_a_database_outage_never_lets_the_offset_of_an_unapplied_scan_be_committed(
    settings: Settings,
    servers: Servers,
    tracker: TrackerProcess,
    producer: AIOKafkaProducer,
    pool: asyncpg.Pool,
    pseudonymiser: Pseudonymiser,
) -> None:
    marker = unique("unapplied-station")
    # A real database error: the state table is gone for a while (as in a bad
    # deploy or a restore). Every apply transaction fails until it is back.
    await pool.execute("ALTER TABLE loop_state RENAME TO loop_state_away")
    poisoned_id = random_id_number()
    # Scans are applied by the intake consumer, in the batch that validated them.
    group = f"{settings.consumer_group}-intake"
    source = topics.INPUT_TOPICS["departure_check"]
    try:
        await send(
            producer,
            source,
            scan_body("departure_check", poisoned_id, hours=0, station=marker),
        )
        position = await eventually(
            lambda: _position_of(servers, source, marker.encode()),
            lambda found: found is not None,
            within=30,
            what="the scan to be on its input topic",
        )
        assert position is not None
        partition, offset = position
        # Give the apply transaction time to fail and be retried several times.
        for _ in range(15):
            await asyncio.sleep(0.2)
            committed = _committed(servers, group, source).get(partition, -1)
            assert committed <= offset, "committed past a scan that was never applied"
        assert await _position_of(servers, topics.ACCEPTED, marker.encode()) is None, (
            "announced on scans.accepted before it was applied"
        )
        count = await pool.fetchval("SELECT count(*) FROM applied_scans WHERE station = $1", marker)
        assert count == 0
    finally:
        await pool.execute("ALTER TABLE loop_state_away RENAME TO loop_state")

    ref = pseudonymiser.worker_ref(poisoned_id)
    state = await eventually(
        lambda: loop_state(pool, ref),
        lambda s: s is not None,
        within=60,
        what="the scan applied once the database accepts it",
    )
    assert state["stage"] == "departure_cleared"
    assert await pool.fetchval("SELECT count(*) FROM applied_scans WHERE worker_ref = $1", ref) == 1
    await eventually(
        lambda: asyncio.to_thread(_committed, servers, group, source),
        lambda committed: committed.get(partition, -1) > offset,
        within=30,
        what="the offset committed after the scan was applied",
    )
