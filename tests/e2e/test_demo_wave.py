"""The small demo wave through the running system, then a pg_dump with no plain ID number."""

from __future__ import annotations

import asyncio
import random
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pgserver.postgres_server
import pytest

from services.cli.demo_feed import feed_and_summarise
from shared.adapters.postgres.schema import asyncpg_url
from shared.settings import Settings
from tests.e2e.conftest import RunningSystem
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e


def pg_dump(database_url: str, target: Path) -> bytes:
    binary = Path(pgserver.postgres_server.POSTGRES_BIN_PATH) / "pg_dump"
    subprocess.run(
        [str(binary), "--no-owner", "--file", str(target), asyncpg_url(database_url)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return target.read_bytes()


async def test_the_demo_wave_ends_as_the_domain_predicts_and_no_id_number_is_stored(
    system: RunningSystem,
    servers: Servers,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed = random.randrange(1_000_000)
    ok = await feed_and_summarise(
        "small",
        api_url=system.url,
        admin_token=system.admin_token,
        database_url=servers.database_url,
        worker_ref_key=system.env["RETURNLOOP_WORKER_REF_KEY"].encode(),
        settings=settings,
        now=datetime.now(UTC),
        alive=lambda: system.tracker.running,
        settle_timeout_s=120,
        seed=seed,
    )
    printed = capsys.readouterr().out
    assert ok, printed
    assert "every loop ended as expected" in printed

    from services.cli.demo import build_wave

    id_numbers = build_wave("small", now=datetime.now(UTC), seed=seed).id_numbers
    dump = await asyncio.to_thread(pg_dump, servers.database_url, tmp_path / "dump.sql")
    assert b"applied_scans" in dump  # the dump really holds the data
    leaked = [number for number in id_numbers if number.encode() in dump]
    assert leaked == []
