"""The tracker as a Faust application.

Faust hosts the tracker: its worker runs the batch consumers as a service,
the overdue sweep as a timer and, when configured, the health-code platform
poller as another. The scan streams themselves are consumed
with plain aiokafka batches (``shared.adapters.kafka.consumer``): Faust's
per-message loop tops out near 4,000 messages/s a process and can commit
past a message whose agent crashed; batches with one PostgreSQL transaction
each, committed afterwards, avoid both.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import faust
from mode import Service
from prometheus_client import CollectorRegistry
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from services.tracker.main import TrackerProcess, serve_metrics
from shared import topics
from shared.adapters.memory import trim_memory
from shared.logging import JsonFormatter
from shared.service_layer.ports import InputRecord
from shared.settings import Settings

logger = logging.getLogger(__name__)


def faust_broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap.split(","))


def faust_datadir(settings: Settings) -> Path:
    """Where the Faust worker keeps its files: ``RETURNLOOP_DATA_DIR/faust`` (``faust-i``
    for the i-th process of a supervised tracker, i > 0)."""
    index = settings.tracker_process_index
    return settings.data_dir.resolve() / ("faust" if index == 0 else f"faust-{index}")


def create_faust_app(
    settings: Settings, process: TrackerProcess, loghandlers: list[logging.Handler] | None = None
) -> faust.App:
    """A Faust app whose worker runs ``process`` (consumers as a service, sweep as a timer)."""
    assert settings.kafka_bootstrap
    # Faust's working directory lives under RETURNLOOP_DATA_DIR (not wherever the process
    # happens to start); Faust expects its parent to exist.
    datadir = faust_datadir(settings)
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        # The Faust consumer group (healthcode.updates) is the tracker's own group, so a
        # tracker with another RETURNLOOP_CONSUMER_GROUP (the soak's) takes none of them.
        settings.consumer_group,
        broker=faust_broker_url(settings.kafka_bootstrap),
        datadir=str(datadir),
        store="memory://",
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_disable_leader=True,
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        loghandlers=loghandlers or [],
    )

    class TrackerService(Service):
        """Runs the tracker's batch consumers for as long as the worker runs."""

        async def on_start(self) -> None:
            await process.start()

        @Service.task
        async def _consume(self) -> None:
            await asyncio.gather(*(consumer.run() for consumer in process.consumers))

        @Service.task
        async def _relay(self) -> None:
            await process.started.wait()
            await process.relay_forever()

        async def on_stop(self) -> None:
            await process.stop()

    app.service(TrackerService)

    health_code_updates = app.topic(
        topics.HEALTHCODE_UPDATES, key_serializer="raw", value_serializer="raw"
    )

    @app.agent(health_code_updates)
    async def validate_health_code_updates(stream: faust.StreamT[bytes]) -> None:
        """Colour updates are a low-rate stream: validated one by one, like the batches."""
        await process.started.wait()
        assert process.tracker is not None
        async for event in stream.events():
            message = event.message
            record = InputRecord(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                key=message.key,
                value=message.value,
                timestamp_ms=int(message.timestamp * 1000),
            )
            # Never let the agent crash: Faust may then commit past this message.
            async for attempt in AsyncRetrying(
                wait=wait_exponential(max=10), retry=retry_if_exception_type(Exception)
            ):
                with attempt:
                    await process.tracker.handle_intake([record])

    @app.timer(interval=settings.sweep_interval_seconds)
    async def sweep_overdue() -> None:
        if process.tracker is None:
            return
        try:
            swept = await process.tracker.sweep()
        except Exception:
            logger.exception("overdue sweep failed; will try again")
            return
        if swept:
            logger.info("overdue sweep", extra={"workers": swept})

    if settings.malloc_trim_interval_seconds:

        @app.timer(interval=settings.malloc_trim_interval_seconds)
        async def trim_memory_timer() -> None:
            trim_memory()

    if settings.platform_polling:

        @app.timer(interval=settings.platform_poll_interval_seconds)
        async def poll_health_code_platform() -> None:
            """Ask the platform for the colours of workers in transit (one round a tick)."""
            if process.poller is None:
                return
            await process.poll_platform()  # logs its outcome; a failed round is retried

    return app


def run_faust_worker(settings: Settings) -> None:
    """Run the tracker in a Faust worker until it is stopped (SIGTERM / Ctrl-C)."""
    registry = CollectorRegistry()
    serve_metrics(settings, registry)
    process = TrackerProcess(settings, registry, health_updates_in_batches=False)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter("tracker"))
    app = create_faust_app(settings, process, loghandlers=[handler])
    worker = faust.Worker(
        app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False
    )
    worker.execute_from_commandline()
