"""`returnloop up`, the command behind `make run`: demo summary, and nothing left behind."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.processes import free_port
from tests.support.servers import Servers, server_env

pytestmark = pytest.mark.e2e


def _up(servers: Servers, data_dir: Path, port: int, *args: str) -> subprocess.Popen[str]:
    env = server_env(servers, RETURNLOOP_DATA_DIR=str(data_dir), RETURNLOOP_API_PORT=str(port))
    if "RETURNLOOP_KAFKA_BOOTSTRAP" not in os.environ:
        # Like `make run` on a fresh machine: embedded servers of its own.
        for name in (
            "RETURNLOOP_KAFKA_BOOTSTRAP",
            "RETURNLOOP_DATABASE_URL",
            "RETURNLOOP_WORKER_REF_KEY",
            "RETURNLOOP_ADMIN_TOKEN",
        ):
            env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _assert_a_quiet_console(stdout: str, stderr: str, data_dir: Path) -> None:
    """No informational log line on the console; the launcher's log is in data_dir/logs."""
    for line in (stdout + stderr).splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            assert record["level"] not in ("debug", "info"), line
    launcher_log = data_dir / "logs" / "launcher.log"
    kept = [json.loads(line) for line in launcher_log.read_text().splitlines()]
    assert {"launcher"} == {record["service"] for record in kept}
    assert any(record["level"] == "info" for record in kept)


def _port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _processes_mentioning(text: str) -> list[str]:
    listing = subprocess.run(
        ["ps", "-ww", "-eo", "pid,stat,args"], capture_output=True, text=True
    ).stdout
    return [
        line
        for line in listing.splitlines()
        if text in line and " Z" not in line and "ps -eo" not in line
    ]


def test_up_with_the_demo_prints_the_ready_line_and_a_summary_that_matches(
    servers: Servers, tmp_path: Path
) -> None:
    port = free_port()
    seed = str(random.randrange(1_000_000))
    process = _up(servers, tmp_path, port, "--demo", "small", "--exit-after-demo", "--seed", seed)
    try:
        output, errors = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(60)

    assert process.returncode == 0, output + errors
    ready = [line for line in output.splitlines() if line.startswith("returnloop is ready: ")]
    assert ready and f"http://127.0.0.1:{port}" in ready[0]
    assert "loops    closed: 285 (expected 285)" in output
    assert "withdrawn: 3 (expected 3)" in output
    # The demo's rates (none set here): 277 loops by bus at 200, 8 self-driven at 150.
    assert (
        "subsidies  total 56,600 yuan (expected 56,600) for 285 verified loops (expected 285); "
        "yuan per worker: bus 200, train 350, flight 800, self 150"
    ) in output
    assert "every loop ended as expected" in output
    _assert_a_quiet_console(output, errors, tmp_path)
    assert _port_is_closed(port)
    assert _processes_mentioning(str(tmp_path)) == []


def test_ctrl_c_stops_everything_it_started(servers: Servers, tmp_path: Path) -> None:
    port = free_port()
    process = _up(servers, tmp_path, port)
    try:
        _interrupt_once_ready(process, port, tmp_path)
    finally:
        if process.poll() is None:  # the test failed before or at the interrupt: clean up
            process.terminate()
            process.wait(60)


def test_ctrl_c_stops_it_when_started_with_sigint_ignored(servers: Servers, tmp_path: Path) -> None:
    """A shell without job control starts a background command with SIGINT ignored, and
    Python keeps it ignored: `up` must set its own handler or it never stops on Ctrl-C."""
    port = free_port()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        process = _up(servers, tmp_path, port)  # inherits SIGINT ignored, as from `cmd &`
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        _interrupt_once_ready(process, port, tmp_path)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(60)


def _interrupt_once_ready(process: subprocess.Popen[str], port: int, tmp_path: Path) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    before = [process.stdout.readline()]
    while not before[-1].startswith("returnloop is ready"):
        assert process.poll() is None and time.monotonic() < deadline, before[-1]
        before.append(process.stdout.readline())
    assert not _port_is_closed(port)
    if "RETURNLOOP_DATABASE_URL" not in os.environ:
        # The embedded PostgreSQL runs with its data directory under tmp_path.
        assert _processes_mentioning(str(tmp_path)) != []

    process.send_signal(signal.SIGINT)
    rest, errors = process.communicate(timeout=60)

    assert process.returncode == 0, errors
    assert "returnloop stopped" in rest
    _assert_a_quiet_console("".join(before) + rest, errors, tmp_path)
    assert _port_is_closed(port)
    assert _processes_mentioning(str(tmp_path)) == []
