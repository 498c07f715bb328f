"""The running system (tracker and API processes) against the test servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.support.api import bearer
from tests.support.fixtures import producer
from tests.support.processes import RunningSystem, running_system
from tests.support.servers import Servers

# Yuan per worker for a verified loop, by way of travel; tests read them back from the
# system's env (tests/e2e/test_subsidies.py).
SUBSIDY_RATES = {
    "RETURNLOOP_SUBSIDY_YUAN_BUS": "200",
    "RETURNLOOP_SUBSIDY_YUAN_TRAIN": "350",
    "RETURNLOOP_SUBSIDY_YUAN_FLIGHT": "800",
    "RETURNLOOP_SUBSIDY_YUAN_SELF": "150",
}

__all__ = ["RunningSystem", "admin", "anonymous", "producer", "running_system", "system"]


@pytest.fixture(scope="session")
def system(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    logs = tmp_path_factory.mktemp("system-logs")
    with running_system(
        servers, logs, RETURNLOOP_SWEEP_INTERVAL_SECONDS="1", **SUBSIDY_RATES
    ) as running:
        yield running


@pytest.fixture
async def admin(system: RunningSystem) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client with the bootstrap admin token."""
    async with httpx.AsyncClient(
        base_url=system.url, headers=bearer(system.admin_token), timeout=30
    ) as client:
        yield client


@pytest.fixture
async def anonymous(system: RunningSystem) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.url, timeout=30) as client:
        yield client
