"""The Grafana dashboard and the Prometheus rules only use metrics the code registers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from services.api.app import create_app
from shared.adapters.metrics import Metrics
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
RULES = ROOT / "deploy/prometheus/rules.yml"
# Series Prometheus itself writes for every target.
PROMETHEUS_SERIES = {"up"}
PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan",
}  # fmt: skip
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}


def registered_series() -> set[str]:
    """Every series name the tracker (Metrics) and the API (Metrics + its own) can expose."""
    registry = CollectorRegistry()
    create_app(Settings(), registry)  # registers Metrics and the API's latency histogram
    Metrics(CollectorRegistry())  # the tracker's: the same class, on its own registry
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in SAMPLE_SUFFIXES[family.type]
    }


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (labels, functions and keywords left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        following = expr[match.end() :].lstrip()
        if following.startswith("("):
            continue  # a function or an aggregation
        if match.group().lower() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # panels folded inside a row
    return [panel for panel in found if panel.get("type") != "row"]


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_metric_names_reads_only_the_metrics_of_an_expression() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, route) (rate(returnloop_api_request_seconds_bucket"
        '{route=~"/v1/.*"}[$__rate_interval]))) > 0.5 and on (job) up == 1'
    )
    assert metric_names(expr) == {"returnloop_api_request_seconds_bucket", "up"}


def test_there_is_a_dashboard_with_a_unique_uid() -> None:
    assert DASHBOARDS
    uids = [json.loads(path.read_text())["uid"] for path in DASHBOARDS]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_every_panel_queries_the_provisioned_datasource(path: Path) -> None:
    provisioned = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uids = {source["uid"] for source in provisioned["datasources"]}
    dashboard = json.loads(path.read_text())
    assert panels(dashboard)
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target.get("datasource", panel["datasource"])["uid"] in uids, panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboards_use_only_registered_metrics(path: Path) -> None:
    known = registered_series() | PROMETHEUS_SERIES
    for panel in panels(json.loads(path.read_text())):
        for target in panel["targets"]:
            unknown = metric_names(target["expr"]) - known
            assert not unknown, f"{panel['title']}: {sorted(unknown)}"


def test_panels_do_not_overlap() -> None:
    for path in DASHBOARDS:
        cells: set[tuple[int, int]] = set()
        for panel in panels(json.loads(path.read_text())):
            grid = panel["gridPos"]
            mine = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not cells & mine, panel["title"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]
            cells |= mine


def test_rules_use_only_registered_metrics() -> None:
    known = registered_series() | PROMETHEUS_SERIES
    assert rules()
    for rule in rules():
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{rule['alert']}: {sorted(unknown)}"
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_rules_watch_what_the_contract_asks_for() -> None:
    alerts = {rule["alert"] for rule in rules()}
    assert {
        "ReturnloopOverdueLoops",
        "ReturnloopRejectsRising",
        "ReturnloopConsumerLagHigh",
        "ReturnloopTrackerDown",
        "ReturnloopApiDown",
    } <= alerts


def test_rules_never_group_by_a_worker() -> None:
    for rule in rules():
        assert "worker_ref" not in rule["expr"], rule["alert"]


def test_prometheus_loads_the_rules_and_scrapes_both_services() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert "rules.yml" in config["rule_files"]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"returnloop-api", "returnloop-tracker"} <= jobs
    for rule in rules():
        for job in re.findall(r'job="([^"]+)"', rule["expr"]):
            assert job in jobs, rule["alert"]


def test_grafana_loads_the_dashboards_directory_compose_mounts() -> None:
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/dashboards.yml").read_text()
    )["providers"][0]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in compose["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
