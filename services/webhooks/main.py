"""Wiring of the webhooks process: a batch consumer of ``loop.transitions`` and
``loop.alerts`` in its own consumer group, and the delivery loop.

It runs beside the tracker, never inside it: receivers' speed is nobody else's problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import httpx
from prometheus_client import CollectorRegistry

from shared import topics
from shared.adapters.kafka.consumer import BatchConsumer
from shared.adapters.metrics import WebhookMetrics
from shared.adapters.postgres.pool import create_pool
from shared.adapters.postgres.webhooks import PostgresWebhooks
from shared.adapters.webhooks_http import HttpWebhookSender
from shared.service_layer.webhooks import WebhookDispatcher, WebhookSender, WebhookStore
from shared.settings import Settings, SettingsError


def bootstrap(
    settings: Settings,
    *,
    store: WebhookStore,
    sender: WebhookSender,
    metrics: WebhookMetrics,
) -> WebhookDispatcher:
    """The dispatcher wired to the adapters passed in (real or fake)."""
    return WebhookDispatcher(
        store=store,
        sender=sender,
        metrics=metrics,
        max_attempts=settings.webhook_max_attempts,
        backoff_base_s=settings.webhook_backoff_base_seconds,
        backoff_max_s=settings.webhook_backoff_max_seconds,
        timeout_s=settings.webhook_timeout_seconds,
        concurrency=settings.webhook_concurrency,
    )


class WebhooksProcess:
    """The dispatcher's adapters and its two loops, started and stopped together."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        if not settings.database_url or not settings.kafka_bootstrap:
            raise SettingsError("webhooks need RETURNLOOP_DATABASE_URL and _KAFKA_BOOTSTRAP")
        self.settings = settings
        self.metrics = WebhookMetrics(registry or CollectorRegistry())
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Run until SIGTERM, Ctrl-C or a loop dies (the process then ends, to be restarted)."""
        settings = self.settings
        assert settings.database_url and settings.kafka_bootstrap
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._stopping.set)
        pool = await create_pool(settings.database_url, max_size=4)
        # Connections are pooled per receiver; the concurrency bounds them in all.
        limits = httpx.Limits(max_connections=settings.webhook_concurrency)
        client = httpx.AsyncClient(limits=limits, trust_env=False)
        try:
            dispatcher = bootstrap(
                settings,
                store=PostgresWebhooks(pool),
                sender=HttpWebhookSender(client),
                metrics=self.metrics,
            )
            consumer = BatchConsumer(
                name="webhooks",
                bootstrap=settings.kafka_bootstrap,
                group_id=settings.webhook_consumer_group,
                topics=[topics.TRANSITIONS, topics.ALERTS],
                handler=dispatcher.handle,
                max_records=settings.batch_max_records,
                lag=self.metrics.consumer_lag,
            )
            tasks = [
                asyncio.create_task(consumer.run(), name="webhooks-consumer"),
                asyncio.create_task(dispatcher.deliver_forever(self._stopping), name="deliver"),
                asyncio.create_task(self._stopping.wait(), name="stopping"),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            finally:
                self._stopping.set()
                consumer.stop()
                await asyncio.wait(tasks, timeout=10)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await client.aclose()
            await pool.close()


def serve_metrics(settings: Settings, registry: CollectorRegistry) -> None:
    """Expose the process's metrics on RETURNLOOP_WEBHOOKS_METRICS_PORT (0: off)."""
    from prometheus_client import start_http_server

    if settings.webhooks_metrics_port:
        start_http_server(
            settings.webhooks_metrics_port, addr=settings.webhooks_metrics_host, registry=registry
        )
