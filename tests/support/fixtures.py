"""Fixtures that more than one tier uses, written once: a tier's conftest imports those it
needs (``from tests.support.fixtures import pool``) and names them in its ``__all__``.

Each stands on the ``servers`` and ``settings`` fixtures of the tier that imports it
(tests/conftest.py's, or the fault suite's real servers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from shared.adapters.postgres.pool import create_pool
from shared.identity import Pseudonymiser
from shared.settings import Settings, resolve_worker_ref_key
from tests.support.servers import Servers


@pytest.fixture(scope="session")
async def pool(servers: Servers) -> AsyncIterator[asyncpg.Pool]:
    """A small connection pool on the test database."""
    database = await create_pool(servers.database_url, max_size=4)
    yield database
    await database.close()


@pytest.fixture(scope="session")
async def producer(servers: Servers) -> AsyncIterator[AIOKafkaProducer]:
    """A producer on the test broker that waits for every replica's ack."""
    kafka = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap, acks="all")
    await kafka.start()
    yield kafka
    await kafka.stop()


@pytest.fixture(scope="session")
def pseudonymiser(settings: Settings) -> Pseudonymiser:
    """ID number -> worker_ref, with the key the system under test uses."""
    return Pseudonymiser(resolve_worker_ref_key(settings))
