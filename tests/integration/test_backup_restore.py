"""Backup and restore as docs/OPERATIONS.md tells an operator: ``pg_dump -Fc`` of a
populated database, ``pg_restore`` into a fresh one, ``returnloop rebuild`` (the CLI) on
it: every state as before the dump. Then the Kafka input that arrived after the dump is
replayed: ``returnloop replay-accepted --since`` a minute before the dump; the overlap
changes nothing and the restored states equal the live ones.

Own databases, an own topic and group (the shared topics and the tracker's groups are
other tests'), all removed after. The replayed topic plays ``scans.accepted``; what
fills the live database from it is the apply stage's work (decode,
``handlers.apply_scans``, commit), without the rest of a tracker process.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.adapters.postgres.schema import asyncpg_url, migrate
from shared.service_layer.messages import AcceptedScan
from tests.support.postgres import client_binary
from tests.support.scan_log import apply_all, scan_log, scratch_database, states, store_on
from tests.support.scan_log import synthetic_scans as make_scans
from tests.support.scans import T0
from tests.support.servers import Servers, server_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def _produce(bootstrap: str, topic: str, scans: list[AcceptedScan]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for item in scans:
            await producer.send(topic, item.to_bytes(), key=item.key())
        await producer.flush()
    finally:
        await producer.stop()


async def _consume_and_apply(bootstrap: str, topic: str, group: str, database_url: str) -> int:
    """The apply stage: from the group's committed offsets to the end of the topic, each
    batch applied then its offsets committed. How many records it read."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    read = 0
    ends: dict[TopicPartition, int] = {}
    try:
        async with store_on(database_url) as store:
            while True:
                fetched = await consumer.getmany(timeout_ms=500, max_records=1000)
                batch = [
                    AcceptedScan.from_bytes(record.value or b"")
                    for records in fetched.values()
                    for record in records
                ]
                if batch:
                    await apply_all(store, batch)
                    await consumer.commit()
                    read += len(batch)
                if consumer.assignment():
                    # Everything was produced before this consumer started.
                    ends = ends or await consumer.end_offsets(list(consumer.assignment()))
                    positions = [await consumer.position(tp) for tp in ends]
                    if all(at >= end for at, end in zip(positions, ends.values(), strict=True)):
                        return read
    finally:
        await consumer.stop()


async def _server_major(database_url: str) -> int:
    async with store_on(database_url) as store:
        number: int = int(await store.pool.fetchval("SHOW server_version_num"))
    return number // 10_000


def _run(command: list[str], **kwargs: object) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{command[0]} failed:\n{done.stdout}\n{done.stderr}"
    return str(done.stdout)


async def test_a_dump_restored_and_rebuilt_gives_every_state_and_the_replay_catches_up(
    servers: Servers, tmp_path: Path
) -> None:
    major = await _server_major(servers.database_url)
    pg_dump = client_binary("pg_dump", major)
    pg_restore = client_binary("pg_restore", major)
    bootstrap = servers.kafka_bootstrap
    topic = f"restore-test-{secrets.token_hex(4)}.scans.accepted"
    group = f"restore-test-{secrets.token_hex(4)}-apply"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    try:
        async with (
            scratch_database(servers.database_url, "live") as live,
            scratch_database(servers.database_url, "restored") as restored,
        ):
            await asyncio.to_thread(migrate, live)
            before_dump = make_scans(2000, seed=21, start=T0)
            await _produce(bootstrap, topic, before_dump)
            assert await _consume_and_apply(bootstrap, topic, group, live) == len(before_dump)
            async with store_on(live) as store:
                states_at_dump = await states(store.pool)
            assert len(states_at_dump) == 2000

            dumped_at = datetime.now(UTC)
            dump = tmp_path / "returnloop.dump"
            backup = [str(pg_dump), "--format=custom", "--load-via-partition-root"]
            _run([*backup, "--file", str(dump), asyncpg_url(live)])

            # Input after the dump: new workers, and a redelivery of some old scans.
            after_dump = make_scans(300, seed=22, start=T0) + before_dump[:200]
            await _produce(bootstrap, topic, after_dump)
            assert await _consume_and_apply(bootstrap, topic, group, live) == len(after_dump)
            async with store_on(live) as store:
                live_states = await states(store.pool)
                # applied_at is when a database applied the scan: a replay's is later.
                live_log = await scan_log(store.pool, but="applied_at")
            assert len(live_states) == 2300

            _run([str(pg_restore), "--no-owner", "--exit-on-error", "-d", restored, str(dump)])
            rebuilt = _run(
                [sys.executable, "-m", "services.cli", "rebuild"],
                cwd=ROOT,
                env=server_env(servers, RETURNLOOP_DATABASE_URL=restored),
            )
            assert "rebuilt 2000 worker(s)" in rebuilt, rebuilt
            assert "0 state(s) changed" in rebuilt, rebuilt
            async with store_on(restored) as store:
                assert await states(store.pool) == states_at_dump

            # Replay what arrived after the dump: from a minute before it, as OPERATIONS says.
            replay_from = (dumped_at - timedelta(minutes=1)).isoformat()
            command = [sys.executable, "-m", "services.cli", "replay-accepted"]
            replay = _run(
                [*command, "--since", replay_from, "--topic", topic],
                cwd=ROOT,
                env=server_env(servers, RETURNLOOP_DATABASE_URL=restored),
            )
            replayed = int(replay.split("replayed ")[1].split(" record(s)")[0])
            # The overlap (everything since a minute before the dump) is read again.
            assert replayed == len(before_dump) + len(after_dump)
            async with store_on(restored) as store:
                assert await scan_log(store.pool, but="applied_at") == live_log
                assert await states(store.pool) == live_states
    finally:
        await admin.delete_topics([topic])
        await admin.close()
