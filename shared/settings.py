"""One settings object for every service, read from ``RETURNLOOP_*`` variables."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.domain.model import Rules
from shared.domain.subsidies import SubsidyRates

PLACEHOLDER_SECRETS = frozenset({"changeme", "change-me", "secret", "changethis", ""})


class Settings(BaseSettings):
    """Runtime settings. Unset servers mean "use the embedded ones"."""

    model_config = SettingsConfigDict(env_prefix="RETURNLOOP_", extra="ignore")

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    # How long the API keeps an idle client connection open. Longer than the idle
    # timeout of a load balancer in front (commonly 60 s), so the balancer, not the API,
    # closes idle connections; and gates polling every few seconds keep theirs.
    api_keep_alive_seconds: int = Field(default=75, gt=0)
    admin_token: SecretStr | None = None

    kafka_bootstrap: str | None = None
    database_url: str | None = None
    data_dir: Path = Path(".returnloop")

    # Key of the HMAC that turns an ID number into a worker_ref. Required when
    # real servers are configured; the embedded default keeps one in data_dir.
    worker_ref_key: SecretStr | None = None

    fever_threshold_c: float = Field(default=37.3, ge=30.0, le=45.0)
    arrival_grace_hours: float = Field(default=2.0, ge=0)
    checkin_window_hours: float = Field(default=24.0, ge=0)
    sweep_interval_seconds: float = Field(default=30.0, gt=0)
    # A check without a scanned colour uses the platform's colour up to this old.
    health_code_max_age_hours: float = Field(default=24.0, gt=0)
    # A trip's manifest workers with no boarding this long after departs_at are no-shows.
    boarding_grace_minutes: float = Field(default=30.0, ge=0)
    # The zone whose calendar days the daily tick-off counts in (an IANA name).
    timezone: str = "Asia/Shanghai"
    # Transport subsidies, yuan per worker whose loop is verified (closed), by way of travel.
    subsidy_yuan_bus: Decimal = Field(default=Decimal(0), ge=0, max_digits=12, decimal_places=2)
    subsidy_yuan_train: Decimal = Field(default=Decimal(0), ge=0, max_digits=12, decimal_places=2)
    subsidy_yuan_flight: Decimal = Field(default=Decimal(0), ge=0, max_digits=12, decimal_places=2)
    subsidy_yuan_self: Decimal = Field(default=Decimal(0), ge=0, max_digits=12, decimal_places=2)
    # How often the health-code platform is asked for the colours of linked workers in
    # transit (0: never; colours then arrive on healthcode.updates or the push endpoint).
    platform_poll_interval_seconds: float = Field(default=0.0, ge=0)
    # The provincial health-code platform's base URL (unset: no polling).
    health_code_platform_url: str | None = None
    # The key the platform issued to this system (sent as X-App-Key); needed to poll.
    health_code_platform_app_key: SecretStr | None = None

    topic_partitions: int = Field(default=4, ge=1)
    topic_replication: int = Field(default=1, ge=1)
    input_retention_hours: float = Field(default=72.0, gt=0)
    consumer_group: str = "returnloop-tracker"
    batch_max_records: int = Field(default=2000, ge=1)
    # Input batches a tracker process handles at once: with 2, the next is validated
    # while the previous one's transaction runs (offsets are committed in order either
    # way). 1 by default: on 2 cores shared with the servers, 2 measured no better.
    batch_pipeline_depth: int = Field(default=1, ge=1, le=8)
    # The outbox relay: messages per round (one transaction), and how often a tracker
    # looks for what other processes left (its own commits wake it at once).
    outbox_relay_batch: int = Field(default=5000, ge=1)
    outbox_poll_interval_seconds: float = Field(default=1.0, gt=0)
    # For the fault suite only, never in service: "point:n" SIGKILLs the tracker the
    # n-th time it passes point (apply_committed: after an apply commit, before the
    # relay; relay_published: after the broker acknowledged, before the rows are deleted).
    fault_kill_at: str | None = None

    # Consumer processes one ``returnloop tracker`` supervises (0: one per core). Each
    # is a member of the same consumer groups; with a metrics port set, the i-th
    # serves it on port + i.
    tracker_processes: int = Field(default=0, ge=0, le=256)
    # Set by the supervisor in each child (0 for a tracker on its own).
    tracker_process_index: int = Field(default=0, ge=0)

    # The tracker's own /metrics (0: not served; the API serves its own).
    tracker_metrics_host: str = "127.0.0.1"
    tracker_metrics_port: int = Field(default=0, ge=0, le=65535)
    # A diagnosis of memory, not for everyday service (it slows the process): trace
    # Python's allocations and serve what is live as returnloop_python_heap_bytes.
    tracemalloc: bool = False
    # How often the tracker hands memory it freed back to the OS (glibc malloc_trim;
    # 0: never). Without it RSS stays at the high-water mark of its deepest backlog.
    malloc_trim_interval_seconds: float = Field(default=30.0, ge=0)

    # Webhooks (the ``returnloop webhooks`` process): tries per delivery before it is
    # dead, the back-off before the 2nd try (doubling, with jitter, up to the max), the
    # time one POST may take, deliveries in flight at once (one per receiver at most).
    webhook_max_attempts: int = Field(default=8, ge=1, le=100)
    webhook_backoff_base_seconds: float = Field(default=10.0, gt=0)
    webhook_backoff_max_seconds: float = Field(default=3600.0, gt=0)
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    webhook_concurrency: int = Field(default=16, ge=1, le=1000)
    webhook_consumer_group: str = "returnloop-webhooks"
    webhooks_metrics_host: str = "127.0.0.1"
    webhooks_metrics_port: int = Field(default=0, ge=0, le=65535)

    log_level: str = "INFO"

    # API limits: requests per minute per issued token (0: no limit; the bootstrap
    # admin token is not limited) with a burst of ``rate_limit_burst`` (default: one
    # minute's worth), and the largest request body.
    rate_limit_per_minute: int = Field(default=1200, ge=0)
    rate_limit_burst: int | None = Field(default=None, ge=1)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # Requests that need a token and bring no valid one (none, unknown, expired,
    # revoked), per client address and API process, per minute (0: no limit); past it
    # they are answered 429 instead of 401. A valid token is never limited by this.
    unauthenticated_rate_per_minute: int = Field(default=120, ge=0)

    token_default_hours: float = Field(default=12.0, gt=0, le=24 * 366)
    """Lifetime of a token issued by ``POST /v1/tokens`` that asks for none
    (``expires_in_hours`` still wins): 12 hours, one shift, so a token left on a
    scanner or in a browser stops working by the next one. The bootstrap admin
    token (``RETURNLOOP_ADMIN_TOKEN``) is the operator's and does not expire."""

    # Fernet keys (comma-separated, the first encrypts, all decrypt: rotation) that
    # encrypt full ID numbers for audited admin recovery. Unset: none is kept.
    id_encryption_keys: SecretStr | None = None

    @field_validator(
        "admin_token",
        "worker_ref_key",
        "kafka_bootstrap",
        "database_url",
        "id_encryption_keys",
        "health_code_platform_url",
        "health_code_platform_app_key",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("admin_token", "worker_ref_key", "health_code_platform_app_key")
    @classmethod
    def _refuse_placeholders(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("is a placeholder; set a real secret")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Asia/Shanghai)") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The configured time zone (``timezone``) as a ``ZoneInfo``."""
        return ZoneInfo(self.timezone)

    @property
    def platform_polling(self) -> bool:
        """Whether the tracker asks the health-code platform (an interval and a URL are set)."""
        return self.platform_poll_interval_seconds > 0 and self.health_code_platform_url is not None

    @property
    def embedded(self) -> bool:
        """True when neither Kafka nor PostgreSQL is configured: run both embedded."""
        return self.kafka_bootstrap is None and self.database_url is None


class SettingsError(RuntimeError):
    """A setting needed to start is missing or wrong; the message says which."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def resolve_worker_ref_key(settings: Settings) -> bytes:
    """The HMAC key for worker_ref: from settings, or kept in data_dir for the embedded default."""
    if settings.worker_ref_key is not None:
        key = settings.worker_ref_key.get_secret_value().encode()
        if len(key) < 16:
            raise SettingsError("RETURNLOOP_WORKER_REF_KEY must be at least 16 characters")
        return key
    if not settings.embedded:
        raise SettingsError(
            "RETURNLOOP_WORKER_REF_KEY is not set. It keys the hash that turns ID numbers into "
            "worker_ref and must be set (and kept) whenever RETURNLOOP_KAFKA_BOOTSTRAP or "
            "RETURNLOOP_DATABASE_URL point at real servers."
        )
    path = settings.data_dir / "worker_ref.key"
    if not path.exists():
        import os
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 from the start: the key is never readable by others.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as key_file:
            key_file.write(secrets.token_hex(32))
    key = path.read_text().strip().encode()
    if len(key) < 16:
        raise SettingsError(
            f"{path} holds no usable worker_ref key (under 16 characters); restore it from a "
            "backup, or delete it only if no worker_ref made with it must stay valid"
        )
    return key


def rules_from(settings: Settings) -> Rules:
    """The domain's thresholds as configured."""
    return Rules(
        fever_threshold_c=settings.fever_threshold_c,
        arrival_grace=timedelta(hours=settings.arrival_grace_hours),
        checkin_window=timedelta(hours=settings.checkin_window_hours),
        health_code_max_age=timedelta(hours=settings.health_code_max_age_hours),
    )


def subsidy_rates_from(settings: Settings) -> SubsidyRates:
    """The configured subsidy rates."""
    return SubsidyRates(
        bus=settings.subsidy_yuan_bus,
        train=settings.subsidy_yuan_train,
        flight=settings.subsidy_yuan_flight,
        self=settings.subsidy_yuan_self,
    )
