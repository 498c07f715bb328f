"""``returnloop up``: servers (embedded unless configured), schema, topics, tracker, API,
webhooks.

Everything runs in the foreground; Ctrl-C stops it all and leaves no process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from services.cli.embedded import configured_or_embedded
from shared.adapters.kafka.admin import ensure_topics
from shared.adapters.postgres.schema import migrate
from shared.settings import Settings, resolve_worker_ref_key, subsidy_rates_from

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Servers:
    kafka_bootstrap: str
    database_url: str
    embedded: bool


@contextlib.contextmanager
def servers(settings: Settings) -> Iterator[Servers]:
    """The configured servers, or embedded ones started (and stopped) here."""
    embedded = not (settings.kafka_bootstrap and settings.database_url)
    with configured_or_embedded(
        settings.data_dir.resolve(),
        kafka_bootstrap=settings.kafka_bootstrap,
        database_url=settings.database_url,
    ) as (bootstrap, database_url):
        yield Servers(bootstrap, database_url, embedded=embedded)


def _admin_token(settings: Settings) -> str:
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    path = settings.data_dir / "admin.token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as token_file:
            token_file.write("rl_admin_" + secrets.token_urlsafe(24))
    return path.read_text().strip()


def _spawn(command: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", f"services.{command}"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            # If the launcher dies without cleaning up, its children die with it.
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )


def _die_with_parent() -> None:
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def _stop_on_interrupt_or_sigterm() -> None:
    """Ctrl-C, and SIGTERM (from a service manager or `timeout`), stop everything.

    Python's own Ctrl-C handling is restored: a process started in the background by a
    shell without job control inherits SIGINT ignored, and Python then leaves it
    ignored, so Ctrl-C (or a supervisor's SIGINT) would never reach the loop below. It
    is Python's handler, not one of ours, so that ``asyncio.run`` (the demo feed) still
    turns the first Ctrl-C into a clean cancellation.
    """

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, handler)


def _stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_ready(url: str, processes: dict[str, subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"the {name} exited with code {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"the API was not ready within {timeout:.0f} s")


def demo_subsidy_settings(settings: Settings) -> tuple[Settings, dict[str, str]]:
    """A demo runs with the demo's subsidy rates wherever the operator set none: the
    settings to predict with, and the RETURNLOOP_SUBSIDY_YUAN_* the servers need."""
    from services.cli.demo import DEMO_SUBSIDY_YUAN

    defaults = {
        f"subsidy_yuan_{way}": rate
        for way, rate in DEMO_SUBSIDY_YUAN.items()
        if f"subsidy_yuan_{way}" not in settings.model_fields_set
    }
    env = {f"RETURNLOOP_{name.upper()}": str(rate) for name, rate in defaults.items()}
    return settings.model_copy(update=defaults), env


def run_up(settings: Settings, *, demo: str | None, exit_after_demo: bool, seed: int = 2020) -> int:
    """Run the whole system until Ctrl-C (or until the demo is summarised)."""
    _stop_on_interrupt_or_sigterm()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = resolve_worker_ref_key(settings).decode()
    admin_token = _admin_token(settings)
    logs = settings.data_dir.resolve() / "logs"
    logs.mkdir(exist_ok=True)
    demo_env: dict[str, str] = {}
    if demo:
        settings, demo_env = demo_subsidy_settings(settings)
    with servers(settings) as found:
        migrate(found.database_url)
        ensure_topics(
            found.kafka_bootstrap,
            partitions=settings.topic_partitions,
            replication=settings.topic_replication,
            input_retention_hours=settings.input_retention_hours,
        )
        env = {
            **os.environ,
            "RETURNLOOP_KAFKA_BOOTSTRAP": found.kafka_bootstrap,
            "RETURNLOOP_DATABASE_URL": found.database_url,
            "RETURNLOOP_WORKER_REF_KEY": key,
            "RETURNLOOP_ADMIN_TOKEN": admin_token,
            **demo_env,
        }
        if not settings.kafka_bootstrap and "tracker_processes" not in settings.model_fields_set:
            # The embedded broker (Tansu) rebalances a group slowly (a join waits half a
            # session), and every rebalance re-reads what was not committed: one process.
            env["RETURNLOOP_TRACKER_PROCESSES"] = "1"
        processes = {
            "tracker": _spawn("tracker", env, logs / "tracker.log"),
            "api": _spawn("api", env, logs / "api.log"),
            "webhooks": _spawn("webhooks", env, logs / "webhooks.log"),
        }
        url = f"http://{settings.api_host}:{settings.api_port}"
        interrupted = False
        try:
            _wait_ready(url, processes, timeout=90)
            print(
                f"returnloop is ready: {url}  (OpenAPI at {url}/docs; admin token in "
                f"{settings.data_dir / 'admin.token'}; logs in {logs})",
                flush=True,
            )
            if demo:
                from services.cli.demo_feed import feed_and_summarise

                ok = asyncio.run(
                    feed_and_summarise(
                        demo,
                        api_url=url,
                        admin_token=admin_token,
                        database_url=found.database_url,
                        worker_ref_key=key.encode(),
                        settings=settings,
                        now=datetime.now(UTC),
                        alive=lambda: all(p.poll() is None for p in processes.values()),
                        seed=seed,
                        rates=subsidy_rates_from(settings),
                    )
                )
                if exit_after_demo:
                    return 0 if ok else 1
            while all(process.poll() is None for process in processes.values()):
                time.sleep(0.5)
            dead = [name for name, process in processes.items() if process.poll() is not None]
            print(f"returnloop: the {', '.join(dead)} stopped; see {logs}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            interrupted = True
            return 0
        finally:
            for process in processes.values():
                _stop(process)
            if interrupted:
                print("returnloop stopped", flush=True)
