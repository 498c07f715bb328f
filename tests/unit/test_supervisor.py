"""``returnloop tracker --processes N``: how many, and what each child is told."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from services.tracker import supervisor
from services.tracker.supervisor import child_environment, process_count


def test_the_default_is_one_process_per_core_this_process_may_use() -> None:
    assert process_count(0) == len(os.sched_getaffinity(0))
    assert process_count(3) == 3


def test_each_child_runs_one_process_on_its_own_metrics_port() -> None:
    env = {"RETURNLOOP_TRACKER_METRICS_PORT": "9102", "RETURNLOOP_TRACKER_PROCESSES": "0"}
    children = [child_environment(env, index) for index in range(3)]
    assert [c["RETURNLOOP_TRACKER_METRICS_PORT"] for c in children] == ["9102", "9103", "9104"]
    assert {c["RETURNLOOP_TRACKER_PROCESSES"] for c in children} == {"1"}
    assert [c["RETURNLOOP_TRACKER_PROCESS_INDEX"] for c in children] == ["0", "1", "2"]
    assert env["RETURNLOOP_TRACKER_METRICS_PORT"] == "9102"  # the parent's is untouched


def test_without_a_metrics_port_no_child_serves_one() -> None:
    assert "RETURNLOOP_TRACKER_METRICS_PORT" not in child_environment({}, 1)


def _fake_children(tmp_path: Path, body: str) -> Path:
    """A package ``services.tracker`` stand-in the supervisor's children run instead."""
    package = tmp_path / "fake" / "services" / "tracker"
    package.mkdir(parents=True)
    (tmp_path / "fake" / "services" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(textwrap.dedent(body))
    return tmp_path / "fake"


def _run_supervisor(tmp_path: Path, fake: Path, count: int) -> subprocess.Popen[str]:
    code = (
        "import sys; sys.path.insert(0, {fake!r}); "
        "from services_tracker_supervisor import supervise; "
        "sys.exit(supervise({count}, []))"
    )
    # The supervisor module itself, importable apart from the fake package.
    (tmp_path / "services_tracker_supervisor.py").write_text(Path(supervisor.__file__).read_text())
    return subprocess.Popen(
        [sys.executable, "-c", code.format(fake=str(fake), count=count)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{fake}:{tmp_path}"},
        text=True,
    )


def _pids(tmp_path: Path, count: int) -> list[int]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        files = sorted(tmp_path.glob("child-*.pid"))
        if len(files) == count:
            return [int(f.read_text()) for f in files]
        time.sleep(0.05)
    raise AssertionError(f"{count} children did not start")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too (its parent has not reaped it yet).
    status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    return status != "Z"


def _wait_dead(pids: list[int], within: float = 20) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids), "a child outlived its supervisor"


_CHILD = """
    import os, signal, sys, time
    index = os.environ["RETURNLOOP_TRACKER_PROCESS_INDEX"]
    open(f"child-{index}.pid", "w").write(str(os.getpid()))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(0.1)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_that_dies_ends_the_supervisor_and_its_siblings_with_its_status(
    tmp_path: Path,
) -> None:
    fake = _fake_children(tmp_path, _CHILD)
    parent = _run_supervisor(tmp_path, fake, 3)
    pids = _pids(tmp_path, 3)
    os.kill(pids[1], signal.SIGKILL)
    assert parent.wait(timeout=30) == 128 + signal.SIGKILL
    _wait_dead(pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_sigterm_stops_every_child_and_the_supervisor_exits_cleanly(tmp_path: Path) -> None:
    fake = _fake_children(tmp_path, _CHILD)
    parent = _run_supervisor(tmp_path, fake, 2)
    pids = _pids(tmp_path, 2)
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == 0
    _wait_dead(pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_sigkilled_supervisor_leaves_no_child_behind(tmp_path: Path) -> None:
    fake = _fake_children(tmp_path, _CHILD)
    parent = _run_supervisor(tmp_path, fake, 2)
    pids = _pids(tmp_path, 2)
    parent.kill()
    parent.wait(timeout=10)
    _wait_dead(pids)
