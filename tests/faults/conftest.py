"""The fault suite runs only against the real servers that deploy/ci-services.sh starts.

It stops and starts those servers (deploy/kafka/restart.sh, deploy/postgres/*.sh),
so embedded servers will not do: without them the suite fails and says how to
start them; it never skips.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import REPO
from tests.support.fixtures import pool, pseudonymiser
from tests.support.servers import Servers, running_servers

__all__ = ["pool", "pseudonymiser", "report", "servers"]

HOW_TO_START = """the fault suite needs the real Kafka and PostgreSQL of deploy/ci-services.sh,
which it restarts. Start them and point the suite at them (as root):

    deploy/ci-services.sh up
    eval "$(deploy/ci-services.sh env)"
    make test-faults
    deploy/ci-services.sh down
"""

SUMMARIES: list[str] = []


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    if not os.environ.get("RETURNLOOP_KAFKA_BOOTSTRAP") or not os.environ.get(
        "RETURNLOOP_DATABASE_URL"
    ):
        pytest.fail(
            f"RETURNLOOP_KAFKA_BOOTSTRAP / _DATABASE_URL are not set: {HOW_TO_START}", False
        )
    if os.geteuid() != 0:
        pytest.fail(
            f"run as root (the deploy scripts restart PostgreSQL as its OS user): {HOW_TO_START}",
            False,
        )
    status = subprocess.run(
        [str(REPO / "deploy" / "ci-services.sh"), "status"], capture_output=True, text=True
    )
    if status.returncode != 0:
        pytest.fail(f"deploy/ci-services.sh status:\n{status.stdout}\n{HOW_TO_START}", False)
    with running_servers(Path(tempfile.mkdtemp(prefix="returnloop-faults-"))) as found:
        yield found


@pytest.fixture(scope="session")
def report() -> Iterator[object]:
    yield SUMMARIES.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARIES:
        terminalreporter.section("fault scenarios")
        for line in SUMMARIES:
            terminalreporter.write_line(line)
