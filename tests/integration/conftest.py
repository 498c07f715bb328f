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
from shared.adapters.postgres.pool import create_pool
from shared.identity import Pseudonymiser
from shared.settings import Settings, resolve_worker_ref_key
from tests.support.servers import Servers


@pytest.fixture(scope="session")
async def pool(servers: Servers) -> AsyncIterator[asyncpg.Pool]:
    database = await create_pool(servers.database_url, max_size=4)
    yield database
    await database.close()


@pytest.fixture(scope="session")
async def producer(servers: Servers) -> AsyncIterator[AIOKafkaProducer]:
    kafka = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap, acks="all")
    await kafka.start()
    yield kafka
    await kafka.stop()


@pytest.fixture(scope="session")
def pseudonymiser(settings: Settings) -> Pseudonymiser:
    return Pseudonymiser(resolve_worker_ref_key(settings))


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
