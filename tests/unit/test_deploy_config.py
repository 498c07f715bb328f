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
