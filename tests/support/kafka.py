"""Read what a topic holds, from the beginning, without joining a consumer group."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord


async def read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord]:  # type: ignore[type-arg]
    """Every record on ``topic`` now (waits briefly for the first fetch)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        records = []
        batches = await consumer.getmany(timeout_ms=3000, max_records=100_000)
        while batches:
            for messages in batches.values():
                records.extend(messages)
            batches = await consumer.getmany(timeout_ms=1000, max_records=100_000)
        return records
    finally:
        await consumer.stop()
