"""`returnloop rebuild` recomputes loop state from the applied-scan log (real PostgreSQL)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from services.tracker.main import TrackerProcess
from shared import topics
from shared.adapters.postgres.unit_of_work import PostgresStore
from shared.domain.model import Rules
from shared.identity import WORKER_REF_PREFIX, Pseudonymiser
from shared.service_layer.rebuild import rebuild
from tests.integration.conftest import send
from tests.support.oracle import expected_states
from tests.support.scans import four_scans, scan_body
from tests.support.servers import random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def _states(pool: asyncpg.Pool, refs: list[str]) -> dict[str, tuple[str, str, int]]:
    rows = await pool.fetch(
        "SELECT worker_ref, stage, status, scan_count FROM loop_state "
        "WHERE worker_ref = ANY($1::text[])",
        refs,
    )
    return {row["worker_ref"]: (row["stage"], row["status"], row["scan_count"]) for row in rows}


def _neighbours(
    pseudonymiser: Pseudonymiser, count: int, digits: int = 3
) -> tuple[list[str], tuple[str, str | None]]:
    """``count`` ID numbers whose worker_refs share their first ``digits`` hex digits, and
    the key range of that prefix: a rebuild of the range re-decides them and the few
    others there (1/4,096 of any database the tests share), not the whole database."""
    by_prefix: dict[str, list[str]] = defaultdict(list)
    while True:
        number = random_id_number()
        prefix = pseudonymiser.worker_ref(number)[: len(WORKER_REF_PREFIX) + digits]
        by_prefix[prefix].append(number)
        if len(by_prefix[prefix]) == count:
            following = int(prefix.removeprefix(WORKER_REF_PREFIX), 16) + 1
            upper = f"{WORKER_REF_PREFIX}{following:0{digits}x}" if following < 16**digits else None
            return by_prefix[prefix], (prefix, upper)


async def test_rebuild_restores_corrupted_and_deleted_states(
    tracker: TrackerProcess,
    producer: AIOKafkaProducer,
    pool: asyncpg.Pool,
    pseudonymiser: Pseudonymiser,
) -> None:
    id_numbers, key_range = _neighbours(pseudonymiser, 4)
    # A trip of its own: no manifest's eta (other tests') may make it overdue.
    trip = {"trip_id": unique("T")}
    bodies = [
        *four_scans(id_numbers[0], boarding=trip),
        *four_scans(id_numbers[1], boarding=trip)[:2],
        scan_body("departure_check", id_numbers[2], hours=0, temperature_c=38.4),
        *four_scans(id_numbers[3], boarding=trip, checkin={"enterprise_id": "E0002"}),
    ]
    delivered = bodies + bodies[::3]
    random.shuffle(delivered)
    for body in delivered:
        await send(producer, topics.INPUT_TOPICS[body["kind"]], body)
    oracle = expected_states(bodies, pseudonymiser, now=datetime.now(UTC))
    scan_counts = Counter(pseudonymiser.worker_ref(body["id_number"]) for body in bodies)
    expected = {
        ref: (state.stage.value, state.status.value, scan_counts[ref])
        for ref, state in oracle.items()
    }
    refs = sorted(expected)
    await eventually(
        lambda: _states(pool, refs), lambda states: states == expected, what="the tracker's states"
    )

    await pool.execute(
        "UPDATE loop_state SET stage = 'registered', status = 'broken', scan_count = 99 "
        "WHERE worker_ref = ANY($1::text[])",
        refs[:2],
    )
    await pool.execute("DELETE FROM loop_state WHERE worker_ref = ANY($1::text[])", refs[2:])
    assert await _states(pool, refs) != expected

    store = PostgresStore(pool)
    report = await rebuild(
        store, rules=Rules(), chunk_size=2, jobs=2, progress=False, key_range=key_range
    )

    assert await _states(pool, refs) == expected
    assert report.workers >= len(refs)
    assert report.scans >= len(bodies)
    assert report.corrected >= len(refs)
