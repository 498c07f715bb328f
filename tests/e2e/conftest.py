"""The running system (tracker and API processes) against the test servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.processes import ServiceProcess, free_port, wait_until_ready
from tests.support.servers import Servers, server_env


@dataclass(frozen=True)
class RunningSystem:
    url: str
    admin_token: str
    env: dict[str, str]
    tracker: ServiceProcess
    api: ServiceProcess


@pytest.fixture(scope="session")
def system(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    logs = tmp_path_factory.mktemp("system-logs")
    port = free_port()
    env = server_env(
        servers,
        RETURNLOOP_API_PORT=str(port),
        RETURNLOOP_SWEEP_INTERVAL_SECONDS="1",
    )
    tracker = ServiceProcess(["tracker"], env, logs / "tracker.log").start()
    api = ServiceProcess(["api"], env, logs / "api.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, api)
        yield RunningSystem(url, env["RETURNLOOP_ADMIN_TOKEN"], env, tracker, api)
    finally:
        api.stop()
        tracker.stop()


@pytest.fixture
async def admin(system: RunningSystem) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client with the bootstrap admin token."""
    async with httpx.AsyncClient(
        base_url=system.url,
        headers={"Authorization": f"Bearer {system.admin_token}"},
        timeout=30,
    ) as client:
        yield client


@pytest.fixture
async def anonymous(system: RunningSystem) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.url, timeout=30) as client:
        yield client
