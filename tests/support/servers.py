"""Real servers for the integration and e2e tiers: configured ones, or embedded ones.

With RETURNLOOP_KAFKA_BOOTSTRAP / RETURNLOOP_DATABASE_URL set (CI: Apache Kafka
and Debian's PostgreSQL) the tests use those; otherwise they start the embedded
Tansu broker and pgserver PostgreSQL, as `make run` does.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from services.cli.embedded import configured_or_embedded
from shared.adapters.kafka.admin import ensure_topics
from shared.adapters.postgres.schema import migrate
from shared.identity import check_digit

TEST_WORKER_REF_KEY = "integration-tests-worker-ref-key-0123456789"
TEST_ADMIN_TOKEN = "integration-tests-admin-token-0123456789"
# A Fernet key for the ID numbers kept, encrypted, for audited admin recovery.
TEST_ID_ENCRYPTION_KEYS = "vJ-TAlFDnt0MdZSs-qNmalP-u7TC6ZBgg37fVkATr14="


@dataclass(frozen=True)
class Servers:
    kafka_bootstrap: str
    database_url: str
    embedded_kafka: bool = False


@contextlib.contextmanager
def running_servers(data_dir: Path, *, own_embedded: bool = False) -> Iterator[Servers]:
    """The servers RETURNLOOP_* name and embedded ones for the rest (with ``own_embedded``,
    embedded ones whatever RETURNLOOP_* say), with the schema and the topics in place."""
    configured = {} if own_embedded else os.environ
    with configured_or_embedded(
        data_dir,
        kafka_bootstrap=configured.get("RETURNLOOP_KAFKA_BOOTSTRAP"),
        database_url=configured.get("RETURNLOOP_DATABASE_URL"),
    ) as (bootstrap, database_url):
        migrate(database_url)
        ensure_topics(bootstrap, partitions=4)
        embedded_kafka = not configured.get("RETURNLOOP_KAFKA_BOOTSTRAP")
        yield Servers(bootstrap, database_url, embedded_kafka)


def server_env(servers: Servers, **extra: str) -> dict[str, str]:
    """Environment for a returnloop process pointed at the test servers (one tracker
    process on the embedded broker, as ``returnloop up`` runs it there)."""
    processes = (
        {"RETURNLOOP_TRACKER_PROCESSES": "1"}
        if servers.embedded_kafka and "RETURNLOOP_TRACKER_PROCESSES" not in os.environ
        else {}
    )
    return {
        **os.environ,
        **processes,
        "RETURNLOOP_KAFKA_BOOTSTRAP": servers.kafka_bootstrap,
        "RETURNLOOP_DATABASE_URL": servers.database_url,
        "RETURNLOOP_WORKER_REF_KEY": os.environ.get(
            "RETURNLOOP_WORKER_REF_KEY", TEST_WORKER_REF_KEY
        ),
        "RETURNLOOP_ADMIN_TOKEN": os.environ.get("RETURNLOOP_ADMIN_TOKEN", TEST_ADMIN_TOKEN),
        "RETURNLOOP_ID_ENCRYPTION_KEYS": os.environ.get(
            "RETURNLOOP_ID_ENCRYPTION_KEYS", TEST_ID_ENCRYPTION_KEYS
        ),
        **extra,
    }


_rng = random.Random()
_issued: set[str] = set()
_PROVINCES = (
    11,
    12,
    13,
    14,
    15,
    21,
    22,
    23,
    31,
    32,
    33,
    34,
    35,
    36,
    37,
    41,
    42,
    43,
    44,
    45,
    46,
    50,
    51,
    52,
    53,
    54,
    61,
    62,
    63,
    64,
    65,
)


def random_id_number(area: str | None = None) -> str:
    """A valid, random resident ID number, never the same twice in a session.

    Tests share one database (across sessions too, in CI), so the number space
    is wide: ~3 * 10**11 combinations of area, birth date and serial.
    """
    while True:
        place = area or (
            f"{_rng.choice(_PROVINCES)}{_rng.randrange(1, 21):02d}{_rng.randrange(1, 31):02d}"
        )
        born = date(1966, 1, 1) + timedelta(days=_rng.randrange(0, 365 * 36))
        first17 = f"{place}{born:%Y%m%d}{_rng.randrange(1000):03d}"
        number = first17 + check_digit(first17)
        if number not in _issued:
            _issued.add(number)
            return number


def unique(prefix: str) -> str:
    return f"{prefix}-{_rng.randrange(16**10):010x}"
