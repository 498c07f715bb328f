"""Fixtures shared by the integration and e2e tiers (the unit tier needs none)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import Settings
from tests.support.servers import (
    TEST_ADMIN_TOKEN,
    TEST_WORKER_REF_KEY,
    Servers,
    running_servers,
)


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    # Not under pytest's basetemp: pytest resets its root to 0700 at every session
    # start, and the embedded PostgreSQL runs as its own system user.
    data_dir = Path(tempfile.mkdtemp(prefix="returnloop-tests-"))
    try:
        with running_servers(data_dir) as found:
            yield found
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


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


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A fresh directory outside pytest's basetemp (see ``servers`` for why)."""
    path = Path(tempfile.mkdtemp(prefix="returnloop-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
