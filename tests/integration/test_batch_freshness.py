"""A batch carries what reached the broker while the batch before it was handled."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaProducer

from shared.adapters.kafka.admin import ensure_topics
from shared.adapters.kafka.consumer import BatchConsumer
from shared.service_layer.ports import InputRecord
from tests.support.servers import Servers, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def test_what_reaches_the_broker_during_a_batch_comes_in_the_next_batch_not_later(
    servers: Servers, producer: AIOKafkaProducer
) -> None:
    topic = unique("test.fresh")
    ensure_topics(servers.kafka_bootstrap, partitions=1, names=[topic])
    await producer.send_and_wait(topic, b"first")
    batches: list[list[bytes]] = []

    async def slow(records: Sequence[InputRecord]) -> None:
        batches.append([record.value or b"" for record in records])
        if len(batches) == 1:
            # Sent while the first batch is handled: "early" is prefetched at once,
            # "late" reaches the broker after that prefetch.
            await producer.send_and_wait(topic, b"early")
            await asyncio.sleep(0.3)
            await producer.send_and_wait(topic, b"late")
            await asyncio.sleep(0.3)

    consumer = BatchConsumer(
        name="freshness-test",
        bootstrap=servers.kafka_bootstrap,
        group_id=unique("group"),
        topics=[topic],
        handler=slow,
    )
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(
            lambda: asyncio.sleep(0, sum(len(batch) for batch in batches)),
            lambda count: count == 3,
            within=30,
            what="the three records handled",
        )
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 30)
    assert batches == [[b"first"], [b"early", b"late"]]
