"""Prometheus, the compose stack and Alertmanager agree on where alerts go (no Docker here).

`make check-deploy` also runs `amtool check-config` on deploy/alertmanager/alertmanager.yml.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = "./deploy/alertmanager/alertmanager.yml"


def load(path: str) -> Any:
    return yaml.safe_load((ROOT / path).read_text())


def alertmanager_service() -> dict[str, Any]:
    service: dict[str, Any] = load("docker-compose.yml")["services"]["alertmanager"]
    return service


def test_compose_runs_a_pinned_official_alertmanager_with_the_checked_in_config() -> None:
    service = alertmanager_service()
    assert re.fullmatch(r"prom/alertmanager:v\d+\.\d+\.\d+", service["image"])
    config_flag = next(arg for arg in service["command"] if arg.startswith("--config.file="))
    config_path = config_flag.partition("=")[2]
    mounts = {volume.rsplit(":", 2)[1]: volume.rsplit(":", 2)[0] for volume in service["volumes"]}
    # The operator may mount their own copy; by default it is the checked-in file.
    assert mounts[config_path] == "${ALERTMANAGER_CONFIG:-" + CHECKED_IN + "}"
    assert "healthcheck" in service


def test_prometheus_sends_alerts_to_the_compose_alertmanager() -> None:
    alerting = load("deploy/prometheus/prometheus.yml")["alerting"]
    targets = [
        target
        for manager in alerting["alertmanagers"]
        for static in manager["static_configs"]
        for target in static["targets"]
    ]
    assert targets == ["alertmanager:9093"]
    prometheus = load("docker-compose.yml")["services"]["prometheus"]
    assert "alertmanager" in prometheus["depends_on"]


def test_routing_groups_by_alert_and_enterprise_and_repeats() -> None:
    config = load("deploy/alertmanager/alertmanager.yml")
    route = config["route"]
    assert {"alertname", "enterprise_id"} <= set(route["group_by"])
    assert route["repeat_interval"]
    receivers = {receiver["name"] for receiver in config["receivers"]}
    used = {route["receiver"]} | {child["receiver"] for child in route.get("routes", [])}
    assert used <= receivers


def test_the_checked_in_receiver_is_a_placeholder_not_a_real_endpoint() -> None:
    config = load("deploy/alertmanager/alertmanager.yml")
    urls = [
        webhook["url"]
        for receiver in config["receivers"]
        for webhook in receiver.get("webhook_configs", [])
    ]
    assert urls
    for url in urls:
        assert re.match(r"https?://[^/]+\.invalid(/|$)", url), url


def test_every_rule_has_a_severity_the_routes_can_match() -> None:
    rules = load("deploy/prometheus/rules.yml")
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
