"""Fixtures shared by the integration and e2e tiers (the unit tier needs none)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.settings import Settings
from tests.support.servers import (
    TEST_ADMIN_TOKEN,
    TEST_WORKER_REF_KEY,
    Servers,
    running_servers,
)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with running_servers(tmp_path_factory.mktemp("servers")) as found:
        yield found


@pytest.fixture(scope="session")
def settings(servers: Servers) -> Settings:
    import os

    return Settings(
        kafka_bootstrap=servers.kafka_bootstrap,
        database_url=servers.database_url,
        worker_ref_key=os.environ.get("RETURNLOOP_WORKER_REF_KEY", TEST_WORKER_REF_KEY),
        admin_token=os.environ.get("RETURNLOOP_ADMIN_TOKEN", TEST_ADMIN_TOKEN),
        sweep_interval_seconds=1,
    )
