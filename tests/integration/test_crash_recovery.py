"""SIGKILL the tracker in the middle of a stream: every scan ends applied exactly once."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from shared import topics
from shared.identity import Pseudonymiser
from tests.support.oracle import expected_states
from tests.support.processes import ServiceProcess
from tests.support.scans import four_scans
from tests.support.servers import Servers, random_id_number, server_env

pytestmark = pytest.mark.integration

WORKERS = 2500


async def _applied(pool: asyncpg.Pool, refs: list[str]) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM applied_scans WHERE worker_ref = ANY($1::text[])", refs
        )
    )


async def test_sigkill_mid_stream_loses_nothing_and_applies_nothing_twice(
    servers: Servers,
    producer: AIOKafkaProducer,
    pool: asyncpg.Pool,
    pseudonymiser: Pseudonymiser,
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    bodies = [body for _ in range(WORKERS) for body in four_scans(random_id_number())]
    delivered = bodies + rng.sample(bodies, len(bodies) // 10)  # ~10 % duplicates
    rng.shuffle(delivered)  # and thoroughly out of order
    refs = sorted({pseudonymiser.worker_ref(body["id_number"]) for body in bodies})
    unique_scans = len(bodies)

    async def produce(part: list[dict[str, object]]) -> None:
        futures = [
            await producer.send(topics.INPUT_TOPICS[str(body["kind"])], orjson.dumps(body))
            for body in part
        ]
        await asyncio.gather(*futures)

    # Delivered in four parts, each after a kill: whatever the tracker's speed, every
    # kill lands with input still to come. Each kill waits for part of what has been
    # delivered so far to be applied (the first 30 % of deliveries hold over 25 % of
    # the distinct scans, the first 60 % over 50 %, the first 90 % over 75 %).
    cut = [0, len(delivered) * 3 // 10, len(delivered) * 6 // 10, len(delivered) * 9 // 10]
    parts = [delivered[a:b] for a, b in zip(cut, [*cut[1:], len(delivered)], strict=True)]
    await produce(parts[0])
    # Small batches, so that the kills land between and inside many transactions.
    env = server_env(servers, RETURNLOOP_BATCH_MAX_RECORDS="200")
    tracker = ServiceProcess(["tracker"], env, tmp_path / "tracker.log").start()
    kills = []
    try:
        for fraction, part in zip((0.15, 0.4, 0.65), parts[1:], strict=True):
            deadline = time.monotonic() + 120
            while await _applied(pool, refs) < unique_scans * fraction:
                assert tracker.running, tracker.log_tail()
                assert time.monotonic() < deadline, "the tracker made no progress"
                await asyncio.sleep(0.05)
            tracker.kill()
            kills.append(await _applied(pool, refs))
            await produce(part)
            tracker = ServiceProcess(["tracker"], env, tmp_path / "tracker.log").start()
        deadline = time.monotonic() + 180
        while await _applied(pool, refs) < unique_scans:
            assert tracker.running, tracker.log_tail()
            assert time.monotonic() < deadline, "not every scan was applied"
            await asyncio.sleep(0.2)
    finally:
        tracker.stop()

    assert len(kills) == 3 and kills[-1] < unique_scans, "the kills must land mid-stream"
    # Exactly once: the log holds each scan once, and each state counts each scan once.
    assert await _applied(pool, refs) == unique_scans
    rows = await pool.fetch(
        "SELECT worker_ref, stage, status, scan_count FROM loop_state "
        "WHERE worker_ref = ANY($1::text[])",
        refs,
    )
    expected = expected_states(bodies, pseudonymiser, now=datetime.now(UTC))
    assert len(rows) == len(refs)
    for row in rows:
        oracle = expected[row["worker_ref"]]
        assert (row["stage"], row["status"], row["scan_count"]) == (
            oracle.stage.value,
            oracle.status.value,
            4,
        )
