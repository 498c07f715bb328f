"""A broker dies: three Kafka brokers, RF 3, min ISR 2, and nothing is lost.

Runs against the three-node KRaft cluster of ``deploy/kafka/cluster.sh`` (marker
``cluster``, ``make test-cluster``, which starts and stops it) and the dev/CI
PostgreSQL. Each scenario sends part of its stream, starts a tracker in a consumer
group of its own, SIGKILLs a broker mid-stream, sends the rest of the stream while
that broker is dead, starts the broker again on its data, and checks the end as
every fault scenario does (``tests.faults.harness``): accepted + rejected = sent,
every scan applied exactly once, states = oracle, announcements = stored state.

(a) kills the active KRaft controller (a broker too: every node is both);
(b) kills the broker that leads most partitions of ``scans.accepted`` (the topic
    the tracker writes and reads back to apply), once every partition is fully
    replicated again after (a).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from shared import topics
from shared.adapters.kafka.admin import ensure_topics
from shared.identity import Pseudonymiser
from tests.faults.harness import REPO, Scenario, Trackers
from tests.faults.stream import generate
from tests.support.servers import Servers, running_servers, server_env, unique

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(480)]

WORKERS = 2000
CLUSTER = REPO / "deploy" / "kafka" / "cluster.sh"
# The share of the scans first sent while a broker is dead.
HELD_BACK = 0.4
DOWN_SECONDS = 12  # longer than broker.session.timeout.ms (9 s): leadership moves
HOW_TO_START = """the cluster scenario needs the three-broker cluster and a PostgreSQL:

    deploy/ci-services.sh up                 # PostgreSQL (and the dev broker)
    eval "$(deploy/ci-services.sh env)"
    make test-cluster                        # deploy/kafka/cluster.sh run: up, test, down
"""


def cluster(*args: str, log: Path) -> str:
    """Run deploy/kafka/cluster.sh; its stdout (stderr goes to ``log``)."""
    with log.open("ab") as err:
        done = subprocess.run(
            [str(CLUSTER), *args],
            check=True,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            timeout=180,
        )
    return done.stdout.decode().strip()


def describe(bootstrap: str, names: list[str]) -> dict[str, list[dict]]:  # type: ignore[type-arg]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="returnloop-cluster-test")
    try:
        return {
            t["name"]: [
                {
                    "partition": p["partition_index"],
                    "leader": p["leader_id"],
                    "replicas": p["replica_nodes"],
                    "isr": p["isr_nodes"],
                }
                for p in t["partitions"]
            ]
            for t in admin.describe_topics(names)
        }
    finally:
        admin.close()


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    return {p["partition"]: p["leader"] for p in describe(bootstrap, [topic])[topic]}


async def wait_fully_replicated(bootstrap: str, within: float = 120) -> None:
    """Every partition of the project's topics has all 3 replicas in sync again."""
    deadline = time.monotonic() + within
    while True:
        short = [
            (name, p["partition"], p["isr"])
            for name, partitions in describe(bootstrap, list(topics.ALL_TOPICS)).items()
            for p in partitions
            if len(p["isr"]) < 3
        ]
        if not short:
            return
        assert time.monotonic() < deadline, f"not fully replicated after {within} s: {short[:5]}"
        await asyncio.sleep(1)


def topic_configs(bootstrap: str, wanted: dict[str, str]) -> dict[str, dict[str, str]]:
    """The project's topics' effective values of the ``wanted`` settings."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="returnloop-cluster-test")
    try:
        configs = admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, name, dict.fromkeys(wanted))
                for name in topics.ALL_TOPICS
            ],
            config_filter="all",
        )["topic"]
    finally:
        admin.close()
    return {
        name: {key: entry["value"] for key, entry in configs.get(name, {}).items()}
        for name in topics.ALL_TOPICS
    }


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    """The cluster (RETURNLOOP_KAFKA_BOOTSTRAP names its three brokers) and PostgreSQL,
    with the project's topics at RF 3 / min ISR 2: overrides the fault suite's servers."""
    bootstrap = os.environ.get("RETURNLOOP_KAFKA_BOOTSTRAP", "")
    if not os.environ.get("RETURNLOOP_DATABASE_URL"):
        pytest.fail(f"RETURNLOOP_DATABASE_URL is not set: {HOW_TO_START}", False)
    expected = cluster_bootstrap()
    if set(bootstrap.split(",")) != set(expected.split(",")):
        pytest.fail(
            f"RETURNLOOP_KAFKA_BOOTSTRAP is {bootstrap!r}, not the cluster's {expected!r}: "
            f"{HOW_TO_START}",
            False,
        )
    replication = int(os.environ.get("RETURNLOOP_TOPIC_REPLICATION", "3"))
    assert replication == 3, "the cluster scenario runs with RETURNLOOP_TOPIC_REPLICATION=3"
    ensure_topics(bootstrap, partitions=4, replication=replication)
    wanted = {"min.insync.replicas": "2", "unclean.leader.election.enable": "false"}
    deadline = time.monotonic() + 60
    while True:  # new topics take a moment to reach every broker (leaders, configs)
        described = describe(bootstrap, list(topics.ALL_TOPICS))
        configs = topic_configs(bootstrap, wanted)
        if all(
            parts and all(p["leader"] >= 0 for p in parts) and configs[name].keys() == wanted.keys()
            for name, parts in described.items()
        ):
            break
        assert time.monotonic() < deadline, (
            f"topics without leaders or configs after 60 s: {described}, {configs}"
        )
        time.sleep(0.5)
    thin = {
        name: sorted({len(p["replicas"]) for p in parts})
        for name, parts in described.items()
        if {len(p["replicas"]) for p in parts} != {3}
    }
    assert not thin, f"topics without 3 replicas (made by an earlier run?): {thin}"
    wrong = {name: got for name, got in configs.items() if got != wanted}
    assert not wrong, f"topics not at {wanted}: {wrong}"
    data_dir = Path(tempfile.mkdtemp(prefix="returnloop-cluster-test-"))
    try:
        with running_servers(data_dir) as found:
            yield found
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def cluster_bootstrap() -> str:
    return subprocess.run(
        [str(CLUSTER), "bootstrap"], check=True, capture_output=True, text=True
    ).stdout.strip()


# One consumer group for the whole run, shared by no other process (the trackers of
# scenario (b) carry on where those of (a) stopped).
GROUP = unique("returnloop-cluster")


class ClusterScenario(Scenario):
    """A scenario whose held-back part, 40 % of the scans, is sent while a broker is dead."""

    def led_by(self, node: int) -> list[int]:
        """The partitions of scans.accepted that ``node`` leads (ask before the trackers
        start: the admin client blocks the loop, and the stream would run on meanwhile)."""
        return sorted(
            p for p, leader in leaders(self.bootstrap, topics.ACCEPTED).items() if leader == node
        )

    async def kill_broker_mid_stream(self, node: int, why: str, led: list[int]) -> None:
        log = self.trackers.log_dir / "cluster.log"
        await self.mid_stream(
            0.3, f"SIGKILL of broker {node} ({why}; it led {topics.ACCEPTED} partitions {led})"
        )
        cluster("kill", str(node), log=log)
        began = time.monotonic()
        sent_late = await self.send_rest()
        self.injected.append(
            f"{sent_late} messages sent while it was dead ({time.monotonic() - began:.1f} s)"
        )
        await self.hold(max(0.0, DOWN_SECONDS - (time.monotonic() - began)))
        moved = leaders(self.bootstrap, topics.ACCEPTED)
        assert node not in moved.values(), f"broker {node} still leads {moved}"
        cluster("start", str(node), log=log)
        felt = {
            what: self.trackers.count_in_logs(f'"message":"{text}')
            for what, text in (
                ("failed connects", f"Unable connect to node with id {node}"),
                ("produce errors retried", "Got error produce response"),
                ("coordinators marked dead", "Marking the coordinator dead"),
            )
        }
        self.injected.append(
            f"broker {node} back after {time.monotonic() - began:.0f} s; "
            f"{topics.ACCEPTED} leaders meanwhile {dict(sorted(moved.items()))}; "
            f"the tracker felt it: {', '.join(f'{n} {what}' for what, n in felt.items())}"
        )
        assert felt["failed connects"] > 0, "the tracker never noticed the dead broker"


def stop_trackers_on_sigterm(trackers: Trackers) -> None:
    """A time limit (CI's `timeout`) ends pytest with SIGTERM, which skips fixture
    teardown; the trackers run in sessions of their own and would outlive it, retrying
    a cluster that `cluster.sh run` has stopped. Stop them first, then die of it."""

    def stop(signum: int, frame: object) -> None:
        for process in trackers.processes:
            process.stop(timeout=5)  # well within CI's 30 s before its SIGKILL
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, stop)


@pytest.fixture
async def scenario(
    request: pytest.FixtureRequest,
    servers: Servers,
    pool: asyncpg.Pool,
    pseudonymiser: Pseudonymiser,
    tmp_path: Path,
) -> AsyncIterator[ClusterScenario]:
    await wait_fully_replicated(servers.kafka_bootstrap)
    name = request.node.name.removeprefix("test_")
    stream = generate(unique("cls"), WORKERS, seed=zlib.crc32(name.encode()))
    env = server_env(servers, RETURNLOOP_BATCH_MAX_RECORDS="200", RETURNLOOP_CONSUMER_GROUP=GROUP)
    trackers = Trackers(env, tmp_path)
    stop_trackers_on_sigterm(trackers)
    run = ClusterScenario(
        name, stream, pool, pseudonymiser, servers.kafka_bootstrap, trackers, held_back=HELD_BACK
    )
    await run.send_stream()
    try:
        yield run
    finally:
        trackers.stop_all()
        # Leave no dead broker behind for the next scenario (or a failed one).
        for node in (1, 2, 3):
            cluster("start", str(node), log=tmp_path / "cluster.log")
        # The trackers' logs outlive the run, beside the brokers' (CI keeps neither
        # otherwise): $KAFKA_CLUSTER_DIR/test-logs/<scenario>/.
        kept = Path(os.environ.get("KAFKA_CLUSTER_DIR", "/tmp/returnloop-cluster"))
        shutil.copytree(tmp_path, kept / "test-logs" / name, dirs_exist_ok=True)


async def test_a_broker_is_killed_mid_stream_and_comes_back(
    scenario: ClusterScenario, report: Callable[[str], None]
) -> None:
    node = int(cluster("controller", log=scenario.trackers.log_dir / "cluster.log"))
    led = scenario.led_by(node)
    scenario.trackers.start()
    await scenario.kill_broker_mid_stream(node, "the active controller", led)
    await scenario.finish_and_check(report)


async def test_the_leader_of_the_accepted_scans_is_killed(
    scenario: ClusterScenario, report: Callable[[str], None]
) -> None:
    counts = Counter(leaders(scenario.bootstrap, topics.ACCEPTED).values())
    node, led = counts.most_common(1)[0]
    assert led >= 2, counts
    partitions = scenario.led_by(node)
    scenario.trackers.start()
    await scenario.kill_broker_mid_stream(node, f"leader of {led} of 4 partitions", partitions)
    await scenario.finish_and_check(report)
