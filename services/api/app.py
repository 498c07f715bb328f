"""The API service: wiring (``bootstrap``) and the FastAPI application."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Histogram

from services.api.auth import TokenAuthority
from services.api.deps import ApiContext
from services.api.errors import ERROR_RESPONSES, install_error_handlers
from services.api.gauges import DatabaseGauges
from services.api.headers import SecurityHeaders
from services.api.limits import BodySizeLimit, RateLimiter
from services.api.observe import ObserveLatency
from services.api.routes import (
    decisions,
    dispositions,
    gate,
    health,
    healthcode,
    held,
    links,
    manifests,
    scans,
    subsidies,
    supervision,
    tokens,
    ui,
    webhooks,
    workers,
)
from shared.adapters.kafka.publisher import KafkaPublisher
from shared.adapters.memory import freeze_start_up
from shared.adapters.metrics import Metrics
from shared.adapters.postgres.bureau import BureauReads
from shared.adapters.postgres.held import HeldWorkers
from shared.adapters.postgres.links import LinkStore
from shared.adapters.postgres.manifests import ManifestStore
from shared.adapters.postgres.pool import create_pool
from shared.adapters.postgres.read_model import LoopReadModel
from shared.adapters.postgres.subsidies import SubsidyLoops
from shared.adapters.postgres.supervision import SupervisorReads
from shared.adapters.postgres.tokens import TokenStore
from shared.adapters.postgres.webhooks import PostgresWebhooks
from shared.id_encryption import IdNumberCipher
from shared.identity import Pseudonymiser
from shared.service_layer.ports import Publisher
from shared.settings import Settings, resolve_worker_ref_key, rules_from

logger = logging.getLogger(__name__)


def bootstrap(
    settings: Settings,
    *,
    pool: asyncpg.Pool,
    publisher: Publisher,
    metrics: Metrics,
    id_cipher: IdNumberCipher | None,
) -> ApiContext:
    """Everything the routes use, wired to the pool and publisher passed in."""
    admin = settings.admin_token.get_secret_value() if settings.admin_token else None
    pseudonymiser = Pseudonymiser(resolve_worker_ref_key(settings))
    read_model, supervision = LoopReadModel(pool), SupervisorReads(pool)
    return ApiContext(
        read_model=read_model,
        manifests=ManifestStore(pool),
        publisher=publisher,
        pseudonymiser=pseudonymiser,
        links=LinkStore(pool, pseudonymiser),
        authority=TokenAuthority(TokenStore(pool), admin, settings.token_default_hours),
        metrics=metrics,
        gauges=DatabaseGauges(metrics, read_model, supervision),
        rules=rules_from(settings),
        supervision=supervision,
        bureau=BureauReads(pool),
        subsidy_loops=SubsidyLoops(pool),
        held=HeldWorkers(pool),
        webhooks=PostgresWebhooks(pool),
        rate_limiter=RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst),
        unauthenticated_limiter=RateLimiter(
            settings.unauthenticated_rate_per_minute, caller="address"
        ),
        settings=settings,
        id_cipher=id_cipher,
    )


def create_app(
    settings: Settings,
    registry: CollectorRegistry | None = None,
    *,
    publisher: Publisher | None = None,
) -> FastAPI:
    """The API application; its lifespan connects the adapters (``publisher`` if given)."""
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
        assert settings.database_url, "PostgreSQL must be configured"
        async with contextlib.AsyncExitStack() as stack:
            pool = await create_pool(settings.database_url, max_size=10)
            stack.push_async_callback(pool.close)
            if publisher is None:
                assert settings.kafka_bootstrap, "Kafka must be configured"
                kafka = KafkaPublisher(settings.kafka_bootstrap, client_id="returnloop-api")
                await kafka.start()
                stack.push_async_callback(kafka.stop)
            context = bootstrap(
                settings,
                pool=pool,
                publisher=publisher or kafka,
                metrics=metrics,
                id_cipher=id_cipher,
            )
            app.state.context = context
            freeze_start_up()  # the collector's pauses over it were tail latency
            yield

    app = FastAPI(
        title="returnloop",
        version="1",
        description="Closed-loop tracking of workers' return-to-work journeys.",
        lifespan=lifespan,
        # The API's metrics are its own, in Prometheus; FastAPI's OpenTelemetry hooks
        # would cost every request a look for providers nobody configured.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_error_handlers(app)

    app.add_middleware(ObserveLatency, histogram=latency)

    # Outermost of the app's own middleware: a huge body is refused before anything reads it.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    # Around even that, so each answer under /v1 (a 413 too) says it must not be cached.
    app.add_middleware(SecurityHeaders)

    # Each module's routes straight under /v1: a router nested in a /v1 router cost
    # every request a walk of the nesting (~0.1 ms of the API's ~1 ms a lookup).
    for module in (
        scans,
        decisions,
        healthcode,
        manifests,
        workers,
        tokens,
        links,
        gate,
        supervision,
        dispositions,
        held,
        subsidies,
        webhooks,
    ):
        app.include_router(module.router, prefix="/v1", responses=ERROR_RESPONSES)
    app.include_router(health.router)
    app.include_router(ui.router)
    return app
