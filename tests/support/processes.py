"""Start and stop returnloop's own processes (tracker, API) for the tests."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

from shared.settings import Settings
from tests.support.servers import Servers, server_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """One `returnloop <command>` child process with its output in a log file."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.command = command
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *self.command],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up, no offset commit, as a crash would do."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def log_tail(self, size: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-size:]


def wait_until_ready(url: str, service: ServiceProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.running:
            raise RuntimeError(f"{service.command} exited:\n{service.log_tail()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready in {timeout} s:\n{service.log_tail()}")


@contextlib.contextmanager
def served_api(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """An API process on ``RETURNLOOP_API_PORT`` of ``env``, ready; yields its URL."""
    api = ServiceProcess(["api"], env, log_path).start()
    url = f"http://127.0.0.1:{env['RETURNLOOP_API_PORT']}"
    try:
        wait_until_ready(url, api)
        yield url
    finally:
        api.stop()


@dataclass(frozen=True)
class RunningSystem:
    """A tracker and an API started for the tests, and how to reach them."""

    url: str
    admin_token: str
    env: dict[str, str]
    tracker: ServiceProcess
    api: ServiceProcess

    async def unused_seed(self, size: str, *, now: datetime) -> int:
        """A seed whose wave draws nobody this database already holds.

        Two city waves of other seeds share an ID number about one pair in seven, and
        suites that share one database feed several: an ID number drawn twice merges
        two journeys into one loop, which the wave's own prediction cannot foresee.
        """
        from services.cli.demo import build_wave
        from shared.adapters.postgres.pool import create_pool
        from shared.identity import Pseudonymiser

        pseudonymiser = Pseudonymiser(self.env["RETURNLOOP_WORKER_REF_KEY"].encode())
        pool = await create_pool(self.env["RETURNLOOP_DATABASE_URL"], max_size=1)
        try:
            while True:
                seed = random.randrange(1_000_000)
                wave = build_wave(size, now=now, seed=seed)
                refs = [pseudonymiser.worker_ref(number) for number in wave.id_numbers]
                held = await pool.fetchval(
                    "SELECT count(*) FROM workers WHERE worker_ref = ANY($1::text[])", refs
                )
                if held == 0:
                    return seed
                print(f"seed {seed} draws {held} worker(s) the database holds; drawing again")
        finally:
            await pool.close()

    async def feed_demo(
        self, size: str, *, settings: Settings, now: datetime, seed: int, settle_timeout_s: float
    ) -> bool:
        """Feed a demo wave through this system as ``returnloop up --demo`` does, printing
        its summary; whether every loop ended as the pure domain predicts."""
        from services.cli.demo_feed import feed_and_summarise

        return await feed_and_summarise(
            size,
            api_url=self.url,
            admin_token=self.admin_token,
            database_url=self.env["RETURNLOOP_DATABASE_URL"],
            worker_ref_key=self.env["RETURNLOOP_WORKER_REF_KEY"].encode(),
            settings=settings,
            now=now,
            alive=lambda: self.tracker.running,
            settle_timeout_s=settle_timeout_s,
            seed=seed,
        )


@contextlib.contextmanager
def running_system(servers: Servers, logs: Path, **env: str) -> Iterator[RunningSystem]:
    """A tracker and an API (``env``: more RETURNLOOP_* settings) on ``servers``, the API
    ready on a free port; their output in ``logs/{tracker,api}.log``. Stopped afterwards."""
    port = free_port()
    environment = server_env(servers, RETURNLOOP_API_PORT=str(port), **env)
    tracker = ServiceProcess(["tracker"], environment, logs / "tracker.log").start()
    api = ServiceProcess(["api"], environment, logs / "api.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, api)
        yield RunningSystem(url, environment["RETURNLOOP_ADMIN_TOKEN"], environment, tracker, api)
    finally:
        api.stop()
        tracker.stop()


@contextlib.contextmanager
def running_webhooks(system: RunningSystem, logs: Path, **env: str) -> Iterator[str]:
    """A webhooks process (``env``: more RETURNLOOP_* settings) beside ``system``, its
    consumer group its own; yields its metrics URL once it serves. Stopped afterwards."""
    port = free_port()
    environment = {
        **system.env,
        "RETURNLOOP_WEBHOOKS_METRICS_PORT": str(port),
        "RETURNLOOP_WEBHOOK_CONSUMER_GROUP": f"returnloop-webhooks-{port}",
        **env,
    }
    webhooks = ServiceProcess(["webhooks"], environment, logs / "webhooks.log").start()
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 60
        while True:
            if not webhooks.running:
                raise RuntimeError(f"webhooks exited:\n{webhooks.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"webhooks not serving in 60 s:\n{webhooks.log_tail()}")
            time.sleep(0.2)
        yield url
    finally:
        webhooks.stop()
