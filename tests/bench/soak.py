"""``make soak``: one tracker for a long run at half its capacity; does anything creep?

A benchmark's drain lasts minutes; a return wave lasts forty days. The soak runs
one ``returnloop tracker`` process (and, with ``--api``, the API in front of it)
on the Apache Kafka and PostgreSQL that RETURNLOOP_KAFKA_BOOTSTRAP /
RETURNLOOP_DATABASE_URL point at, for ``--minutes`` (default 30):

- the offered rate is half of one process's capacity: measured first by a short
  drain of the same tracker (a 200-worker warm-up, then a wave produced at once,
  first send to last scan applied), or half of ``--capacity``, or ``--rate``;
- scans are city-shaped waves (``services/cli/demo.py``, Wenzhou's mix), built a
  minute of scans at a time, each wave's manifest and code links written before
  its scans are sent; every ``--burst-every`` seconds the rate triples for
  ``--burst-seconds`` (1.5× capacity), so lag builds and must drain again;
- every ``--sample-seconds`` it samples the tracker's process-tree RSS, the
  consumer lag (the tracker's groups' committed offsets against the partitions'
  end offsets; the tracker's own ``returnloop_consumer_lag`` gauge beside it),
  and the scan-to-state p50/p99 of the soak's own scans applied in the interval
  (``applied_at`` minus the moment the soak sent the scan; the tracker's
  ``returnloop_scan_to_state_seconds`` histogram beside it).

It writes ``bench-results/soak.json`` and a chart, ``bench-results/soak.png``,
and exits non-zero, saying why, when RSS keeps growing (the least-squares slope
over the second half above ``--rss-slope-mb`` per 10 minutes *and* the last
quarter's median above the second quarter's by more than ``--rss-margin-mb``),
when lag does not come back under ``--lag-bound`` within ``--recover-seconds``
after a burst, or is above it at the end, or when more than 0.1 % of its scans
were never applied.

Isolation: a database of its own (``soak_<random>`` on the same server, migrated,
dropped at the end) and consumer groups of their own
(``RETURNLOOP_CONSUMER_GROUP=returnloop-soak-<random>``, committed at the topics'
ends before the tracker starts, so it does not replay what the topics hold).
The topics are shared: trackers in other groups read the soak's scans too, and
the soak's tracker reads whatever others produce meanwhile (it is real work for
it, and shows in its lag); the soak's figures count only its own scans, by
scan_id. Run it when the machine is quiet.

    python -m tests.bench.soak --minutes 30
    python -m tests.bench.soak --minutes 3            # a quick look
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import asyncpg
import orjson
import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families
from tqdm import tqdm

from services.cli.demo import Wave
from shared import topics
from shared.adapters.kafka.admin import ensure_topics
from shared.adapters.postgres.pool import create_pool
from shared.adapters.postgres.schema import migrate
from shared.identity import Pseudonymiser
from tests.bench.bench import (
    BENCH_WORKER_REF_KEY,
    Message,
    ProcessTreeRss,
    database_url_for,
    dead_letter_reasons,
    delete_groups,
    free_port,
    input_messages,
    log_problems,
    log_tail,
    machine,
    new_producer,
    percentile,
    prepare,
    produce_all,
    spawn,
    stop,
    versions,
    wait_ready,
    wave_of,
)

SOAK_ADMIN_TOKEN = "returnloop-soak-admin-token-0123456789"
SCANS_PER_WORKER = 4.3  # a city wave delivers ~4.3 scans a worker (duplicates included)


@dataclass
class Sample:
    """One sampling instant; ``t`` in seconds since the soak's offering began."""

    t: float
    phase: str  # soak, burst, drain
    tracker_rss_mb: float
    api_rss_mb: float | None
    lag: int | None  # committed vs end offsets, summed over the tracker's groups
    lag_gauge: float | None  # the tracker's returnloop_consumer_lag, summed
    p50_ms: float | None  # the soak's own scans applied in the interval
    p99_ms: float | None
    histogram_p99_ms: float | None  # the tracker's scan_to_state histogram, interval delta
    applied: int  # the soak's own scans found applied in the interval
    offered_per_s: float
    applied_per_s: float
    pending: int  # the soak's scans sent, not yet seen applied
    tracker_heap_mb: float | None = None  # returnloop_python_heap_bytes (--tracemalloc)


@dataclass
class Verdict:
    failures: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- the soak's own scans


class Ledger:
    """The soak's scans in flight: scan_id -> the moment it was sent (epoch seconds).

    Only scans the soak sent are counted (other processes' scans applied by the
    same tracker are not). Duplicates within a wave keep their first send time; a
    wave's ids are forgotten once it is sent and applied, so memory stays bounded.
    """

    def __init__(self) -> None:
        self.pending: dict[str, tuple[float, str]] = {}  # scan_id -> (sent at, worker_ref)
        self.wave_ids: set[str] = set()
        self.sent_unique = 0
        self.applied_total = 0
        self.interval: list[float] = []  # latencies (ms) found since the last sample
        self.interval_sent = 0

    def sent(self, scan_id: str, at: float, worker_ref: str) -> None:
        self.interval_sent += 1
        if scan_id in self.wave_ids:
            return
        self.wave_ids.add(scan_id)
        self.pending[scan_id] = (at, worker_ref)
        self.sent_unique += 1

    def new_wave(self) -> None:
        self.wave_ids = set()

    async def poll(self, pool: asyncpg.Pool, *, limit: int = 60_000) -> int:
        """Find pending scans applied since the last poll (oldest first); return how many.

        Asked by worker_ref too: the log is partitioned by it and indexed by
        (worker_ref, occurred_at), not by scan_id alone (migration 0012); by scan_id
        alone each poll read every partition whole, ever slower as the log grew."""
        ids = list(self.pending)[:limit]
        found = 0
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            rows = await pool.fetch(
                "SELECT scan_id, extract(epoch FROM applied_at)::float8 AS at "
                "FROM applied_scans WHERE worker_ref = ANY($1::text[]) AND scan_id = ANY($2::text[])",
                list({self.pending[scan_id][1] for scan_id in chunk}),
                chunk,
            )
            for row in rows:
                sent, _ = self.pending.pop(row["scan_id"])
                self.interval.append(max(0.0, row["at"] - sent) * 1000)
            found += len(rows)
        self.applied_total += found
        return found

    def take_interval(self) -> tuple[list[float], int]:
        latencies, self.interval = self.interval, []
        sent, self.interval_sent = self.interval_sent, 0
        return latencies, sent


# ---------------------------------------------------------------- waves, ahead of time


class WaveMaker:
    """Builds waves of ``seconds`` worth of scans in a thread, one or two ahead."""

    def __init__(
        self, pool: asyncpg.Pool, pseudonymiser: Pseudonymiser, *, seed: int, workers: int
    ) -> None:
        self.pool = pool
        self.pseudonymiser = pseudonymiser
        self.seed = seed
        self.workers = workers
        self.queue: asyncio.Queue[tuple[Wave, list[Message]]] = asyncio.Queue(maxsize=2)
        self.made = 0
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.made += 1
            seed = self.seed * 1000 + self.made
            wave = await asyncio.to_thread(wave_of, self.workers, seed=seed, now=datetime.now(UTC))
            # prepare first: a worker whose codes it cannot link is named by ID number in
            # the messages made after it (made before, their scans by code were dead-lettered
            # as unknown_code: likely the 12 scans the first 30-minute soak never applied).
            await prepare(self.pool, wave, self.pseudonymiser)
            messages = await asyncio.to_thread(input_messages, wave, self.pseudonymiser)
            await self.queue.put((wave, messages))

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="wave-maker")

    async def next(self) -> tuple[Wave, list[Message]]:
        assert self.task is not None
        getter = asyncio.ensure_future(self.queue.get())
        done, _ = await asyncio.wait({getter, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            self.task.result()  # raises what stopped the maker
            raise RuntimeError("the wave maker stopped")
        return getter.result()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


# ---------------------------------------------------------------- what is sampled


def group_topics(group: str) -> dict[str, list[str]]:
    """The tracker's consumer groups (services/tracker/main.py, app.py) and their topics."""
    return {
        f"{group}-intake": [*topics.INPUT_TOPICS.values(), topics.HEALTHCODE_UPDATES],
        f"{group}-apply": [topics.ACCEPTED, topics.HEALTHCODE_ACCEPTED, topics.DISPOSITIONS],
        group: [topics.HEALTHCODE_UPDATES],  # the Faust agent
    }


class KafkaLag:
    """Consumer lag of the tracker's groups: end offsets minus committed offsets."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.bootstrap = bootstrap
        self.groups = group_topics(group)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.partitions: dict[str, list[TopicPartition]] = {}

    async def start(self) -> None:
        await self.consumer.start()
        await self.admin.start()
        await self.consumer._client.force_metadata_update()
        for name, topic_names in self.groups.items():
            self.partitions[name] = [
                TopicPartition(topic, p)
                for topic in topic_names
                for p in sorted(self.consumer.partitions_for_topic(topic) or ())
            ]

    async def close(self) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def commit_at_end(self) -> None:
        """Commit every group at its topics' current ends: a new group must not replay
        the days of input the shared topics hold (its consumers start at "earliest")."""
        for name, partitions in self.partitions.items():
            ends = await self.consumer.end_offsets(partitions)
            committer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=name, enable_auto_commit=False
            )
            await committer.start()
            try:
                committer.assign(partitions)
                await committer.commit({tp: ends[tp] for tp in partitions})
            finally:
                await committer.stop()

    async def lag(self) -> int:
        every = [tp for partitions in self.partitions.values() for tp in partitions]
        ends = await self.consumer.end_offsets(list(set(every)))
        total = 0
        for name, partitions in self.partitions.items():
            committed = await self.admin.list_consumer_group_offsets(name)
            for tp in partitions:
                offset = committed.get(tp)
                position = offset.offset if offset is not None and offset.offset >= 0 else 0
                total += max(0, ends[tp] - position)
        return total

    async def delete_groups(self) -> None:
        await asyncio.to_thread(delete_groups, self.bootstrap, list(self.groups))


class TrackerMetrics:
    """The tracker's /metrics: lag gauge summed, and the scan-to-state histogram's
    p99 over the interval since the previous scrape (as PromQL's histogram_quantile)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.previous: dict[float, float] | None = None

    async def scrape(
        self, session: aiohttp.ClientSession
    ) -> tuple[float | None, float | None, float | None]:
        """Lag, the interval's p99 (ms), and Python's live heap (bytes; None untraced)."""
        try:
            async with session.get(self.url) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return None, None, None
        lag = 0.0
        heap = None
        buckets: dict[float, float] = {}
        for family in text_string_to_metric_families(text):
            if family.name == "returnloop_consumer_lag":
                lag += sum(sample.value for sample in family.samples)
            elif family.name == "returnloop_python_heap_bytes":
                heap = next(s.value for s in family.samples if s.labels["kind"] == "current")
            elif family.name == "returnloop_scan_to_state_seconds":
                for sample in family.samples:
                    if sample.name.endswith("_bucket"):
                        buckets[float(sample.labels["le"])] = sample.value
        p99 = None
        if self.previous is not None and buckets:
            delta = {le: buckets[le] - self.previous.get(le, 0.0) for le in buckets}
            p99 = histogram_quantile(0.99, delta)
        self.previous = buckets
        return lag, None if p99 is None else p99 * 1000, heap


def histogram_quantile(q: float, cumulative: dict[float, float]) -> float | None:
    """The q-quantile of cumulative bucket counts, linear within a bucket."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank = q * cumulative[bounds[-1]]
    lower, below = 0.0, 0.0
    for le in bounds:
        count = cumulative[le]
        if count >= rank:
            if math.isinf(le):
                return lower  # above the last finite bound: say the bound
            return lower + (le - lower) * (rank - below) / max(1e-9, count - below)
        lower, below = le, count
    return lower


# ---------------------------------------------------------------- verdict


def slope_per_10_min(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per 10 minutes."""
    if len(points) < 3:
        return 0.0
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx * 600


def judge(
    samples: Sequence[Sample],
    *,
    duration: float,
    bursts: Sequence[tuple[float, float]],
    lag_bound: int,
    recover_seconds: float,
    rss_slope_mb: float,
    rss_margin_mb: float,
    sent_unique: int,
    never_applied: int,
    dead_lettered: dict[str, str] | None = None,
) -> Verdict:
    verdict = Verdict()
    offering = [s for s in samples if s.t <= duration]
    second_half = [(s.t, s.tracker_rss_mb) for s in offering if s.t >= duration / 2]
    q2 = [s.tracker_rss_mb for s in offering if duration / 4 <= s.t < duration / 2]
    q4 = [s.tracker_rss_mb for s in offering if s.t >= duration * 3 / 4]
    slope = slope_per_10_min(second_half)
    growth = (statistics.median(q4) - statistics.median(q2)) if q2 and q4 else 0.0
    verdict.figures.update(
        rss_slope_mb_per_10_min=round(slope, 2),
        rss_q4_minus_q2_median_mb=round(growth, 2),
        rss_peak_mb=round(max((s.tracker_rss_mb for s in samples), default=0.0), 1),
        rss_first_mb=round(offering[0].tracker_rss_mb, 1) if offering else None,
        rss_last_mb=round(offering[-1].tracker_rss_mb, 1) if offering else None,
    )
    if slope > rss_slope_mb and growth > rss_margin_mb:
        verdict.failures.append(
            f"tracker RSS keeps growing: {slope:+.1f} MB per 10 minutes over the second half "
            f"(limit {rss_slope_mb}) and the last quarter's median {growth:+.1f} MB above the "
            f"second quarter's (margin {rss_margin_mb})"
        )
    recoveries = []
    for index, (start, end) in enumerate(bursts):
        deadline = end + recover_seconds
        if index + 1 < len(bursts):
            deadline = min(deadline, bursts[index + 1][0])
        back = next(
            (s.t for s in samples if s.t >= end and s.lag is not None and s.lag <= lag_bound),
            None,
        )
        peak = max(
            (s.lag for s in samples if start <= s.t <= end + 5 and s.lag is not None), default=0
        )
        recoveries.append(
            {
                "start_s": round(start, 1),
                "end_s": round(end, 1),
                "peak_lag": peak,
                "back_under_bound_after_s": None if back is None else round(back - end, 1),
            }
        )
        if back is None or back > deadline:
            verdict.failures.append(
                f"lag did not recover after the burst at {start / 60:.1f} min: "
                f"peak {peak:,}, not back under {lag_bound:,} within "
                f"{deadline - end:.0f} s"
                + ("" if back is None else f" (it took {back - end:.0f} s)")
            )
    verdict.figures["bursts"] = recoveries
    final = next((s.lag for s in reversed(samples) if s.lag is not None), None)
    verdict.figures["final_lag"] = final
    if final is None or final > lag_bound:
        verdict.failures.append(f"lag at the end is {final} records, above the bound {lag_bound:,}")
    verdict.figures["sent_unique"] = sent_unique
    verdict.figures["never_applied"] = never_applied
    dead_lettered = dead_lettered or {}
    verdict.figures["never_applied_dead_lettered"] = dict(Counter(dead_lettered.values()))
    lost = never_applied - len(dead_lettered)
    if lost > 0:
        verdict.failures.append(
            f"{lost:,} of the soak's {sent_unique:,} scans were neither applied nor dead-lettered"
        )
    if dead_lettered:
        verdict.failures.append(
            f"{len(dead_lettered):,} of the soak's scans were dead-lettered, not applied: "
            f"{dict(Counter(dead_lettered.values()))} (the soak sends only valid scans)"
        )
    return verdict


# ---------------------------------------------------------------- chart


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [Sample(**s) for s in report["samples"]]
    minutes = [s.t / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(11, 11), sharex=True)
    ok = not report["failures"]
    fig.suptitle(
        f"returnloop soak {report['started_at'][:16]} UTC, {report['minutes']:g} min at "
        f"{report['rate']:,.0f} scans/s offered — " + ("PASSED" if ok else "FAILED") + "\n"
        f"({report['rate_source']})",
        fontsize=11,
        color="black" if ok else "firebrick",
    )
    for axis in axes:
        for start, end in report["bursts"]:
            axis.axvspan(start / 60, end / 60, color="orange", alpha=0.15, lw=0)
        axis.axvline(report["minutes"], color="grey", ls=":", lw=1)
        axis.grid(alpha=0.3)

    rss, lag, latency, rates = axes
    rss.plot(minutes, [s.tracker_rss_mb for s in samples], label="tracker (process tree)")
    if any(s.api_rss_mb is not None for s in samples):
        rss.plot(minutes, [s.api_rss_mb or math.nan for s in samples], label="API")
    if any(s.tracker_heap_mb is not None for s in samples):
        # Same scale, shifted to start at the RSS's first value: the two rise together
        # on a leak; on an allocator's high-water mark RSS steps up and the heap does not.
        first = next(s for s in samples if s.tracker_heap_mb is not None)
        shift = first.tracker_rss_mb - (first.tracker_heap_mb or 0.0)
        rss.plot(
            minutes,
            [math.nan if s.tracker_heap_mb is None else s.tracker_heap_mb + shift for s in samples],
            lw=1,
            label=f"tracker's live Python heap (tracemalloc), + {shift:.0f} MB",
        )
    half = [s for s in samples if report["minutes"] * 30 <= s.t <= report["minutes"] * 60]
    if len(half) >= 3:
        slope = report["figures"]["rss_slope_mb_per_10_min"]
        mx = statistics.fmean(s.t for s in half)
        my = statistics.fmean(s.tracker_rss_mb for s in half)
        xs = [half[0].t, half[-1].t]
        rss.plot(
            [x / 60 for x in xs],
            [my + slope / 600 * (x - mx) for x in xs],
            "k--",
            lw=1,
            label=f"second half: {slope:+.1f} MB / 10 min (limit {report['thresholds']['rss_slope_mb']:g})",
        )
    rss.set_ylabel("RSS (MB)")
    rss.legend(loc="lower right", fontsize=8)

    lag.plot(
        minutes,
        [s.lag if s.lag is not None else math.nan for s in samples],
        label="Kafka: end − committed",
    )
    lag.plot(
        minutes,
        [s.lag_gauge if s.lag_gauge is not None else math.nan for s in samples],
        lw=1,
        alpha=0.7,
        label="tracker's returnloop_consumer_lag (fetch position, not commit)",
    )
    lag.axhline(report["thresholds"]["lag_bound"], color="firebrick", ls="--", lw=1, label="bound")
    lag.set_ylabel("consumer lag (records)")
    lag.legend(loc="upper right", fontsize=8)

    latency.plot(
        minutes, [s.p99_ms or math.nan for s in samples], label="p99, own scans (applied_at)"
    )
    latency.plot(minutes, [s.p50_ms or math.nan for s in samples], lw=1, label="p50, own scans")
    latency.plot(
        minutes,
        [s.histogram_p99_ms or math.nan for s in samples],
        ":",
        lw=1,
        label="p99, tracker's histogram (intake → commit)",
    )
    latency.set_yscale("log")
    latency.set_ylabel("scan-to-state (ms)")
    latency.legend(loc="upper right", fontsize=8)

    rates.plot(minutes, [s.offered_per_s for s in samples], label="offered")
    rates.plot(minutes, [s.applied_per_s for s in samples], label="applied (own scans)")
    rates.axhline(report["capacity"] or math.nan, color="grey", ls="--", lw=1, label="capacity")
    rates.set_ylabel("scans/s")
    rates.set_xlabel("minutes (orange: bursts; dotted: end of offering, then the drain)")
    rates.legend(loc="upper right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- the run


@dataclass
class Plan:
    minutes: float
    rate: float | None
    capacity: float | None
    calibration_workers: int
    sample_seconds: float
    burst_every: float | None
    burst_seconds: float
    burst_factor: float
    recover_seconds: float
    drain_seconds: float
    lag_bound: int | None
    rss_slope_mb: float
    rss_margin_mb: float
    api: bool
    seed: int
    tracemalloc: bool = False


async def drain_one(
    bootstrap: str,
    pool: asyncpg.Pool,
    ledger: Ledger,
    wave: Wave,
    pseudonymiser: Pseudonymiser,
    tracker: Any,
    log_path: Path,
    *,
    timeout_s: float,
) -> float:
    """Produce ``wave`` at once; scans/s from its first send to its last scan seen applied."""
    await prepare(pool, wave, pseudonymiser)
    messages = input_messages(wave, pseudonymiser)
    ledger.new_wave()
    started = time.time()
    for _, key, value in messages:
        ledger.sent(orjson.loads(value)["scan_id"], started, key.decode())
    unique = len(ledger.pending)
    await produce_all(bootstrap, messages)
    deadline = time.monotonic() + timeout_s
    with tqdm(total=unique, unit="scan", desc="drain") as bar:
        while ledger.pending:
            if tracker.poll() is not None:
                raise RuntimeError(f"the tracker exited:\n{log_tail(log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{len(ledger.pending):,} of {unique:,} scans not applied in {timeout_s:.0f} s; "
                    f"the tracker's last warnings:\n{log_problems(log_path) or '(none)'}"
                )
            await asyncio.sleep(0.5)
            bar.update(await ledger.poll(pool))
    finished = time.time()
    ledger.take_interval()
    return unique / max(1e-6, finished - started)


async def soak(plan: Plan, bootstrap: str, base_url: str, work_dir: Path) -> dict[str, Any]:
    suffix = secrets.token_hex(4)
    database = f"soak_{suffix}"
    group = f"returnloop-soak-{suffix}"
    key = os.environ.get("RETURNLOOP_WORKER_REF_KEY", BENCH_WORKER_REF_KEY)
    pseudonymiser = Pseudonymiser(key.encode())
    print(f"database {database}, consumer group {group}, seed {plan.seed}", flush=True)
    ensure_topics(bootstrap, partitions=int(os.environ.get("RETURNLOOP_TOPIC_PARTITIONS", 4)))
    admin_pool = await create_pool(base_url, max_size=1)
    async with admin_pool.acquire() as connection:
        await connection.execute(f"CREATE DATABASE {database}")
    url = database_url_for(base_url, database)
    tracker = api = None
    kafka = KafkaLag(bootstrap, group)
    pool: asyncpg.Pool | None = None
    report: dict[str, Any] = {"database": database, "consumer_group": group, "seed": plan.seed}
    try:
        await asyncio.to_thread(migrate, url)
        pool = await create_pool(url, max_size=4)
        report["postgresql"] = await pool.fetchval("SHOW server_version")
        await kafka.start()
        await kafka.commit_at_end()
        metrics_port = free_port()
        env = {
            **os.environ,
            "RETURNLOOP_KAFKA_BOOTSTRAP": bootstrap,
            "RETURNLOOP_DATABASE_URL": url,
            "RETURNLOOP_WORKER_REF_KEY": key,
            "RETURNLOOP_ADMIN_TOKEN": SOAK_ADMIN_TOKEN,
            "RETURNLOOP_DATA_DIR": str(work_dir / "data"),
            "RETURNLOOP_CONSUMER_GROUP": group,
            "RETURNLOOP_TRACKER_METRICS_PORT": str(metrics_port),
            "RETURNLOOP_TRACEMALLOC": "1" if plan.tracemalloc else "0",
        }
        tracker_log = work_dir / "soak-tracker.log"
        # One process: the soak watches one process's memory and metrics port.
        tracker = spawn(["services.cli", "tracker", "--processes", "1"], env, tracker_log)
        api_log = work_dir / "soak-api.log"
        api_url = None
        if plan.api:
            port = free_port()
            api_url = f"http://127.0.0.1:{port}"
            api = spawn(["services.cli", "api"], {**env, "RETURNLOOP_API_PORT": str(port)}, api_log)
            await wait_ready(api_url, api, api_log)
        ledger = Ledger()

        # -- the rate: half of one process's capacity
        capacity = plan.capacity
        if plan.rate is not None:
            rate, source = plan.rate, "given --rate"
        elif capacity is not None:
            rate, source = capacity / 2, f"half of the given --capacity {capacity:,.0f}"
        else:
            print("\n== capacity: a 200-worker warm-up, then a short drain", flush=True)
            await drain_one(
                bootstrap,
                pool,
                ledger,
                wave_of(200, seed=plan.seed, now=datetime.now(UTC)),
                pseudonymiser,
                tracker,
                tracker_log,
                timeout_s=300,
            )
            calibration = wave_of(
                plan.calibration_workers, seed=plan.seed + 1, now=datetime.now(UTC)
            )
            capacity = await drain_one(
                bootstrap,
                pool,
                ledger,
                calibration,
                pseudonymiser,
                tracker,
                tracker_log,
                timeout_s=600,
            )
            ledger.sent_unique = ledger.applied_total = 0  # the soak's figures start now
            rate = capacity / 2
            source = (
                f"half of the capacity measured just now: {capacity:,.0f} scans/s, "
                f"{plan.calibration_workers:,}-worker drain"
            )
        print(f"\n== offering {rate:,.0f} scans/s ({source})", flush=True)
        duration = plan.minutes * 60
        burst_every = plan.burst_every
        if burst_every is None:
            burst_every = 300.0 if duration >= 900 else duration / 3
        bursts: list[tuple[float, float]] = []
        if burst_every > 0 and plan.burst_seconds > 0:
            start = burst_every
            while start + plan.burst_seconds <= duration - 30:
                bursts.append((start, start + plan.burst_seconds))
                start += burst_every
        lag_bound = plan.lag_bound or max(5000, round(10 * rate))
        print(
            f"bursts: {len(bursts)} ({plan.burst_factor:g}× for {plan.burst_seconds:g} s every "
            f"{burst_every:.0f} s); lag bound {lag_bound:,} records; samples every "
            f"{plan.sample_seconds:g} s",
            flush=True,
        )
        report.update(
            rate=rate,
            rate_source=source,
            capacity=capacity,
            bursts=bursts,
            minutes=plan.minutes,
            thresholds={
                "lag_bound": lag_bound,
                "recover_seconds": plan.recover_seconds,
                "rss_slope_mb": plan.rss_slope_mb,
                "rss_margin_mb": plan.rss_margin_mb,
                "never_applied_share": 0.001,
            },
        )

        # -- the soak
        maker = WaveMaker(
            pool,
            pseudonymiser,
            seed=plan.seed,
            workers=max(200, round(rate * 60 / SCANS_PER_WORKER)),
        )
        maker.start()
        first_wave = await maker.next()
        samples: list[Sample] = []
        tracker_rss = ProcessTreeRss(tracker.pid)
        api_rss = ProcessTreeRss(api.pid) if api is not None else None
        scraper = TrackerMetrics(f"http://127.0.0.1:{metrics_port}/metrics")
        began = time.monotonic()
        offering = True
        stop_sampling = asyncio.Event()

        def phase_at(t: float) -> str:
            if t > duration:
                return "drain"
            return "burst" if any(a <= t < b for a, b in bursts) else "soak"

        async def offer(session: aiohttp.ClientSession | None) -> None:
            nonlocal offering
            producer = new_producer(bootstrap, linger_ms=5)
            await producer.start()
            inflight: list[asyncio.Future[Any]] = []
            posts: set[asyncio.Task[None]] = set()
            _, messages = first_wave
            index, due = 0, 0.0
            tick = 0.1 if session is not None else 0.01
            last = time.monotonic()

            async def post(bodies: list[dict[str, Any]]) -> None:
                assert session is not None and api_url is not None
                async with session.post(
                    f"{api_url}/v1/scans", data=orjson.dumps({"scans": bodies})
                ) as response:
                    await response.read()
                    if response.status != 202:
                        raise RuntimeError(f"POST /v1/scans answered {response.status}")

            try:
                while (now := time.monotonic()) - began < duration:
                    t = now - began
                    current = rate * (plan.burst_factor if phase_at(t) == "burst" else 1.0)
                    due += current * (now - last)
                    last = now
                    batch: list[dict[str, Any]] = []
                    while due >= 1:
                        if index >= len(messages):
                            ledger.new_wave()
                            _, messages = await maker.next()
                            index = 0
                        topic, key_bytes, value = messages[index]
                        index += 1
                        due -= 1
                        body = orjson.loads(value)
                        ledger.sent(body["scan_id"], time.time(), key_bytes.decode())
                        if session is None:
                            inflight.append(await producer.send(topic, value, key=key_bytes))
                        else:
                            batch.append(body)
                            if len(batch) == 1000:
                                posts.add(asyncio.create_task(post(batch)))
                                batch = []
                    if batch:
                        posts.add(asyncio.create_task(post(batch)))
                    if len(inflight) > 5000:
                        await asyncio.gather(*inflight)
                        inflight.clear()
                    for done in [task for task in posts if task.done()]:
                        posts.discard(done)
                        done.result()
                    await asyncio.sleep(tick)
                await asyncio.gather(*inflight, *posts)
            finally:
                offering = False
                await producer.stop()

        async def poll_forever() -> None:
            while not stop_sampling.is_set():
                await ledger.poll(pool)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop_sampling.wait(), timeout=1.0)

        async def sample_forever(session: aiohttp.ClientSession, bar: tqdm[Any]) -> None:
            last = time.monotonic()
            drained_since: float | None = None
            while True:
                await asyncio.sleep(plan.sample_seconds)
                if tracker.poll() is not None:
                    raise RuntimeError(f"the tracker exited:\n{log_tail(tracker_log)}")
                now = time.monotonic()
                t = now - began
                latencies, sent = ledger.take_interval()
                try:
                    lag: int | None = await kafka.lag()
                except Exception as error:  # a missed sample, not a failed soak
                    print(f"\n!! lag not read: {error!r}", flush=True)
                    lag = None
                gauge, histogram_p99, heap = await scraper.scrape(session)
                sample = Sample(
                    t=round(t, 2),
                    phase=phase_at(t),
                    tracker_rss_mb=round(tracker_rss.sample() / 2**20, 2),
                    api_rss_mb=None if api_rss is None else round(api_rss.sample() / 2**20, 2),
                    lag=lag,
                    lag_gauge=gauge,
                    p50_ms=round(percentile(latencies, 0.50), 1) if latencies else None,
                    p99_ms=round(percentile(latencies, 0.99), 1) if latencies else None,
                    histogram_p99_ms=None if histogram_p99 is None else round(histogram_p99, 1),
                    applied=len(latencies),
                    offered_per_s=round(sent / (now - last), 1),
                    applied_per_s=round(len(latencies) / (now - last), 1),
                    pending=len(ledger.pending),
                    tracker_heap_mb=None if heap is None else round(heap / 2**20, 2),
                )
                last = now
                samples.append(sample)
                bar.update(min(duration, t) - bar.n)
                bar.set_postfix_str(
                    f"{sample.phase} rss {sample.tracker_rss_mb:.0f} MB, lag {lag if lag is not None else '?'}, "
                    f"p99 {sample.p99_ms or 0:,.0f} ms",
                    refresh=False,
                )
                if not offering and t > duration:
                    calm = (lag is not None and lag <= lag_bound) and not ledger.pending
                    drained_since = (drained_since or now) if calm else None
                    # two calm samples, or the drain's time is up
                    if (
                        drained_since is not None and now - drained_since >= plan.sample_seconds
                    ) or (t > duration + plan.drain_seconds):
                        return

        async with aiohttp.ClientSession(
            headers={
                "Authorization": f"Bearer {SOAK_ADMIN_TOKEN}",
                "Content-Type": "application/json",
            },
            timeout=aiohttp.ClientTimeout(total=60),
        ) as session:
            await scraper.scrape(session)
            with tqdm(
                total=duration,
                unit="s",
                desc="soak",
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s {postfix}",
            ) as bar:
                poller = asyncio.create_task(poll_forever())
                sampler = asyncio.create_task(sample_forever(session, bar))
                offerer = asyncio.create_task(offer(session if plan.api else None))
                try:
                    done, _ = await asyncio.wait(
                        {offerer, sampler}, return_when=asyncio.FIRST_EXCEPTION
                    )
                    for task in done:
                        task.result()
                    await sampler
                finally:
                    stop_sampling.set()
                    for task in (offerer, sampler):
                        task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await asyncio.gather(offerer, sampler)
                    await poller
                    await maker.close()
        await ledger.poll(pool)
        dead_lettered: dict[str, str] = {}
        if ledger.pending:
            print(
                f"\n!! {len(ledger.pending):,} scans not seen applied; looking on {topics.REJECTED}"
            )
            dead_lettered = await dead_letter_reasons(bootstrap, set(ledger.pending))
            for scan_id, reason in list(dead_lettered.items())[:10]:
                print(f"   {scan_id}: dead-lettered as {reason}", flush=True)
            report["never_applied_examples"] = sorted(ledger.pending)[:20]

        verdict = judge(
            samples,
            duration=duration,
            bursts=bursts,
            lag_bound=lag_bound,
            recover_seconds=plan.recover_seconds,
            rss_slope_mb=plan.rss_slope_mb,
            rss_margin_mb=plan.rss_margin_mb,
            sent_unique=ledger.sent_unique,
            never_applied=len(ledger.pending),
            dead_lettered=dead_lettered,
        )
        soaked = [s for s in samples if s.t <= duration]
        p99s = [s.p99_ms for s in soaked if s.p99_ms is not None and s.phase == "soak"]
        verdict.figures.update(
            offered_scans_per_s=round(statistics.fmean(s.offered_per_s for s in soaked), 1)
            if soaked
            else None,
            applied_own_scans=ledger.applied_total,
            p99_ms_median_of_intervals_outside_bursts=round(statistics.median(p99s), 1)
            if p99s
            else None,
            p99_ms_worst_interval=max((s.p99_ms or 0 for s in samples), default=None),
            lag_peak=max((s.lag or 0 for s in samples), default=None),
            drain_seconds=round(samples[-1].t - duration, 1) if samples else None,
            tracker_problems=log_problems(tracker_log, limit=5),
        )
        report["database_sizes"] = await table_sizes(pool)
        report.update(
            samples=[asdict(s) for s in samples],
            figures=verdict.figures,
            failures=verdict.failures,
        )
        return report
    finally:
        for process in (api, tracker):
            if process is not None:
                stop(process)
        if pool is not None:
            await pool.close()
        with contextlib.suppress(Exception):
            await kafka.delete_groups()
        with contextlib.suppress(Exception):
            await kafka.close()
        async with admin_pool.acquire() as connection:
            await connection.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        await admin_pool.close()


async def table_sizes(pool: asyncpg.Pool) -> dict[str, dict[str, float]]:
    """Rows and bytes of the tables that grow with scans and workers (for docs/SCALING.md)."""
    sizes = {}
    tables = ("applied_scans", "applied_scan_ids", "loop_state", "workers", "code_links")
    for table in (*tables, "alerts", "outbox"):
        exists = await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
        if not exists:
            continue
        rows = await pool.fetchval(f"SELECT count(*) FROM {table}")
        # A partitioned table (migration 0012) holds nothing itself: sum its partitions
        # (pg_partition_tree lists none for a plain table: then the table itself).
        total, heap, indexes = await pool.fetchrow(
            "WITH parts AS (SELECT relid FROM pg_partition_tree($1::regclass) "
            "UNION ALL SELECT $1::regclass WHERE NOT EXISTS "
            "(SELECT 1 FROM pg_partition_tree($1::regclass))) "
            "SELECT sum(pg_total_relation_size(relid))::bigint, "
            "sum(pg_relation_size(relid))::bigint, sum(pg_indexes_size(relid))::bigint FROM parts",
            table,
        )
        sizes[table] = {
            "rows": rows,
            "total_bytes": total,
            "heap_bytes": heap,
            "index_bytes": indexes,
            "bytes_per_row": round(total / rows, 1) if rows else None,
        }
    return sizes


def summary(report: dict[str, Any]) -> str:
    f = report["figures"]
    lines = [
        f"soak: {report['minutes']:g} min at {report['rate']:,.0f} scans/s offered "
        f"({report['rate_source']}); {len(report['samples'])} samples",
        f"  scans: {f['sent_unique']:,} sent (distinct), {f['applied_own_scans']:,} applied, "
        f"{f['never_applied']:,} never applied; offered on average {f['offered_scans_per_s']:,} scans/s",
        f"  tracker RSS: {f['rss_first_mb']} → {f['rss_last_mb']} MB (peak {f['rss_peak_mb']}); "
        f"second-half slope {f['rss_slope_mb_per_10_min']:+.2f} MB / 10 min "
        f"(limit {report['thresholds']['rss_slope_mb']:g}); last quarter's median "
        f"{f['rss_q4_minus_q2_median_mb']:+.2f} MB vs the second's (margin "
        f"{report['thresholds']['rss_margin_mb']:g})",
        f"  lag: peak {f['lag_peak']:,}, at the end {f['final_lag']}, bound "
        f"{report['thresholds']['lag_bound']:,}; drain after offering {f['drain_seconds']} s",
    ]
    for burst in f["bursts"]:
        back = burst["back_under_bound_after_s"]
        lines.append(
            f"    burst {burst['start_s'] / 60:.1f}–{burst['end_s'] / 60:.1f} min: peak lag "
            f"{burst['peak_lag']:,}, back under the bound "
            + ("never" if back is None else f"{back:.0f} s after it ended")
        )
    lines.append(
        f"  scan-to-state (own scans, applied_at): p99 per interval, median outside bursts "
        f"{f['p99_ms_median_of_intervals_outside_bursts']} ms, worst {f['p99_ms_worst_interval']} ms"
    )
    sizes = report.get("database_sizes", {}).get("applied_scans")
    if sizes:
        lines.append(
            f"  applied_scans: {sizes['rows']:,} rows, {sizes['total_bytes'] / 2**20:.1f} MB "
            f"({sizes['bytes_per_row']} bytes a row with its indexes)"
        )
    lines.append("PASSED" if not report["failures"] else "FAILED:")
    lines.extend(f"  - {failure}" for failure in report["failures"])
    return "\n".join(lines)


def main(
    minutes: Annotated[float, typer.Option(help="how long scans are offered")] = 30,
    rate: Annotated[
        float | None, typer.Option(help="offered scans/s (default: half the capacity)")
    ] = None,
    capacity: Annotated[
        float | None,
        typer.Option(help="one process's capacity, scans/s (default: measured by a drain)"),
    ] = None,
    calibration_workers: Annotated[
        int, typer.Option(help="workers in the capacity drain (~4.3 scans each)")
    ] = 5000,
    sample_seconds: Annotated[float, typer.Option(help="seconds between samples")] = 5,
    burst_every: Annotated[
        float | None,
        typer.Option(
            help="seconds between bursts (default 300, or a third of a run under 15 min; 0: none)"
        ),
    ] = None,
    burst_seconds: Annotated[float, typer.Option(help="length of a burst")] = 20,
    burst_factor: Annotated[float, typer.Option(help="offered rate × this during a burst")] = 3,
    recover_seconds: Annotated[
        float, typer.Option(help="lag must be back under the bound this long after a burst")
    ] = 120,
    drain_seconds: Annotated[
        float, typer.Option(help="after offering, wait up to this long for lag to drain")
    ] = 120,
    lag_bound: Annotated[
        int | None,
        typer.Option(
            help="records of lag that count as recovered (default: 10 s of the rate, ≥ 5,000)"
        ),
    ] = None,
    rss_slope_mb: Annotated[
        float, typer.Option(help="fail above this RSS slope over the second half, MB per 10 min")
    ] = 5,
    rss_margin_mb: Annotated[
        float,
        typer.Option(help="... and the last quarter's median above the second's by more than this"),
    ] = 10,
    api: Annotated[
        bool, typer.Option(help="run the API too and offer the scans through POST /v1/scans")
    ] = False,
    seed: Annotated[int | None, typer.Option(help="seed of the waves (default: a new one)")] = None,
    tracemalloc: Annotated[
        bool,
        typer.Option(
            help="trace the tracker's Python allocations and chart its live heap beside RSS "
            "(slower: the measured capacity, and so the rate, drop)"
        ),
    ] = False,
    out: Annotated[Path, typer.Option(help="the JSON; the chart goes beside it (.png)")] = Path(
        "bench-results/soak.json"
    ),
) -> None:
    """Soak one tracker at half its capacity; chart RSS, lag and p99; fail on growth."""
    bootstrap = os.environ.get("RETURNLOOP_KAFKA_BOOTSTRAP")
    database_url = os.environ.get("RETURNLOOP_DATABASE_URL")
    if not bootstrap or not database_url:
        print(
            "make soak runs on real servers: set RETURNLOOP_KAFKA_BOOTSTRAP and "
            'RETURNLOOP_DATABASE_URL (deploy/ci-services.sh up; eval "$(deploy/ci-services.sh env)")',
            file=sys.stderr,
        )
        raise typer.Exit(2)
    plan = Plan(
        minutes=minutes,
        rate=rate,
        capacity=capacity,
        calibration_workers=calibration_workers,
        sample_seconds=sample_seconds,
        burst_every=burst_every,
        burst_seconds=burst_seconds,
        burst_factor=burst_factor,
        recover_seconds=recover_seconds,
        drain_seconds=drain_seconds,
        lag_bound=lag_bound,
        rss_slope_mb=rss_slope_mb,
        rss_margin_mb=rss_margin_mb,
        api=api,
        seed=seed if seed is not None else secrets.randbelow(1_000_000),
        tracemalloc=tracemalloc,
    )
    work_dir = Path(tempfile.mkdtemp(prefix="returnloop-soak-"))
    began = datetime.now(UTC)
    try:
        report = asyncio.run(soak(plan, bootstrap, database_url, work_dir))
    finally:
        logs = out.parent / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for log in work_dir.glob("*.log"):
            shutil.copy(log, logs / log.name)
        shutil.rmtree(work_dir, ignore_errors=True)
    report = {
        "started_at": began.isoformat(),
        "seconds": round((datetime.now(UTC) - began).total_seconds(), 1),
        "command": " ".join(["python -m tests.bench.soak", *sys.argv[1:]]),
        **report,
        "versions": {**versions(), "broker": f"Kafka at {bootstrap}"},
        "machine": machine(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    png = out.with_suffix(".png")
    chart(report, png)
    print("\n" + summary(report), flush=True)
    print(f"\nwritten to {out} and {png}", flush=True)
    if report["failures"]:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
