"""The API service: wiring (``bootstrap``) and the FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry, Histogram

from services.api.auth import TokenAuthority
from services.api.deps import ApiContext
from services.api.errors import ERROR_RESPONSES, install_error_handlers
from services.api.limits import BodySizeLimit, RateLimiter
from services.api.observe import ObserveLatency
from services.api.routes import (
    gate,
    health,
    links,
    manifests,
    scans,
    supervision,
    tokens,
    ui,
    workers,
)
from services.tracker.publisher import KafkaPublisher
from shared.domain.model import Rules
from shared.id_encryption import IdNumberCipher
from shared.identity import Pseudonymiser
from shared.linkage import LinkStore
from shared.metrics import Metrics, replace_gauge_values
from shared.postgres import ReadsAndManifests, create_pool
from shared.settings import Settings, resolve_worker_ref_key
from shared.supervision import SupervisorReads

logger = logging.getLogger(__name__)

DATABASE_GAUGES_REFRESH_S = 5.0


async def _refresh_gauges(context: ApiContext) -> None:
    """Keep the gauges read from PostgreSQL (workers, open alerts, enterprises) current."""
    metrics, store = context.metrics, context.store
    while True:
        try:
            workers = await store.workers_by_stage_status()
            open_alerts = await store.open_alerts_by_kind()
            enterprises = await store.enterprise_counts()
            replace_gauge_values(
                metrics.workers, {(stage, status): n for stage, status, n in workers}
            )
            replace_gauge_values(metrics.open_alerts, {(kind,): n for kind, n in open_alerts})
            replace_gauge_values(
                metrics.enterprise_workers,
                {(enterprise_id, state): n for enterprise_id, state, n in enterprises},
            )
        except Exception:
            logger.warning("could not refresh the gauges read from PostgreSQL", exc_info=True)
        await asyncio.sleep(DATABASE_GAUGES_REFRESH_S)


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> FastAPI:
    """The API application; adapters are built in its lifespan from ``settings``."""
    registry = registry or CollectorRegistry()
    id_cipher = IdNumberCipher.from_settings(settings)  # a bad key fails here, at start
    metrics = Metrics(registry)
    latency = Histogram(
        "returnloop_api_request_seconds",
        "API request latency by route and status.",
        ["method", "route", "status"],
        registry=registry,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        assert settings.database_url and settings.kafka_bootstrap, "servers must be configured"
        pool = await create_pool(settings.database_url, max_size=10)
        publisher = KafkaPublisher(settings.kafka_bootstrap, client_id="returnloop-api")
        await publisher.start()
        store = ReadsAndManifests(pool)
        admin = settings.admin_token.get_secret_value() if settings.admin_token else None
        pseudonymiser = Pseudonymiser(resolve_worker_ref_key(settings))
        context = ApiContext(
            store=store,
            publisher=publisher,
            pseudonymiser=pseudonymiser,
            links=LinkStore(pool, pseudonymiser),
            authority=TokenAuthority(store, admin),
            metrics=metrics,
            rules=Rules(fever_threshold_c=settings.fever_threshold_c),
            supervision=SupervisorReads(pool),
            rate_limiter=RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst),
            id_cipher=id_cipher,
        )
        app.state.context = context
        refresher = asyncio.create_task(_refresh_gauges(context))
        # Everything built so far lives as long as the process: keep the cyclic
        # collector from walking it again and again (its pauses are tail latency).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            await publisher.stop()
            await pool.close()

    app = FastAPI(
        title="returnloop",
        version="1",
        description="Closed-loop tracking of workers' return-to-work journeys.",
        lifespan=lifespan,
    )
    install_error_handlers(app)

    app.add_middleware(ObserveLatency, histogram=latency)

    # Outermost of the app's own middleware: a huge body is refused before anything reads it.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    v1 = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)
    for module in (scans, manifests, workers, tokens, links, gate, supervision):
        v1.include_router(module.router)
    app.include_router(v1)
    app.include_router(health.router)
    app.include_router(ui.router)
    return app
