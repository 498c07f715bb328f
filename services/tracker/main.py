"""Run the tracker on plain asyncio: the batch consumers, the overdue sweep and, when
configured, the health-code platform poller.

``services.tracker.app`` hosts the same parts inside a Faust worker; this
runner is what tests and ``returnloop tracker --engine asyncio`` use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import traceback
from collections.abc import Callable

import httpx
from prometheus_client import CollectorRegistry

from shared import topics
from shared.adapters.healthcode import ProvincialHealthCodeClient
from shared.adapters.kafka.consumer import BatchConsumer
from shared.adapters.kafka.publisher import KafkaPublisher
from shared.adapters.memory import freeze_start_up, trim_memory
from shared.adapters.metrics import Metrics
from shared.adapters.postgres.links import LinkStore
from shared.adapters.postgres.transit import TransitReads
from shared.adapters.postgres.unit_of_work import PostgresStore
from shared.id_encryption import IdNumberCipher
from shared.identity import Pseudonymiser
from shared.service_layer.dead_letters import mask_personal
from shared.service_layer.platform_poll import PlatformPoller, PollRound
from shared.service_layer.ports import (
    CodeDirectory,
    HealthCodePlatform,
    LoopStore,
    Outbox,
    Publisher,
    WorkersInTransit,
)
from shared.service_layer.relay import Relay
from shared.service_layer.tracker import Tracker
from shared.settings import Settings, SettingsError, resolve_worker_ref_key, rules_from

logger = logging.getLogger(__name__)


def bootstrap(
    settings: Settings,
    *,
    store: LoopStore,
    publisher: Publisher,
    metrics: Metrics,
    outbox: Outbox,
    pseudonymiser: Pseudonymiser | None = None,
    codes: CodeDirectory | None = None,
    fault_point: Callable[[str], None] | None = None,
) -> Tracker:
    """The tracker's service layer wired to the adapters passed in (real or fake)."""
    return Tracker(
        store=store,
        publisher=publisher,
        pseudonymiser=pseudonymiser or Pseudonymiser(resolve_worker_ref_key(settings)),
        rules=rules_from(settings),
        metrics=metrics,
        codes=codes,
        relay=Relay(
            outbox,
            publisher,
            limit=settings.outbox_relay_batch,
            metrics=metrics,
            fault_point=fault_point or _no_fault,
        ),
        fault_point=fault_point,
    )


def _no_fault(point: str) -> None:
    pass


def fault_killer(settings: Settings) -> Callable[[str], None] | None:
    """The fault suite's kill switch: SIGKILL this process the ``n``-th time it passes
    ``point`` (``RETURNLOOP_FAULT_KILL_AT=point:n``); None when unset, as in service."""
    if not settings.fault_kill_at:
        return None
    point, _, count = settings.fault_kill_at.partition(":")
    remaining = [int(count or 1)]

    def maybe_kill(passed: str) -> None:
        if passed != point:
            return
        remaining[0] -= 1
        if remaining[0] <= 0:
            logger.warning("fault injection: SIGKILL", extra={"point": point})
            os.kill(os.getpid(), signal.SIGKILL)

    return maybe_kill


def bootstrap_poller(
    *,
    workers: WorkersInTransit,
    platform: HealthCodePlatform,
    publisher: Publisher,
    cipher: IdNumberCipher,
    metrics: Metrics,
) -> PlatformPoller:
    """The health-code platform poller wired to the adapters passed in (real or fake)."""
    return PlatformPoller(
        workers=workers, platform=platform, publisher=publisher, cipher=cipher, metrics=metrics
    )


def poller_settings(settings: Settings) -> tuple[IdNumberCipher, str] | None:
    """The ID cipher and platform app key the poller needs, or None when polling is off.

    Raises ``SettingsError`` when polling is on but the poller could not ask anybody.
    """
    if not settings.platform_polling:
        if settings.platform_poll_interval_seconds > 0:
            logger.warning(
                "RETURNLOOP_PLATFORM_POLL_INTERVAL_SECONDS is set but "
                "RETURNLOOP_HEALTH_CODE_PLATFORM_URL is not: the platform is not polled"
            )
        return None
    cipher = IdNumberCipher.from_settings(settings)
    if cipher is None:
        raise SettingsError(
            "RETURNLOOP_PLATFORM_POLL_INTERVAL_SECONDS and RETURNLOOP_HEALTH_CODE_PLATFORM_URL "
            "turn on the health-code platform poller, which asks the platform by ID number; "
            "ID numbers are kept (encrypted) only with RETURNLOOP_ID_ENCRYPTION_KEYS, which is "
            "not set. Set it to the keys the API uses, or set the poll interval to 0."
        )
    if settings.health_code_platform_app_key is None:
        raise SettingsError(
            "RETURNLOOP_HEALTH_CODE_PLATFORM_APP_KEY is not set: the health-code platform "
            "poller needs the key the platform issued (sent as X-App-Key)."
        )
    return cipher, settings.health_code_platform_app_key.get_secret_value()


# What the apply consumer reads: events validated elsewhere (intake's colour updates,
# the API's dispositions). Scans are applied by intake itself.
APPLY_TOPICS = (topics.HEALTHCODE_ACCEPTED, topics.DISPOSITIONS)


def build_consumers(
    tracker: Tracker,
    *,
    kafka_bootstrap: str,
    group_id: str,
    max_records: int,
    health_updates: bool = True,
    depth: int = 1,
) -> list[BatchConsumer]:
    """The two batch consumers: intake (input topics: scans are validated and applied in
    one batch) and apply (colour updates and dispositions past validation).

    ``scans.accepted`` is the tracker's output, not its input: a restore replays it
    with ``returnloop replay-accepted``. ``health_updates=False`` leaves
    ``healthcode.updates`` to another consumer (the Faust agent in
    ``services.tracker.app``).
    """
    intake_topics = [*topics.INPUT_TOPICS.values()]
    if health_updates:
        intake_topics.append(topics.HEALTHCODE_UPDATES)
    return [
        BatchConsumer(
            name="intake",
            bootstrap=kafka_bootstrap,
            group_id=f"{group_id}-intake",
            topics=intake_topics,
            handler=tracker.handle_intake,
            max_records=max_records,
            lag=tracker.metrics.consumer_lag,
            depth=depth,
        ),
        BatchConsumer(
            name="apply",
            bootstrap=kafka_bootstrap,
            group_id=f"{group_id}-apply",
            topics=APPLY_TOPICS,
            handler=tracker.handle_apply,
            max_records=max_records,
            lag=tracker.metrics.consumer_lag,
        ),
    ]


class TrackerProcess:
    """The tracker's adapters and loops, started and stopped together."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        *,
        health_updates_in_batches: bool = True,
    ) -> None:
        if not settings.database_url or not settings.kafka_bootstrap:
            raise SettingsError("the tracker needs RETURNLOOP_DATABASE_URL and _KAFKA_BOOTSTRAP")
        self.settings = settings
        self.metrics = Metrics(registry or CollectorRegistry())
        self.pseudonymiser = Pseudonymiser(resolve_worker_ref_key(settings))
        self.tracker: Tracker | None = None
        self.consumers: list[BatchConsumer] = []
        self._store: PostgresStore | None = None
        self._publisher: KafkaPublisher | None = None
        self._stopping = asyncio.Event()
        self.started = asyncio.Event()
        self.health_updates_in_batches = health_updates_in_batches
        # Checked before anything connects: a poller that cannot ask stops the start.
        self._poll_config = poller_settings(settings)
        self.poller: PlatformPoller | None = None
        self._platform_http: httpx.AsyncClient | None = None

    async def start(self) -> Tracker:
        settings = self.settings
        assert settings.database_url and settings.kafka_bootstrap
        # Two intake batches in flight, the apply consumer, the relay, the sweep, lookups.
        self._store = await PostgresStore.connect(settings.database_url, max_size=6)
        self._publisher = KafkaPublisher(
            settings.kafka_bootstrap, client_id="returnloop-tracker", linger_ms=0
        )
        await self._publisher.start()
        self.tracker = bootstrap(
            settings,
            store=self._store,
            publisher=self._publisher,
            metrics=self.metrics,
            outbox=self._store,
            pseudonymiser=self.pseudonymiser,
            codes=LinkStore(self._store.pool, self.pseudonymiser),
            fault_point=fault_killer(settings),
        )
        self.consumers = build_consumers(
            self.tracker,
            kafka_bootstrap=settings.kafka_bootstrap,
            group_id=settings.consumer_group,
            max_records=settings.batch_max_records,
            health_updates=self.health_updates_in_batches,
            depth=settings.batch_pipeline_depth,
        )
        if self._poll_config is not None:
            cipher, app_key = self._poll_config
            assert settings.health_code_platform_url
            self._platform_http = httpx.AsyncClient(
                base_url=settings.health_code_platform_url, timeout=10.0
            )
            self.poller = bootstrap_poller(
                workers=TransitReads(self._store.pool),
                platform=ProvincialHealthCodeClient(self._platform_http, app_key=app_key),
                publisher=self._publisher,
                cipher=cipher,
                metrics=self.metrics,
            )
        freeze_start_up()  # full collections paused every batch: the latency's p99
        self.started.set()
        return self.tracker

    async def sweep_forever(self) -> None:
        assert self.tracker is not None
        while not self._stopping.is_set():
            try:
                swept = await self.tracker.sweep()
                if swept:
                    logger.info("overdue sweep", extra={"workers": swept})
            except Exception:
                logger.exception("overdue sweep failed; will try again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stopping.wait(), timeout=self.settings.sweep_interval_seconds
                )

    async def relay_forever(self) -> None:
        """Publish the outbox: woken after each commit, and every few seconds for what
        other processes (or this one before a crash) left there."""
        assert self.tracker is not None and self.tracker.relay is not None
        await self.tracker.relay.run(
            self._stopping, interval_s=self.settings.outbox_poll_interval_seconds
        )

    async def poll_platform(self) -> PollRound | None:
        """One round of the platform poller (None when it failed: the next round retries)."""
        assert self.poller is not None
        started = time.monotonic()
        try:
            found = await self.poller.poll()
        except Exception as error:
            # Masked: an error's text or traceback must not carry a plain ID number to the log.
            logger.error(
                "health-code platform poll failed; will try again",
                extra={
                    "error": type(error).__name__,
                    "detail": mask_personal("".join(traceback.format_exception(error))),
                },
            )
            return None
        logger.info(
            "health-code platform poll",
            extra={
                "answered": found.answered,
                "no_code": found.no_code,
                "errors": found.error,
                "pages": found.pages,
                "seconds": round(time.monotonic() - started, 3),
            },
        )
        return found

    async def poll_platform_forever(self) -> None:
        assert self.poller is not None
        while not self._stopping.is_set():
            await self.poll_platform()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stopping.wait(), timeout=self.settings.platform_poll_interval_seconds
                )

    async def trim_memory_forever(self) -> None:
        while not self._stopping.is_set():
            trim_memory()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stopping.wait(), timeout=self.settings.malloc_trim_interval_seconds
                )

    async def stop(self) -> None:
        self._stopping.set()
        for consumer in self.consumers:
            consumer.stop()
        if self._platform_http is not None:
            await self._platform_http.aclose()
        if self._publisher is not None:
            await self._publisher.stop()
        if self._store is not None:
            await self._store.close()

    async def run(self, *, sweep: bool = True) -> None:
        """Run until cancelled or a loop dies; a dead loop ends the process (to be restarted)."""
        await self.start()
        tasks = [
            asyncio.create_task(consumer.run(), name=c)
            for c, consumer in ((c.name, c) for c in self.consumers)
        ]
        if sweep:
            tasks.append(asyncio.create_task(self.sweep_forever(), name="sweep"))
        tasks.append(asyncio.create_task(self.relay_forever(), name="outbox-relay"))
        if self.poller is not None:
            tasks.append(asyncio.create_task(self.poll_platform_forever(), name="platform-poll"))
        if self.settings.malloc_trim_interval_seconds:
            tasks.append(asyncio.create_task(self.trim_memory_forever(), name="malloc-trim"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            self._stopping.set()
            for consumer in self.consumers:
                consumer.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.stop()


def serve_metrics(settings: Settings, registry: CollectorRegistry) -> None:
    """Expose the tracker's metrics on RETURNLOOP_TRACKER_METRICS_PORT (0: off)."""
    from prometheus_client import start_http_server

    if settings.tracemalloc:
        from shared.adapters.metrics import PythonHeap

        registry.register(PythonHeap())
    if settings.tracker_metrics_port:
        start_http_server(
            settings.tracker_metrics_port, addr=settings.tracker_metrics_host, registry=registry
        )
