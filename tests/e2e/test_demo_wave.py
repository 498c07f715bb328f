"""The small demo wave through the running system, then a pg_dump with no plain ID number."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.settings import Settings
from tests.e2e.conftest import RunningSystem
from tests.support.postgres import pg_dump
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e


async def test_the_demo_wave_ends_as_the_domain_predicts_and_no_id_number_is_stored(
    system: RunningSystem,
    servers: Servers,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = datetime.now(UTC)
    seed = await system.unused_seed("small", now=now)
    ok = await system.feed_demo(
        "small", settings=settings, now=now, seed=seed, settle_timeout_s=120
    )
    printed = capsys.readouterr().out
    assert ok, printed
    assert "every loop ended as expected" in printed
    assert "withdrawn: 3 (expected 3)" in printed
    # Paid at the rates the system was started with (tests/e2e/conftest.py).
    assert "subsidies  total 56,600 yuan (expected 56,600) for 285 verified loops" in printed

    from services.cli.demo import build_wave

    id_numbers = build_wave("small", now=datetime.now(UTC), seed=seed).id_numbers
    dump = await asyncio.to_thread(pg_dump, servers.database_url, tmp_path / "dump.sql")
    assert b"applied_scans" in dump  # the dump really holds the data
    leaked = [number for number in id_numbers if number.encode() in dump]
    assert leaked == []
