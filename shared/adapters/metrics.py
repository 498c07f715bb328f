"""Prometheus metrics with the contract's names. No worker identifiers in labels."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator, Mapping, Sequence
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# A metric's label values, in its label names' order.
LabelValues = TypeVar("LabelValues", bound=tuple[str, ...])

SCAN_TO_STATE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """All of returnloop's metrics, registered on the registry passed in."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.scans_total = Counter(
            "returnloop_scans_total",
            "Scans by kind and outcome (accepted, rejected, applied, duplicate).",
            ["kind", "outcome"],
            registry=registry,
        )
        self.workers = SnapshotGauge(
            "returnloop_workers",
            "Workers by loop stage and status.",
            ["stage", "status"],
            registry=registry,
        )
        self.alerts_total = Counter(
            "returnloop_alerts_total", "Alerts raised, by kind.", ["kind"], registry=registry
        )
        self.outbox_relayed_total = Counter(
            "returnloop_outbox_relayed_total",
            "Transitions and alerts published from the outbox (a message relayed again "
            "after a crash counts again).",
            registry=registry,
        )
        self.scan_to_state_seconds = Histogram(
            "returnloop_scan_to_state_seconds",
            "Time from a scan's intake to its state change being committed.",
            buckets=SCAN_TO_STATE_BUCKETS,
            registry=registry,
        )
        self.rejected_total = Counter(
            "returnloop_rejected_total",
            "Rejected input, by reason.",
            ["reason"],
            registry=registry,
        )
        self.batches_total = Counter(
            "returnloop_tracker_batches_total",
            "Batches handled, by stage and outcome.",
            ["stage", "outcome"],
            registry=registry,
        )
        self.health_updates_total = Counter(
            "returnloop_health_code_updates_total",
            "Health-code updates by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.platform_polls_total = Counter(
            "returnloop_platform_polls_total",
            "Health-code platform questions about workers in transit, by outcome "
            "(answered, no_code, error).",
            ["outcome"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "returnloop_consumer_lag",
            "Records between a batch consumer's position and the end of a partition.",
            ["consumer", "topic", "partition"],
            registry=registry,
        )
        self.open_alerts = SnapshotGauge(
            "returnloop_open_alerts", "Open alerts, by kind.", ["kind"], registry=registry
        )
        self.enterprise_workers = SnapshotGauge(
            "returnloop_enterprise_workers",
            "Workers on an enterprise's manifest, by roster state.",
            ["enterprise_id", "state"],
            registry=registry,
        )
        self.district_workers = SnapshotGauge(
            "returnloop_district_workers",
            "Workers on the manifests of a district's enterprises, by state (expected, "
            'checked_in, held, broken); district "(none)" sums enterprises without one.',
            ["district", "state"],
            registry=registry,
        )

    @staticmethod
    def add_counts(counter: Counter, counts: Mapping[LabelValues, int]) -> None:
        """Add ``counts`` (label values -> how many) to ``counter``, one ``labels()``
        lookup a label set: a batch's items counted first, as a lookup an item cost
        more than the count."""
        for labels, count in counts.items():
            counter.labels(*labels).inc(count)


class SnapshotGauge(Collector):
    """A gauge whose samples are replaced all at once from a snapshot read elsewhere
    (PostgreSQL), and turned into samples only when scraped.

    Writing thousands of label sets through ``Gauge.labels().set()`` on every refresh
    held the API's event loop for ~60 ms (8,000 label sets: 892 enterprises' rosters);
    a snapshot is one assignment, and a scrape never sees a half-written gauge.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._values: Mapping[tuple[str, ...], float] = {}
        registry.register(self)

    def replace(self, values: Mapping[tuple[str, ...], float]) -> None:
        """Make ``values`` (label values in ``labelnames`` order) the gauge's only samples."""
        for labels in values:
            if len(labels) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, not {labels}")
        self._values = dict(values)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in self._values.items():
            family.add_metric(labels, value)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registered without calling collect() (no samples before the first refresh).
        yield GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)


class WebhookMetrics:
    """The webhooks process's metrics, registered on the registry passed in."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.deliveries_total = Counter(
            "returnloop_webhook_deliveries_total",
            "Webhook delivery attempts by outcome: delivered, failed (to be retried), "
            "dead (no tries left).",
            ["outcome"],
            registry=registry,
        )
        self.events_total = Counter(
            "returnloop_webhook_events_total",
            "Transitions and alerts read by the webhooks process, by outcome: matched (at "
            "least one registration), unmatched, ignored (not a transition or an alert).",
            ["outcome"],
            registry=registry,
        )
        self.attempt_seconds = Histogram(
            "returnloop_webhook_attempt_seconds",
            "Time one webhook POST took (until answered, refused or timed out).",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "returnloop_consumer_lag",
            "Records between a batch consumer's position and the end of a partition.",
            ["consumer", "topic", "partition"],
            registry=registry,
        )


class PythonHeap(Collector):
    """What Python itself holds, as tracemalloc counts it: the bytes of live objects
    (``current``) and the most ever held at once (``peak``). Beside the process's RSS
    it tells a leak (both grow) from an allocator keeping freed memory (RSS stays up
    after a peak while ``current`` falls back). Starts tracing when registered."""

    def __init__(self, frames: int = 1) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(frames)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        current, peak = tracemalloc.get_traced_memory()
        family = GaugeMetricFamily(
            "returnloop_python_heap_bytes",
            "Bytes of Python objects alive (current) and at most (peak), counted by "
            "tracemalloc; served only with RETURNLOOP_TRACEMALLOC=1.",
            labels=["kind"],
        )
        family.add_metric(["current"], current)
        family.add_metric(["peak"], peak)
        yield family
