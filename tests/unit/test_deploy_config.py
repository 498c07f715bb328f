"""The compose file and deployment config hold together (no Docker engine runs here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_compose_stack_has_every_production_service() -> None:
    services = compose()["services"]
    assert {
        "kafka",
        "postgres",
        "migrate",
        "tracker",
        "webhooks",
        "api",
        "prometheus",
        "grafana",
    } <= set(services)
    assert services["tracker"]["deploy"]["replicas"] == 2


def test_compose_uses_the_kafka_version_ci_tests_against() -> None:
    pom = (ROOT / "deploy/kafka/pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert version is not None
    assert compose()["services"]["kafka"]["image"] == f"apache/kafka:{version.group(1)}"


def test_services_wait_for_healthy_or_finished_dependencies() -> None:
    services = compose()["services"]
    for name in ("migrate", "tracker", "webhooks", "api"):
        conditions = {dep["condition"] for dep in services[name]["depends_on"].values()}
        assert conditions <= {"service_healthy", "service_completed_successfully"}, name
    for name in ("kafka", "postgres"):
        assert "healthcheck" in services[name], name


def test_required_secrets_must_be_set_rather_than_defaulted() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for variable in ("RETURNLOOP_WORKER_REF_KEY", "RETURNLOOP_ADMIN_TOKEN", "POSTGRES_PASSWORD"):
        assert re.search(r"\$\{" + variable + r":\?", text), variable
        assert not re.search(r"\$\{" + variable + r":-", text), variable


def dockerfile_stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", arguments.strip(), re.IGNORECASE)
            assert match, line
            current = stages.setdefault(match.group(2) or f"#{len(stages)}", [])
        current.append((instruction, arguments.strip()))
    return stages


def built_services() -> dict[str, dict]:  # type: ignore[type-arg]
    return {
        name: service["build"]
        for name, service in compose()["services"].items()
        if service.get("build")
    }


def test_one_dockerfile_builds_every_service_by_target() -> None:
    builds = built_services()
    assert set(builds) == {"migrate", "tracker", "webhooks", "api"}
    assert {build["dockerfile"] for build in builds.values()} == {"deploy/Dockerfile"}
    assert {name: build["target"] for name, build in builds.items()} == {
        "migrate": "api",
        "tracker": "tracker",
        "webhooks": "webhooks",
        "api": "api",
    }
    for build in builds.values():
        dockerfile = ROOT / build["context"] / build["dockerfile"]
        assert dockerfile.is_file()
        assert build["target"] in dockerfile_stages(dockerfile)
    assert not list((ROOT / "services").glob("*/Dockerfile")), "one Dockerfile, in deploy/"


def test_both_targets_share_a_base_that_makes_the_data_dir_before_dropping_root() -> None:
    stages = dockerfile_stages(ROOT / "deploy/Dockerfile")
    for target in ("api", "tracker", "webhooks"):
        assert stages[target][0] == ("FROM", f"base AS {target}")
        assert stages[target][-1][0] == "CMD"
        assert json.loads(stages[target][-1][1]) == ["returnloop", target]
    base = stages["base"]
    env = " ".join(arguments for instruction, arguments in base if instruction == "ENV")
    data_dir = re.search(r"RETURNLOOP_DATA_DIR=(\S+)", env)
    assert data_dir, "the images set RETURNLOOP_DATA_DIR"
    order = [instruction for instruction, _ in base]
    made = next(
        index
        for index, (instruction, arguments) in enumerate(base)
        if instruction == "RUN"
        and f"mkdir -p {data_dir.group(1)}" in arguments
        and f"chown returnloop:returnloop {data_dir.group(1)}" in arguments
    )
    assert made < order.index("USER")
    assert ("USER", "returnloop") in base
    # Faust keeps its working directory (returnloop-tracker-data) relative to the
    # working directory: that is the data directory, which the service user owns.
    workdirs = [arguments for instruction, arguments in base if instruction == "WORKDIR"]
    assert workdirs == [data_dir.group(1)]
    assert not any(instruction == "WORKDIR" for instruction, _ in stages["tracker"])


def test_the_build_context_is_only_what_the_package_needs() -> None:
    ignore = (ROOT / "deploy/Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything is left out but what is named back in
    copied = {
        source.rstrip("/")
        for instruction, arguments in dockerfile_stages(ROOT / "deploy/Dockerfile")["build"]
        if instruction == "COPY"
        for source in arguments.split()[:-1]
    }
    assert copied == {"pyproject.toml", "README.md", "shared", "services"}
    for source in copied:
        assert f"!{source}" in ignore or f"!{source}/" in ignore, source


def merged(base: dict, override: dict) -> dict:  # type: ignore[type-arg]
    """``docker compose -f base -f override``'s merge, as far as these files need it:
    mappings merge key by key (environment, depends_on, services), anything else is
    replaced by the override's."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = merged(base[key], value)
        else:
            out[key] = value
    return out


def cluster_compose() -> dict:  # type: ignore[type-arg]
    override = yaml.safe_load((ROOT / "docker-compose.cluster.yml").read_text())
    return merged(compose(), override)


KAFKA_NODES = ("kafka", "kafka-2", "kafka-3")


def test_the_cluster_option_runs_three_kafka_nodes_of_the_same_image() -> None:
    services = cluster_compose()["services"]
    image = compose()["services"]["kafka"]["image"]
    assert {name for name in services if name.startswith("kafka")} == set(KAFKA_NODES)
    envs = [services[name]["environment"] for name in KAFKA_NODES]
    assert [services[name]["image"] for name in KAFKA_NODES] == [image] * 3
    assert [env["KAFKA_NODE_ID"] for env in envs] == [1, 2, 3]
    voters = "1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"
    for name, env in zip(KAFKA_NODES, envs, strict=True):
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", name
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters, name
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092", name
        assert "healthcheck" in services[name], name
    assert len({env["CLUSTER_ID"] for env in envs}) == 1
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", envs[0]["CLUSTER_ID"]), "a base64 UUID"
    volumes = [services[name]["volumes"][0].split(":")[0] for name in KAFKA_NODES]
    assert len(set(volumes)) == 3 and set(volumes) <= set(cluster_compose()["volumes"])


def test_the_cluster_option_replicates_three_ways_and_acks_on_two() -> None:
    services = cluster_compose()["services"]
    for name in KAFKA_NODES:
        env = services[name]["environment"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3, name
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2, name
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3, name
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 2, name
        assert str(env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"]).lower() == "false", name
        assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]).lower() == "false", name


def test_the_cluster_option_points_every_service_at_all_three_brokers() -> None:
    services = cluster_compose()["services"]
    for name in ("migrate", "tracker", "webhooks", "api"):
        env = services[name]["environment"]
        brokers = env["RETURNLOOP_KAFKA_BOOTSTRAP"].split(",")
        assert brokers == [f"{node}:9092" for node in KAFKA_NODES], name
        assert env["RETURNLOOP_TOPIC_REPLICATION"] == "3", name
        # The rest of the base file's environment is kept (the override adds to it).
        assert (
            env["RETURNLOOP_ADMIN_TOKEN"]
            == compose()["services"][name]["environment"]["RETURNLOOP_ADMIN_TOKEN"]
        ), name
    waits = services["migrate"]["depends_on"]
    assert {node: waits[node]["condition"] for node in KAFKA_NODES} == dict.fromkeys(
        KAFKA_NODES, "service_healthy"
    )
    assert waits["postgres"]["condition"] == "service_healthy"
