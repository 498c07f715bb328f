"""Integration fixtures: an in-process tracker and Kafka/PostgreSQL clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from services.tracker.main import TrackerProcess
from shared.settings import Settings
from tests.support.fixtures import pool, producer, pseudonymiser

__all__ = ["loop_state", "open_alerts", "pool", "producer", "pseudonymiser", "send", "tracker"]


@pytest.fixture(scope="module")
async def tracker(settings: Settings) -> AsyncIterator[TrackerProcess]:
    """The tracker running in this process (plain asyncio engine), for one test module."""
    process = TrackerProcess(settings)
    task = asyncio.create_task(process.run())
    await asyncio.wait_for(process.started.wait(), 30)
    await asyncio.wait_for(
        asyncio.gather(*(consumer.ready.wait() for consumer in process.consumers)), 30
    )
    yield process
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def send(
    producer: AIOKafkaProducer, topic: str, value: Any, key: bytes | None = None
) -> None:
    """Produce one message (a dict is sent as JSON, bytes as they are) and wait for the ack."""
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    await producer.send_and_wait(topic, raw, key=key)


async def loop_state(pool: asyncpg.Pool, worker_ref: str) -> dict[str, Any] | None:
    row = await pool.fetchrow("SELECT * FROM loop_state WHERE worker_ref = $1", worker_ref)
    return dict(row) if row else None


async def open_alerts(pool: asyncpg.Pool, worker_ref: str) -> set[str]:
    rows = await pool.fetch("SELECT kind FROM alerts WHERE worker_ref = $1 AND open", worker_ref)
    return {row["kind"] for row in rows}
