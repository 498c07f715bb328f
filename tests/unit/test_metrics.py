"""Consumer lag arithmetic and gauges refreshed from PostgreSQL."""

from __future__ import annotations

import os
import tracemalloc

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, generate_latest

from shared.adapters.kafka.consumer import partition_lag
from shared.adapters.metrics import Metrics, PythonHeap

ACCEPTED_0 = TopicPartition("scans.accepted", 0)
ACCEPTED_1 = TopicPartition("scans.accepted", 1)


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(sample.labels.values()): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def test_lag_is_the_distance_from_the_position_to_the_end_of_the_partition() -> None:
    lag = partition_lag({ACCEPTED_0: 1500, ACCEPTED_1: 40}, {ACCEPTED_0: 1000, ACCEPTED_1: 40})
    assert lag == {ACCEPTED_0: 500, ACCEPTED_1: 0}


def test_partitions_whose_end_is_unknown_have_no_lag_yet() -> None:
    assert partition_lag({ACCEPTED_0: None, ACCEPTED_1: 10}, {ACCEPTED_1: 4}) == {ACCEPTED_1: 6}


def test_a_position_past_a_stale_end_is_no_lag_rather_than_negative() -> None:
    assert partition_lag({ACCEPTED_0: 100}, {ACCEPTED_0: 120}) == {ACCEPTED_0: 0}


def test_replacing_gauge_values_sets_the_new_and_drops_the_gone() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.open_alerts.replace({("overdue_arrival",): 3, ("fever_at_departure",): 1})
    metrics.open_alerts.replace({("overdue_arrival",): 2, ("wrong_enterprise",): 1})
    assert samples(registry, "returnloop_open_alerts") == {
        ("overdue_arrival",): 2,
        ("wrong_enterprise",): 1,
    }


def test_replacing_with_nothing_empties_the_gauge() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.enterprise_workers.replace({("yinzhou-textile", "expected"): 40})
    metrics.enterprise_workers.replace({})
    assert samples(registry, "returnloop_enterprise_workers") == {}


def test_a_snapshot_gauge_is_exposed_as_a_gauge_with_its_labels() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.workers.replace({("arrival", "on_track"): 12})
    text = generate_latest(registry).decode()
    assert "# TYPE returnloop_workers gauge" in text
    assert 'returnloop_workers{stage="arrival",status="on_track"} 12.0' in text


def test_a_snapshot_with_the_wrong_labels_is_refused_and_the_last_one_kept() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.district_workers.replace({("鹿城区", "expected"): 5})
    with pytest.raises(ValueError, match="takes labels"):
        metrics.district_workers.replace({("鹿城区",): 6})
    assert samples(registry, "returnloop_district_workers") == {("鹿城区", "expected"): 5}


def test_the_python_heap_gauge_rises_with_live_objects_and_falls_when_they_are_freed() -> None:
    registry = CollectorRegistry()
    registry.register(PythonHeap())
    try:
        before = samples(registry, "returnloop_python_heap_bytes")[("current",)]
        held = [os.urandom(1024) for _ in range(4096)]  # 4 MiB of distinct objects
        during = samples(registry, "returnloop_python_heap_bytes")
        del held
        after = samples(registry, "returnloop_python_heap_bytes")[("current",)]
    finally:
        tracemalloc.stop()
    assert during[("current",)] - before >= 4 * 1024 * 1024
    assert during[("peak",)] >= during[("current",)]
    assert after < during[("current",)] - 4 * 1000 * 1024
