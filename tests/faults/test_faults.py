"""Faults in the middle of a stream: every scan applied exactly once, every state = oracle.

Each scenario sends its own stream (2,000 workers, ~10 % duplicates, ~5 % out
of order, ~1 % broken), runs tracker processes (Faust workers, small batches so
a fault lands between and inside many transactions), injects one kind of fault
and checks the end against the oracle (see ``tests.faults.harness``).
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from shared.identity import Pseudonymiser
from tests.faults.harness import Scenario, Trackers, deploy
from tests.faults.stream import generate
from tests.support.servers import Servers, server_env, unique

pytestmark = [pytest.mark.faults, pytest.mark.timeout(420)]

WORKERS = 2000


@pytest.fixture
async def scenario(
    request: pytest.FixtureRequest,
    servers: Servers,
    pool: asyncpg.Pool,
    pseudonymiser: Pseudonymiser,
    tmp_path: Path,
) -> AsyncIterator[Scenario]:
    name = request.node.name.removeprefix("test_")
    stream = generate(unique("flt"), WORKERS, seed=zlib.crc32(name.encode()))
    env = server_env(servers, RETURNLOOP_BATCH_MAX_RECORDS="200")
    trackers = Trackers(env, tmp_path)
    run = Scenario(name, stream, pool, pseudonymiser, servers.kafka_bootstrap, trackers)
    await run.send_stream()
    try:
        yield run
    finally:
        trackers.stop_all()


async def test_sigkill_of_the_tracker_mid_batch(
    scenario: Scenario, report: Callable[[str], None]
) -> None:
    tracker = scenario.trackers.start()
    for fraction in (0.15, 0.4, 0.65, 0.85):
        await scenario.mid_stream(fraction, "SIGKILL")
        scenario.trackers.kill(tracker)
        tracker = scenario.trackers.start()
    await scenario.finish_and_check(report)


async def test_one_of_two_trackers_in_a_group_is_killed(
    scenario: Scenario, report: Callable[[str], None]
) -> None:
    first = scenario.trackers.start()
    scenario.trackers.start()
    await scenario.mid_stream(0.3, "SIGKILL of one of two trackers")
    scenario.trackers.kill(first)
    await scenario.finish_and_check(report)


async def test_the_broker_restarts(scenario: Scenario, report: Callable[[str], None]) -> None:
    scenario.trackers.start()
    await scenario.mid_stream(0.3, "Kafka restart (down 5 s, data kept)")
    deploy("kafka/restart.sh", "--down", "5", log=scenario.trackers.log_dir / "kafka.log")
    await scenario.finish_and_check(report)


async def test_postgres_restarts(scenario: Scenario, report: Callable[[str], None]) -> None:
    scenario.trackers.start()
    await scenario.mid_stream(0.3, "PostgreSQL restart (down 5 s, data kept)")
    deploy("postgres/restart.sh", "--down", "5", log=scenario.trackers.log_dir / "postgres.log")
    await scenario.finish_and_check(report)


async def test_postgres_refuses_connections_for_a_while(
    scenario: Scenario, report: Callable[[str], None]
) -> None:
    scenario.trackers.start()
    log = scenario.trackers.log_dir / "postgres.log"
    await scenario.mid_stream(0.3, "PostgreSQL refusing the application role for 15 s")
    deploy("postgres/refuse-connections.sh", "on", log=log)
    try:
        before = await scenario.applied()
        assert before is None, "the suite's own connection should be refused too"
        await scenario.hold(15)
    finally:
        deploy("postgres/refuse-connections.sh", "off", log=log)
    await scenario.finish_and_check(report)


@pytest.mark.timeout(900)
async def test_sigkill_between_the_commit_and_the_publish(
    scenario: Scenario, report: Callable[[str], None]
) -> None:
    """Each tracker kills itself at the worst moments for its announcements: right after
    an apply transaction commits (its transitions and alerts only in the outbox), then
    right after the broker acknowledged a relay round (the rows not yet deleted, so the
    next relay sends them again)."""
    clean = scenario.trackers.env
    # Each life of a tracker is a start-up (seconds) and a few batches. The kills are
    # waited for by count, not by how far the stream got: a faster tracker gets further
    # in a few batches, and the stream must not run dry before they happen.
    scenario.trackers.env = {**clean, "RETURNLOOP_FAULT_KILL_AT": "apply_committed:6"}
    scenario.trackers.start()
    await scenario.until_logged(
        '"point":"apply_committed"', 2, "SIGKILL after each tracker's 6th apply commit"
    )
    scenario.trackers.env = {**clean, "RETURNLOOP_FAULT_KILL_AT": "relay_published:2"}
    await scenario.until_logged(
        '"point":"relay_published"',
        2,
        "SIGKILL after each tracker's 2nd relay round is acknowledged",
    )
    scenario.trackers.env = clean
    result = await scenario.finish_and_check(report)
    assert result["second_copies"] > 0, "a relay killed after publishing sends again"
