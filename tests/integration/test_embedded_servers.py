"""The embedded servers (Tansu broker, pgserver PostgreSQL) start, work and leave nothing behind."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from services.cli.embedded import EmbeddedKafka, EmbeddedPostgres, EmbeddedServerError


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """Wait until *pid* no longer exists (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _processes_mentioning(path: Path) -> list[int]:
    """Pids of live processes whose command line mentions *path*."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(path) in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc.info["pid"])
    return found


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[EmbeddedKafka]:
    """A running embedded broker, stopped afterwards."""
    with EmbeddedKafka(tmp_path / "kafka") as broker:
        yield broker


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A running embedded PostgreSQL, stopped afterwards."""
    with EmbeddedPostgres(tmp_path) as server:
        yield server


@pytest.mark.integration
def test_kafka_answers_metadata(kafka: EmbeddedKafka) -> None:
    host, port = kafka.bootstrap.split(":")
    assert host == "127.0.0.1"
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap, client_id="embedded-test")
    try:
        cluster = admin.describe_cluster()
        assert [(b["host"], b["port"]) for b in cluster["brokers"]] == [("127.0.0.1", int(port))]
        admin.create_topics([NewTopic("embedded-meta", num_partitions=4, replication_factor=1)])
        (topic,) = admin.describe_topics(["embedded-meta"])
        assert topic["error_code"] == 0
        assert len(topic["partitions"]) == 4
    finally:
        admin.close()


@pytest.mark.integration
async def test_kafka_produced_message_is_consumed(kafka: EmbeddedKafka) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait("embedded-roundtrip", key=b"k", value=b"hello")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        "embedded-roundtrip",
        bootstrap_servers=kafka.bootstrap,
        group_id="embedded-test",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,  # Tansu delays a new group's first join by session_timeout/2
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    try:
        got = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            got = [m for msgs in batch.values() for m in msgs]
        assert [(m.key, m.value, m.partition, m.offset) for m in got] == [
            (b"k", b"hello", meta.partition, meta.offset)
        ]
    finally:
        await consumer.stop()


@pytest.mark.integration
async def test_postgres_select_1(postgres: EmbeddedPostgres) -> None:
    url = postgres.database_url
    assert url.startswith("postgresql://")
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SELECT current_database()") == "returnloop"
    finally:
        await conn.close()


@pytest.mark.integration
def test_stop_leaves_no_process(tmp_path: Path) -> None:
    kafka = EmbeddedKafka(tmp_path / "kafka").start()
    postgres = EmbeddedPostgres(tmp_path).start()
    kafka_pid, pg_pid = kafka.pid, postgres.pid
    assert kafka_pid is not None and pg_pid is not None
    assert psutil.pid_exists(kafka_pid) and psutil.pid_exists(pg_pid)

    kafka.stop()
    postgres.stop()

    assert _gone(kafka_pid), "Tansu broker still running after stop()"
    assert _gone(pg_pid), "postmaster still running after stop()"
    assert _processes_mentioning(tmp_path) == []
    assert not kafka.is_running() and not postgres.is_running()
    kafka.stop()  # idempotent
    postgres.stop()


@pytest.mark.integration
async def test_postgres_data_survives_restart(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path) as first:
        conn = await asyncpg.connect(first.database_url)
        await conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        await conn.close()
    with EmbeddedPostgres(tmp_path) as second:
        conn = await asyncpg.connect(second.database_url)
        try:
            assert await conn.fetchval("SELECT v FROM kept") == 42
        finally:
            await conn.close()


@pytest.mark.integration
def test_kafka_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = EmbeddedKafka(tmp_path / "kafka", port=port, startup_timeout=10)
        with pytest.raises(EmbeddedServerError, match="log tail"):
            broker.start()
    assert not broker.is_running()
    assert _processes_mentioning(tmp_path) == []
