"""``python -m services.tracker [--engine faust|asyncio] [--processes N]``: the stream
processors (``returnloop tracker`` runs this); N > 1 supervises N of them
(``services.tracker.supervisor``)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from prometheus_client import CollectorRegistry

from services.tracker.supervisor import process_count, supervise
from shared.logging import configure_logging
from shared.settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="returnloop tracker")
    parser.add_argument(
        "--engine",
        choices=("faust", "asyncio"),
        default="faust",
        help="faust (the default: a Faust worker) or asyncio (plain loop)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="consumer processes to supervise (default: RETURNLOOP_TRACKER_PROCESSES, "
        "else one per core)",
    )
    arguments = parser.parse_args(argv)
    engine = arguments.engine
    try:
        settings = Settings()
        if not settings.kafka_bootstrap or not settings.database_url:
            raise SettingsError("the tracker needs RETURNLOOP_KAFKA_BOOTSTRAP and _DATABASE_URL")
        if arguments.processes is not None and arguments.processes < 1:
            raise SettingsError(f"--processes takes 1 or more, not {arguments.processes}")
        configure_logging("tracker", settings.log_level)
        count = process_count(arguments.processes or settings.tracker_processes)
        if count > 1:
            return supervise(count, ["--engine", engine, "--processes", "1"])
        if engine == "asyncio":
            from services.tracker.main import TrackerProcess, serve_metrics

            registry = CollectorRegistry()
            serve_metrics(settings, registry)
            asyncio.run(TrackerProcess(settings, registry).run())
        else:
            from services.tracker.app import run_faust_worker

            run_faust_worker(settings)
    except (SettingsError, ValueError) as error:
        print(f"returnloop tracker: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
