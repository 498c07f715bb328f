"""The ``returnloop`` command line."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperCommand

from services.cli.dlq import dlq_cli
from shared.logging import configure_logging
from shared.settings import Settings, SettingsError

if TYPE_CHECKING:
    from shared.service_layer.rebuild import RebuildReport

cli = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="returnloop: closed-loop tracking of workers' return-to-work journeys.",
)
logger = logging.getLogger("returnloop")
cli.add_typer(dlq_cli, name="dlq")


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as error:  # pydantic's ValidationError names the bad variable
        typer.echo(f"returnloop: bad settings: {error}", err=True)
        raise typer.Exit(2) from None


def _require_servers(settings: Settings) -> tuple[str, str]:
    if not settings.kafka_bootstrap or not settings.database_url:
        typer.echo(
            "returnloop: set RETURNLOOP_KAFKA_BOOTSTRAP and RETURNLOOP_DATABASE_URL "
            "(or use `returnloop up`, which starts embedded servers)",
            err=True,
        )
        raise typer.Exit(2)
    return settings.kafka_bootstrap, settings.database_url


DEMO_WAVES = ("small", "city")
DEFAULT_DEMO = "small"


class _UpCommand(TyperCommand):
    """``up``, where a bare ``--demo`` (last, or before another option) means ``--demo small``.

    Typer's parser has no option with an optional value, so the default is put in
    before parsing; ``--demo small|city`` and ``--demo=…`` pass through untouched.
    """

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        given = list(args)
        for index in reversed(range(len(given))):
            following = given[index + 1] if index + 1 < len(given) else None
            if given[index] == "--demo" and (following is None or following.startswith("-")):
                given.insert(index + 1, DEFAULT_DEMO)
        return super().parse_args(ctx, given)


@cli.command(cls=_UpCommand)
def up(
    demo: Annotated[
        str | None,
        typer.Option(
            metavar="[small|city]",
            help="feed a demo wave: small (300 workers; what a bare --demo means) or city "
            "(29,400 workers)",
        ),
    ] = None,
    exit_after_demo: Annotated[
        bool, typer.Option(help="stop everything once the demo summary is printed")
    ] = False,
    seed: Annotated[
        int, typer.Option(help="seed of the demo wave (other seeds, other workers)")
    ] = 2020,
) -> None:
    """Run everything in the foreground: servers (embedded unless configured), tracker, API."""
    from services.cli.launcher import run_up

    if demo is not None and demo not in DEMO_WAVES:
        typer.echo(
            f"returnloop: --demo takes small or city (or nothing: small), not {demo!r}", err=True
        )
        raise typer.Exit(2)
    settings = _settings()
    # The console is for the ready line, the demo summary, warnings and errors; the
    # launcher's full log goes next to the tracker's and the API's.
    log_file = settings.data_dir.resolve() / "logs" / "launcher.log"
    try:
        configure_logging(
            "launcher", settings.log_level, console_level="WARNING", log_file=log_file
        )
    except OSError as error:
        typer.echo(f"returnloop: cannot write the log {log_file}: {error}", err=True)
        raise typer.Exit(2) from None
    try:
        code = run_up(settings, demo=demo, exit_after_demo=exit_after_demo, seed=seed)
    except SettingsError as error:
        typer.echo(f"returnloop: {error}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


def _run_service(module: str, *arguments: str) -> None:
    """Replace this process with a service's own entrypoint (``python -m services.X``)."""
    settings = _settings()
    _require_servers(settings)
    os.execv(sys.executable, [sys.executable, "-m", module, *arguments])


@cli.command()
def tracker(
    engine: Annotated[
        str, typer.Option(help="faust (the default: a Faust worker) or asyncio (plain loop)")
    ] = "faust",
    processes: Annotated[
        int | None,
        typer.Option(
            help="consumer processes to run under this command (default: "
            "RETURNLOOP_TRACKER_PROCESSES, else one per core)",
            min=1,
        ),
    ] = None,
) -> None:
    """Run the tracker stream processors."""
    if engine not in ("faust", "asyncio"):
        typer.echo("returnloop: --engine takes faust or asyncio", err=True)
        raise typer.Exit(2)
    extra = ["--processes", str(processes)] if processes is not None else []
    _run_service("services.tracker", "--engine", engine, *extra)


@cli.command()
def api() -> None:
    """Run the HTTP API (uvicorn)."""
    _run_service("services.api")


@cli.command()
def webhooks() -> None:
    """Run the webhook dispatcher (signed deliveries of loop transitions and alerts)."""
    _run_service("services.webhooks")


@cli.command()
def migrate() -> None:
    """Bring the PostgreSQL schema up to date (alembic)."""
    from shared.adapters.postgres.schema import migrate as run_migrations

    settings = _settings()
    _, database_url = _require_servers(settings)
    run_migrations(database_url)
    typer.echo("schema is up to date")


@cli.command()
def topics() -> None:
    """Create the Kafka topics that are missing."""
    from shared.adapters.kafka.admin import ensure_topics

    settings = _settings()
    bootstrap, _ = _require_servers(settings)
    created = ensure_topics(
        bootstrap,
        partitions=settings.topic_partitions,
        replication=settings.topic_replication,
        input_retention_hours=settings.input_retention_hours,
    )
    typer.echo(f"created {len(created)} topic(s): {', '.join(created) or 'none needed'}")


@cli.command()
def rebuild(
    chunk_size: Annotated[int, typer.Option(help="workers per transaction", min=1)] = 1000,
    jobs: Annotated[int, typer.Option(help="transactions in flight at once", min=1)] = 2,
    processes: Annotated[
        int | None,
        typer.Option(
            help="processes, each a range of workers (default: one per core)", min=1, max=64
        ),
    ] = None,
    worker_range: Annotated[str | None, typer.Option(hidden=True)] = None,
) -> None:
    """Recompute every worker's loop state and alerts from the applied-scan log."""
    from shared.adapters.postgres.unit_of_work import PostgresStore
    from shared.service_layer.rebuild import rebuild
    from shared.settings import rules_from

    settings = _settings()
    database_url = settings.database_url
    if not database_url:
        typer.echo("returnloop: set RETURNLOOP_DATABASE_URL", err=True)
        raise typer.Exit(2)
    configure_logging("rebuild", settings.log_level)
    count = processes or len(os.sched_getaffinity(0))

    if worker_range is not None:  # one process of several: progress and report as lines
        lower, _, upper = worker_range.partition(":")

        async def run_range() -> RebuildReport:
            store = await PostgresStore.connect(database_url, max_size=jobs + 1)
            try:
                return await rebuild(
                    store,
                    rules=rules_from(settings),
                    chunk_size=chunk_size,
                    jobs=jobs,
                    progress=False,
                    key_range=(lower, upper or None),
                    on_page=lambda scans: print(f"page {scans}", flush=True),
                )
            finally:
                await store.close()

        part = asyncio.run(run_range())
        print(f"report {part.workers} {part.scans} {part.corrected}", flush=True)
        return

    if count == 1:

        async def run() -> RebuildReport:
            store = await PostgresStore.connect(database_url, max_size=jobs + 1)
            try:
                return await rebuild(
                    store, rules=rules_from(settings), chunk_size=chunk_size, jobs=jobs
                )
            finally:
                await store.close()

        report = asyncio.run(run())
    else:
        report = _rebuild_in_processes(database_url, count, chunk_size=chunk_size, jobs=jobs)
    typer.echo(
        f"rebuilt {report.workers} worker(s) from {report.scans} scan(s) in "
        f"{report.seconds:.1f} s ({report.scans_per_second:,.0f} scans/s"
        + (f", {count} processes" if count > 1 else "")
        + f"); {report.corrected} state(s) changed"
    )


def _rebuild_in_processes(
    database_url: str, count: int, *, chunk_size: int, jobs: int
) -> RebuildReport:
    """``count`` rebuild processes, each over its own range of worker_ref; one bar."""
    import subprocess
    import threading
    import time

    from tqdm import tqdm

    from shared.adapters.postgres.unit_of_work import PostgresStore
    from shared.service_layer.rebuild import RebuildReport, key_ranges

    async def total_scans() -> int:
        store = await PostgresStore.connect(database_url, max_size=1)
        try:
            return await store.applied_scan_count()
        finally:
            await store.close()

    started = time.perf_counter()
    bar = tqdm(total=asyncio.run(total_scans()), unit="scan", desc="rebuild")
    lock = threading.Lock()
    parts: list[RebuildReport] = []
    children = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "services.cli", "rebuild", "--processes", "1"),
                *("--chunk-size", str(chunk_size), "--jobs", str(jobs)),
                *("--worker-range", f"{lower}:{upper or ''}"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for lower, upper in key_ranges(count)
    ]

    def follow(child: subprocess.Popen[str]) -> None:
        assert child.stdout is not None
        for line in child.stdout:
            word, _, rest = line.strip().partition(" ")
            with lock:
                if word == "page":
                    bar.update(int(rest))
                elif word == "report":
                    workers, scans, corrected = (int(n) for n in rest.split())
                    parts.append(RebuildReport(workers, scans, corrected))

    readers = [threading.Thread(target=follow, args=(child,)) for child in children]
    for reader in readers:
        reader.start()
    failed = [child.wait() for child in children]
    for reader in readers:
        reader.join()
    bar.close()
    if any(failed) or len(parts) != count:
        typer.echo(
            f"returnloop: {sum(1 for code in failed if code)} of {count} rebuild processes "
            "failed (their errors are above); run it again: a rebuild may be repeated",
            err=True,
        )
        raise typer.Exit(1)
    return RebuildReport(
        workers=sum(p.workers for p in parts),
        scans=sum(p.scans for p in parts),
        corrected=sum(p.corrected for p in parts),
        seconds=time.perf_counter() - started,
    )


@cli.command("replay-accepted")
def replay_accepted(
    since: Annotated[
        str,
        typer.Option(
            help="ISO 8601 time with offset: records written from then on are applied "
            "(after a restore: a few minutes before the dump started)"
        ),
    ],
    topic: Annotated[
        list[str] | None,
        typer.Option(
            help="a topic to replay (repeatable; default scans.accepted, "
            "healthcode.accepted and dispositions.accepted)"
        ),
    ] = None,
) -> None:
    """Apply what the keyed topics hold since a time, up to their current end (after a
    restore). What the database already holds changes nothing; no consumer group moves."""
    arguments = ["--since", since]
    for name in topic or ():
        arguments += ["--topic", name]
    _run_service("services.tracker.replay", *arguments)


@cli.command("rotate-id-key")
def rotate_id_key() -> None:
    """Re-encrypt every kept ID number with the first key of RETURNLOOP_ID_ENCRYPTION_KEYS."""
    from shared.adapters.postgres.manifests import ManifestStore
    from shared.adapters.postgres.pool import create_pool
    from shared.id_encryption import IdNumberCipher, IdNumberUnreadable

    settings = _settings()
    database_url = settings.database_url
    if not database_url:
        typer.echo("returnloop: set RETURNLOOP_DATABASE_URL", err=True)
        raise typer.Exit(2)
    try:
        cipher = IdNumberCipher.from_settings(settings)
    except SettingsError as error:
        typer.echo(f"returnloop: {error}", err=True)
        raise typer.Exit(2) from None
    if cipher is None:
        typer.echo("returnloop: RETURNLOOP_ID_ENCRYPTION_KEYS is not set", err=True)
        raise typer.Exit(2)

    async def rotate() -> int:
        pool = await create_pool(database_url, max_size=2)
        try:
            return await ManifestStore(pool).rotate_encrypted_id_numbers(cipher.rotate)
        finally:
            await pool.close()

    try:
        count = asyncio.run(rotate())
    except IdNumberUnreadable as error:
        typer.echo(f"returnloop: {error}; list the old key after the new one", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"re-encrypted {count} ID number(s) with the current key")


def main() -> None:
    cli(prog_name="returnloop", args=sys.argv[1:])
