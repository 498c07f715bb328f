"""Where the tracker's time goes: its per-batch work, in-process, under cProfile.

No broker: a wave's scans become input records, then each batch of
RETURNLOOP_BATCH_MAX_RECORDS goes through what the tracker's intake does with it
(one Kafka hop) — validate and pseudonymise, ``handlers.apply_scans`` (one
PostgreSQL transaction), and encode the copies it publishes on ``scans.accepted``
— timed per phase, with the top functions by own time. PostgreSQL: RETURNLOOP_DATABASE_URL, or an
embedded one in a temporary directory.

    python -m tests.bench.bench_profile --workers 20000
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from shared.adapters.postgres.schema import migrate
from shared.adapters.postgres.unit_of_work import PostgresStore
from shared.domain.model import Rules
from shared.identity import Pseudonymiser
from shared.service_layer.handlers import apply_scans
from shared.service_layer.intake import validate_records
from shared.service_layer.ports import InputRecord
from tests.bench.bench import BENCH_WORKER_REF_KEY, code_identities, input_messages, wave_of


@contextlib.contextmanager
def database() -> Iterator[str]:
    configured = os.environ.get("RETURNLOOP_DATABASE_URL")
    if configured:
        migrate(configured)
        yield configured
        return
    from services.cli.embedded import EmbeddedPostgres

    data_dir = Path(tempfile.mkdtemp(prefix="returnloop-profile-"))
    try:
        with EmbeddedPostgres(data_dir) as server:
            migrate(server.database_url)
            yield server.database_url
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def profile(
    database_url: str, workers: int, batch: int, top: int, callers: list[str], enabled: bool
) -> None:
    pseudonymiser = Pseudonymiser(BENCH_WORKER_REF_KEY.encode())
    wave = wave_of(workers, seed=7, now=datetime.now(UTC))
    records = [
        InputRecord(topic=topic, partition=0, offset=offset, key=key, value=value)
        for offset, (topic, key, value) in enumerate(input_messages(wave, pseudonymiser))
    ]
    resolved = code_identities(wave, pseudonymiser)
    store = await PostgresStore.connect(database_url, max_size=2)
    phases = {"validate + pseudonymise": 0.0, "apply (one transaction)": 0.0, "encode": 0.0}
    rules = Rules()
    profiler = cProfile.Profile()
    started = time.perf_counter()
    try:
        if enabled:
            profiler.enable()
        for start in range(0, len(records), batch):
            chunk = records[start : start + batch]
            t0 = time.perf_counter()
            # Codes resolved up front: the tracker's one lookup a batch is not profiled here.
            accepted = validate_records(
                chunk, pseudonymiser, now=datetime.now(UTC), resolved=resolved
            ).scans
            t1 = time.perf_counter()
            await apply_scans(store, accepted, rules=rules, now=datetime.now(UTC))
            t2 = time.perf_counter()
            for item in accepted:  # the copies published on scans.accepted
                item.to_bytes()
            t3 = time.perf_counter()
            phases["validate + pseudonymise"] += t1 - t0
            phases["apply (one transaction)"] += t2 - t1
            phases["encode"] += t3 - t2
        profiler.disable()
    finally:
        await store.close()
    total = time.perf_counter() - started
    print(
        f"{len(records):,} records ({workers:,} workers) in batches of {batch}: "
        f"{total:.1f} s{' under cProfile' if enabled else ''}, "
        f"{len(records) / total:,.0f} records/s"
    )
    for name, seconds in phases.items():
        print(f"  {name:42} {seconds:7.2f} s  {seconds / total:6.1%}")
    if not enabled:
        return
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).sort_stats("tottime")
    if top:
        stats.print_stats(top)
    for name in callers:
        stats.print_callers(name)
    print(text.getvalue())


def main(
    workers: Annotated[int, typer.Option(help="workers in the wave")] = 20_000,
    batch: Annotated[int, typer.Option(help="records per batch (the tracker's default)")] = 2000,
    top: Annotated[int, typer.Option(help="functions to list (0: none)")] = 30,
    callers: Annotated[
        list[str], typer.Option(help="also list who calls functions matching this")
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    enabled: Annotated[
        bool, typer.Option("--profile/--no-profile", help="under cProfile, or timed only")
    ] = True,
) -> None:
    """Profile the tracker's per-batch work in-process."""
    with database() as database_url:
        asyncio.run(profile(database_url, workers, batch, top, callers, enabled))


if __name__ == "__main__":
    typer.run(main)
