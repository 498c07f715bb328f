"""The benchmark's Faust baselines: one agent per message on ``scans.accepted``.

``noop``: the agent only counts events (Faust's own per-message cost).
``transaction``: the agent applies each scan in its own PostgreSQL transaction
(``handlers.apply_scans`` with a batch of one), the design the tracker's batches replace.

Run by ``tests.bench.bench`` as a child process: ``python -m tests.bench.bench_faust
MODE OUT_FILE``; progress (count, first and last event time) is written to
OUT_FILE every half second until the parent stops the process.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import faust
import orjson

from services.tracker.app import faust_broker_url
from shared import topics
from shared.adapters.postgres.unit_of_work import PostgresStore
from shared.domain.model import Rules
from shared.service_layer import handlers
from shared.service_layer.messages import AcceptedScan


def create_app(mode: str, out: Path, bootstrap: str, database_url: str | None) -> faust.App:
    app = faust.App(
        f"returnloop-bench-faust-{mode}-{os.getpid()}",
        broker=faust_broker_url(bootstrap),
        store="memory://",
        web_enabled=False,
        topic_disable_leader=True,
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        datadir=str(out.parent / f"faust-{mode}-{os.getpid()}"),
    )
    accepted = app.topic(topics.ACCEPTED, key_serializer="raw", value_serializer="raw")
    progress = {"mode": mode, "count": 0, "first": None, "last": None}
    rules = Rules()

    def record() -> None:
        now = time.time()
        if progress["first"] is None:
            progress["first"] = now
        progress["last"] = now
        progress["count"] += 1  # type: ignore[operator]

    if mode == "noop":

        @app.agent(accepted)
        async def count_only(stream: faust.StreamT[bytes]) -> None:
            async for _value in stream:
                record()

    else:
        assert database_url is not None
        store: list[PostgresStore] = []

        @app.agent(accepted)
        async def one_transaction_per_scan(stream: faust.StreamT[bytes]) -> None:
            if not store:
                store.append(await PostgresStore.connect(database_url, max_size=2))
            async for value in stream:
                scan = AcceptedScan.from_bytes(value)
                await handlers.apply_scans(store[0], [scan], rules=rules, now=datetime.now(UTC))
                record()

    @app.timer(interval=0.5)
    async def write_progress() -> None:
        temporary = out.with_suffix(".tmp")
        temporary.write_bytes(orjson.dumps(progress))
        temporary.replace(out)

    return app


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    bootstrap = os.environ["RETURNLOOP_KAFKA_BOOTSTRAP"]
    database_url = os.environ.get("RETURNLOOP_BENCH_FAUST_DATABASE_URL")
    logging.basicConfig(level=logging.WARNING)
    app = create_app(mode, out, bootstrap, database_url)
    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
