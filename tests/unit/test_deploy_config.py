"""The compose file and deployment config hold together (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_compose_stack_has_every_production_service() -> None:
    services = compose()["services"]
    assert {"kafka", "postgres", "migrate", "tracker", "api", "prometheus", "grafana"} <= set(
        services
    )
    assert services["tracker"]["deploy"]["replicas"] == 2


def test_compose_uses_the_kafka_version_ci_tests_against() -> None:
    pom = (ROOT / "deploy/kafka/pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert version is not None
    assert compose()["services"]["kafka"]["image"] == f"apache/kafka:{version.group(1)}"


def test_services_wait_for_healthy_or_finished_dependencies() -> None:
    services = compose()["services"]
    for name in ("migrate", "tracker", "api"):
        conditions = {dep["condition"] for dep in services[name]["depends_on"].values()}
        assert conditions <= {"service_healthy", "service_completed_successfully"}, name
    for name in ("kafka", "postgres"):
        assert "healthcheck" in services[name], name


def test_required_secrets_must_be_set_rather_than_defaulted() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for variable in ("RETURNLOOP_WORKER_REF_KEY", "RETURNLOOP_ADMIN_TOKEN", "POSTGRES_PASSWORD"):
        assert re.search(r"\$\{" + variable + r":\?", text), variable
        assert not re.search(r"\$\{" + variable + r":-", text), variable


def test_each_built_service_has_its_dockerfile() -> None:
    for service in compose()["services"].values():
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file()
