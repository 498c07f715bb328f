"""``returnloop tracker --processes N``: N tracker processes under one command.

Python runs a process's stream handling on one core; a machine with more cores
runs more processes, each a member of the same consumer groups (Kafka shares
the partitions among them, the row locks keep two of them off one worker).
The supervisor starts the N children and stays out of their way:

- a child that ends (crash, SIGKILL, the fault suite's kill switch) ends the
  supervisor too, after it stops the others, with the child's exit status:
  one process manager (compose's restart policy, systemd, the fault suite)
  restarts the whole, as it would a single process;
- SIGTERM / SIGINT are passed on to every child, which stops as it would alone;
- each child dies with the supervisor (``PR_SET_PDEATHSIG``), so a SIGKILLed
  supervisor leaves no consumer behind;
- the i-th child serves its metrics on ``RETURNLOOP_TRACKER_METRICS_PORT`` + i and
  keeps its Faust files in a directory of its own.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def process_count(configured: int) -> int:
    """How many processes to run: as configured, or one per core the process may use."""
    if configured > 0:
        return configured
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _die_with_parent() -> None:
    """In the child, before exec: the kernel SIGKILLs it when the supervisor dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return  # not glibc: the supervisor's own signal handling still stops children
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def child_environment(environ: dict[str, str], index: int) -> dict[str, str]:
    """The i-th child's environment: one process, its own metrics port and Faust files."""
    env = dict(environ)
    env["RETURNLOOP_TRACKER_PROCESSES"] = "1"
    env["RETURNLOOP_TRACKER_PROCESS_INDEX"] = str(index)
    port = int(env.get("RETURNLOOP_TRACKER_METRICS_PORT") or 0)
    if port:
        env["RETURNLOOP_TRACKER_METRICS_PORT"] = str(port + index)
    return env


def supervise(count: int, child_args: Sequence[str]) -> int:
    """Run ``count`` children (``python -m services.tracker`` with ``child_args``) until
    one ends or a stop signal comes; return the exit status to end with."""
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "services.tracker", *child_args],
            env=child_environment(dict(os.environ), index),
            preexec_fn=_die_with_parent,  # before exec; the supervisor starts no threads
        )
        for index in range(count)
    ]
    logger.info(
        "tracker processes started", extra={"processes": count, "pids": [c.pid for c in children]}
    )
    stopping: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    try:
        while True:
            ended = [child for child in children if child.poll() is not None]
            if ended:
                status = ended[0].returncode
                if not stopping:
                    logger.error(
                        "a tracker process ended; stopping the others",
                        extra={"pid": ended[0].pid, "status": status},
                    )
                    forward(signal.SIGTERM, None)
                break
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    if status < 0:  # killed by a signal: exit as a shell reports it
        return 128 - status
    return status
