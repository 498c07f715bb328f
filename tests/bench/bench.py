"""``make bench``: the tracker's throughput and latency next to their limits and baselines.

One run, side by side (issue #6):

- tracker end to end: a wave of N workers' scans (duplicates, out-of-order
  delivery; most name the worker by a health code or card number linked
  beforehand, which intake resolves) pre-produced to the input topics, then ``returnloop tracker`` (the
  Faust worker) started; scans/s until PostgreSQL holds every scan; the
  tracker's process-tree peak RSS;
- scan-to-state latency p50/p99 at a steady offered rate (default 2,000 scans/s);
- tracker warm, one process and two in one group (a wave sent while they run);
- scan-to-state latency again, at 80 % of the one-process capacity just measured
  (0.8 × ``tracker_warm_one``: ``latency80_*``), on a wave of its own;
- limits: plain aiokafka consume + orjson decode of the same input topics;
  the plain loop (getmany → orjson → COPY into a staging table and INSERT … ON
  CONFLICT DO NOTHING into an ``applied_scans``-shaped table, one transaction a
  batch → commit offsets: the least any tracker must do); asyncpg COPY of the
  same rows into an UNLOGGED and a logged table;
- baselines: a Faust agent that only counts, a Faust agent awaiting one
  transaction per scan (``tests.bench.bench_faust``);
- ``returnloop rebuild``'s rate over the same log;
- the bureau's exports: an enterprise's not-back list of 29,400 workers as CSV and as
  XLSX, seconds to the last byte (target under 2 s each);
- API: ``POST /v1/workers/lookup`` and ``POST /v1/scans`` p50/p99 at fixed request
  rates (an open-loop asyncio load generator), and batch intake (1,000-scan bodies).

Each figure is printed beside its target (issue #14), marked met or missed: most
targets are ratios to a baseline measured in the same run (the tracker ≥ 2× a Faust
agent doing nothing, two processes ≥ 1.8× one, rebuild ≥ 0.5× COPY into a logged
table, batch intake ≥ 0.25× the consume limit), a few absolute (latency p99 < 100 ms
at 2,000 scans/s and < 1 s at 80 % of capacity, lookup p99 < 10 ms at 1,000 req/s,
peak RSS < 400 MB, exports < 2 s). A target on a load generator's figure is missed
"(generator)" when the generator issued under 95 % of the rate asked. Only a
measurement that failed (an error: a figure not measured) makes the run exit non-zero;
a missed target does not.

Embedded servers by default (fresh ones in a temporary directory); with
RETURNLOOP_KAFKA_BOOTSTRAP / RETURNLOOP_DATABASE_URL it uses those, which
should be empty (it writes a few hundred thousand rows and messages).
``--seed-workers N`` first puts N finished journeys in PostgreSQL (set-based SQL:
worker rows, four scans each in the log, closed loop states), so the same figures are
measured next to a database of, say, 1,000,000 workers.
Prints one table and writes it, with versions and the machine, as JSON.

    python -m tests.bench.bench --workers 100000
    python -m tests.bench.bench --workers 100000 --seed-workers 1000000
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import itertools
import json
import math
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import httpx
import orjson
import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from openpyxl import load_workbook
from tqdm import tqdm

from services.cli.demo import Wave, WaveShape, build_wave
from services.cli.embedded import configured_or_embedded
from shared import topics
from shared.adapters.kafka.admin import ensure_topics
from shared.adapters.postgres.links import LinkStore
from shared.adapters.postgres.manifests import ManifestStore
from shared.adapters.postgres.pool import create_pool
from shared.adapters.postgres.schema import migrate
from shared.adapters.postgres.unit_of_work import PostgresStore
from shared.domain.model import Rules
from shared.identity import Pseudonymiser, check_digit, mask_id_number
from shared.service_layer.ports import WorkerIdentity
from shared.service_layer.rebuild import rebuild

BENCH_WORKER_REF_KEY = "returnloop-bench-worker-ref-key-0123456789"
BENCH_ADMIN_TOKEN = "returnloop-bench-admin-token-0123456789"
FAUST_DATABASE = "returnloop_bench_faust"


@dataclass
class Results:
    """Every measured figure (name -> value) plus what the run needs to be read."""

    figures: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def set(self, name: str, value: float) -> None:
        self.figures[name] = value


class Row(NamedTuple):
    """One line of the table: a figure, the baseline it is divided by, and its target.

    ``target`` is (op, bound): ``">="``/``"<"`` on the value itself, ``"ratio>="``/``"ratio<"``
    on the ratio value ÷ baseline, both measured in the same run (issue #14). ``rate``
    names (issued, asked) figures of the load generator: the target counts only if the
    generator issued at least ``GENERATOR_SHARE`` of the rate asked, otherwise it is
    missed by the generator, not by the system.
    """

    label: str
    key: str
    unit: str
    baseline: str | None = None
    target: tuple[str, float] | None = None
    stretch: bool = False
    rate: tuple[str, str] | None = None


GENERATOR_SHARE = 0.95
TARGET_OPS: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    ">=": ("≥", lambda value, bound: value >= bound),
    "<": ("<", lambda value, bound: value < bound),
}

# ratio = value / baseline; issue #14's targets, most of them ratios within the run.
TABLE: list[Row] = [
    Row(
        "tracker end to end (from process start; as shipped)",
        "tracker_e2e",
        "scans/s",
        "consume_limit",
    ),
    Row(
        "tracker end to end (first to last scan applied)",
        "tracker_steady",
        "scans/s",
        "faust_noop",
        ("ratio>=", 2.0),
    ),
    Row(
        "  stretch: vs. the plain loop",
        "tracker_steady",
        "scans/s",
        "plain_loop",
        ("ratio>=", 0.5),
        stretch=True,
    ),
    Row(
        "  vs. Faust agent, one transaction per scan",
        "tracker_steady",
        "scans/s",
        "faust_transaction",
    ),
    Row(
        "tracker warm, one process (first send to last applied)",
        "tracker_warm_one",
        "scans/s",
        "consume_limit",
    ),
    Row(
        "tracker warm, two processes (--processes 2)",
        "tracker_warm_two",
        "scans/s",
        "tracker_warm_one",
        ("ratio>=", 1.8),
    ),
    Row("mix: scans naming the worker by a linked code", "scans_by_code", "%"),
    Row("workers in PostgreSQL before the run", "workers_in_postgresql", "workers"),
    Row("limit: aiokafka consume + orjson decode", "consume_limit", "msgs/s"),
    Row(
        "limit: plain loop (getmany → orjson → COPY → commit)",
        "plain_loop",
        "msgs/s",
        "tracker_steady",
    ),
    Row("limit: COPY into an UNLOGGED table", "copy_unlogged", "rows/s"),
    Row("limit: COPY into a logged table", "copy_logged", "rows/s"),
    Row("baseline: Faust agent doing nothing", "faust_noop", "msgs/s", "tracker_steady"),
    Row(
        "baseline: Faust agent, one transaction per scan",
        "faust_transaction",
        "scans/s",
        "tracker_steady",
    ),
    Row("scan-to-state latency p50 (visible, polled)", "latency_p50_ms", "ms"),
    Row(
        "scan-to-state latency p99 (visible, polled)",
        "latency_p99_ms",
        "ms",
        target=("<", 100),
        rate=("latency_offered", "latency_rate_asked"),
    ),
    Row("scan-to-state latency p50 (applied_at)", "latency_applied_p50_ms", "ms"),
    Row("scan-to-state latency p99 (applied_at)", "latency_applied_p99_ms", "ms"),
    Row(
        "latency run: offered rate achieved",
        "latency_offered",
        "scans/s",
        "latency_rate_asked",
    ),
    Row("latency at 80 % of one process: p50 (visible)", "latency80_p50_ms", "ms"),
    Row(
        "latency at 80 % of one process: p99 (visible)",
        "latency80_p99_ms",
        "ms",
        target=("<", 1000),
        rate=("latency80_offered", "latency80_rate_asked"),
    ),
    Row(
        "latency at 80 % of one process: offered rate achieved",
        "latency80_offered",
        "scans/s",
        "latency80_rate_asked",
    ),
    Row(
        "tracker peak RSS (process tree; as shipped)",
        "tracker_peak_rss_mb",
        "MB",
        target=("<", 400),
    ),
    Row("tracker peak RSS (--processes 1)", "tracker_one_peak_rss_mb", "MB"),
    Row(
        "rebuild (`returnloop rebuild` as shipped)",
        "rebuild",
        "scans/s",
        "copy_logged",
        ("ratio>=", 0.5),
    ),
    Row("rebuild, one process", "rebuild_one", "scans/s", "copy_logged"),
    Row(
        "API lookup: request rate issued",
        "lookup_rate_issued",
        "req/s",
        "lookup_rate_asked",
    ),
    Row("API lookup: generator lag p99 (sent after its time)", "lookup_lag_p99_ms", "ms"),
    Row("API POST /v1/workers/lookup p50", "lookup_p50_ms", "ms"),
    Row(
        "API POST /v1/workers/lookup p99",
        "lookup_p99_ms",
        "ms",
        target=("<", 10),
        rate=("lookup_rate_issued", "lookup_rate_asked"),
    ),
    Row("API one-scan POST: request rate issued", "scans_rate_issued", "req/s"),
    Row("API POST /v1/scans (one scan) p50", "scans_p50_ms", "ms"),
    Row("API POST /v1/scans (one scan) p99", "scans_p99_ms", "ms"),
    Row(
        "API batch intake (1,000-scan bodies)",
        "batch_intake",
        "scans/s",
        "consume_limit",
        ("ratio>=", 0.25),
    ),
    # The bureau's table (issue 12): an enterprise's whole not-back list as a file.
    Row(
        "export: not-back list as CSV (GET …/not_back)",
        "export_not_back_csv_s",
        "s",
        target=("<", 2),
    ),
    Row(
        "export: not-back list as XLSX (GET …/not_back)",
        "export_not_back_xlsx_s",
        "s",
        target=("<", 2),
    ),
]
BASELINE_NAMES = {
    "consume_limit": "consume limit",
    "copy_logged": "COPY logged",
    "faust_noop": "Faust noop",
    "faust_transaction": "Faust 1 tx/scan",
    "latency_rate_asked": "asked",
    "latency80_rate_asked": "asked",
    "lookup_rate_asked": "asked",
    "plain_loop": "plain loop",
    "tracker_steady": "tracker",
    "tracker_warm_one": "one process",
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


# ---------------------------------------------------------------- servers and data


@dataclass(frozen=True)
class Servers:
    kafka_bootstrap: str
    database_url: str
    embedded_kafka: bool
    embedded_postgres: bool


@contextlib.contextmanager
def bench_servers(data_dir: Path) -> Iterator[Servers]:
    bootstrap = os.environ.get("RETURNLOOP_KAFKA_BOOTSTRAP") or None
    database_url = os.environ.get("RETURNLOOP_DATABASE_URL") or None
    embedded_kafka, embedded_postgres = bootstrap is None, database_url is None
    found = configured_or_embedded(data_dir, kafka_bootstrap=bootstrap, database_url=database_url)
    with found as (kafka, postgres):
        migrate(postgres)
        ensure_topics(kafka, partitions=int(os.environ.get("RETURNLOOP_TOPIC_PARTITIONS", 4)))
        yield Servers(kafka, postgres, embedded_kafka, embedded_postgres)


def wave_of(workers: int, *, seed: int, now: datetime) -> Wave:
    """A city-shaped wave scaled to ``workers`` (Wenzhou's mix of buses, trains, flights)."""
    scale = workers / 29_400
    shape = WaveShape(
        workers=workers,
        buses=max(1, round(1_034 * scale)),
        trains=round(8 * scale),
        flights=round(5 * scale),
        enterprises=max(2, round(300 * scale)),
    )
    return build_wave("city", now=now, seed=seed, shape=shape)


def manifest_rows(
    wave: Wave, pseudonymiser: Pseudonymiser
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    trips = [
        {
            **trip,
            "departs_at": datetime.fromisoformat(trip["departs_at"]),
            "eta": datetime.fromisoformat(trip["eta"]),
        }
        for trip in wave.manifest["trips"]
    ]
    workers = [
        {
            "worker_ref": pseudonymiser.worker_ref(worker["id_number"]),
            "id_masked": mask_id_number(worker["id_number"]),
            "name": worker["name"],
            "enterprise_id": worker["enterprise_id"],
            "trip_id": worker.get("trip_id"),
            "travel": worker.get("travel", "organised"),
            "expected_arrival": datetime.fromisoformat(worker["expected_arrival"])
            if "expected_arrival" in worker
            else None,
        }
        for worker in wave.manifest["workers"]
    ]
    return wave.manifest["enterprises"], trips, workers


async def refuse_fed_waves(
    pool: asyncpg.Pool, waves: Sequence[Wave], pseudonymiser: Pseudonymiser, seed: int
) -> None:
    """Stop before measuring if these servers already hold a wave of this seed: its scans
    would be applied already, and every figure would measure nothing."""
    for wave in waves:
        refs = [pseudonymiser.worker_ref(w["id_number"]) for w in wave.manifest["workers"][:100]]
        held = await pool.fetchval(
            "SELECT count(*) FROM applied_scans WHERE worker_ref = ANY($1::text[])", refs
        )
        if held:
            raise SystemExit(
                f"these servers already hold scans of the waves of --seed {seed} (a run "
                "with that seed was measured on them): leave --seed out, or use fresh servers"
            )


async def prepare(pool: asyncpg.Pool, wave: Wave, pseudonymiser: Pseudonymiser) -> None:
    """Upsert the wave's manifest and bind its workers' codes, as ``POST /v1/manifests`` and
    ``POST /v1/links`` would (the same keys and rows, in two statements rather than one
    request a link): its scans by code resolve at intake.

    A link the database already holds otherwise (a code linked to someone else, or a
    worker of an earlier wave with the same ID number and a code of that kind) is not
    made, as the API would refuse it: that worker's scans then name them by ID number
    (``Wave.by_id_number_only``, as the demo does), so no scan is sent that can only be
    dead-lettered as ``unknown_code``."""
    await ManifestStore(pool).upsert_manifest(*manifest_rows(wave, pseudonymiser))
    store = LinkStore(pool, pseudonymiser)
    rows = [
        (key.code_type, key.code_hash, key.code_shown, pseudonymiser.worker_ref(link["id_number"]))
        for link in wave.links
        for key in (
            store.health_code_key(link["health_code_id"]),
            store.card_key(link["ssc_card_no"]),
        )
    ]
    if not rows:
        return
    made = await pool.fetch(
        """
        INSERT INTO code_links (code_type, code_hash, code_shown, worker_ref, linked_by)
        SELECT code_type, code_hash, code_shown, worker_ref, 'bench'
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
            AS l(code_type, code_hash, code_shown, worker_ref)
        ON CONFLICT DO NOTHING
        RETURNING code_hash
        """,
        *(list(column) for column in zip(*rows, strict=True)),
    )
    linked = {row["code_hash"] for row in made}
    number_of = {
        pseudonymiser.worker_ref(link["id_number"]): link["id_number"] for link in wave.links
    }
    unlinked = {number_of[ref] for _, code_hash, _, ref in rows if code_hash not in linked}
    if unlinked:
        print(
            f"{len(unlinked)} of the wave's {len(wave.links):,} workers keep their codes unlinked "
            "(the database links them otherwise): their scans name them by ID number",
            flush=True,
        )
        wave.by_id_number_only(unlinked)


def by_code_share(wave: Wave) -> float:
    """The percentage of the wave's scans that name the worker by a code."""
    return 100 * sum("code" in body for body in wave.scans) / max(1, len(wave.scans))


def code_identities(wave: Wave, pseudonymiser: Pseudonymiser) -> dict[str, WorkerIdentity]:
    """Every code the wave's scans may show -> its worker (what intake resolves)."""
    return {
        code: WorkerIdentity(pseudonymiser.worker_ref(number), mask_id_number(number))
        for code, number in wave.holders.items()
    }


Message = tuple[str, bytes, bytes]  # topic, key, value


def input_messages(wave: Wave, pseudonymiser: Pseudonymiser) -> list[Message]:
    """The wave's scans as the API would put them on the input topics (keyed by worker_ref)."""
    refs: dict[str, bytes] = {}
    messages = []
    for body in wave.scans:
        number = wave.id_number_of(body)
        if number not in refs:
            refs[number] = pseudonymiser.worker_ref(number).encode()
        messages.append((topics.INPUT_TOPICS[body["kind"]], refs[number], orjson.dumps(body)))
    return messages


def new_producer(bootstrap: str, *, linger_ms: int) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=linger_ms,
        max_batch_size=1024 * 1024,
        max_request_size=4 * 1024 * 1024,
    )


async def produce_all(bootstrap: str, messages: list[Message]) -> float:
    """Produce every message (acknowledged); return the rate."""
    producer = new_producer(bootstrap, linger_ms=20)
    await producer.start()
    started = time.perf_counter()
    try:
        with tqdm(total=len(messages), unit="msg", desc="produce wave") as bar:
            for start in range(0, len(messages), 20_000):
                chunk = messages[start : start + 20_000]
                futures = [await producer.send(t, v, key=k) for t, k, v in chunk]
                await asyncio.gather(*futures)
                bar.update(len(chunk))
    finally:
        await producer.stop()
    return len(messages) / (time.perf_counter() - started)


# ---------------------------------------------------------------- processes


class ProcessTreeRss:
    """Sample the summed RSS of a process group (a child started in its own session)."""

    def __init__(self, pgid: int, interval: float = 0.2) -> None:
        self.pgid = pgid
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._page = os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> ProcessTreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> int:
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                if int(fields[2]) != self.pgid:  # fields[2] is the process group
                    continue
                total += int(Path(f"/proc/{entry}/statm").read_text().split()[1]) * self._page
            except (OSError, ValueError, IndexError):
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self.sample())
            self._stop.wait(self.interval)


def spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", *command],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def log_tail(path: Path, size: int = 2000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else ""


def log_problems(path: Path, limit: int = 20) -> str:
    """The last warnings and errors of a service's JSON log (what a stalled drain needs)."""
    if not path.exists():
        return ""
    lines = [
        line
        for line in path.read_text(errors="replace").splitlines()
        if '"level":"warning"' in line or '"level":"error"' in line or "Traceback" in line
    ]
    return "\n".join(line[:1500] for line in lines[-limit:])


async def applied_count(pool: asyncpg.Pool) -> int:
    """Rows ever inserted into the scan log, from PostgreSQL's statistics: free to read,
    where ``count(*)`` of a log of millions of rows kept a core busy for half a second
    (6.5 million rows: 0.5-1.2 s), once a second, beside the tracker being measured.
    A backend reports its inserts at most once a second, an idle one within seconds:
    for progress only; ``measure_tracker`` confirms the end scan by scan."""
    count: int = await pool.fetchval(
        "SELECT coalesce(sum(n_tup_ins), 0)::bigint FROM pg_stat_user_tables "
        "WHERE relname LIKE 'applied\\_scans\\_p%'"
    )
    return count


async def applied_among(pool: asyncpg.Pool, scan_ids: Sequence[str]) -> set[str]:
    """Which of ``scan_ids`` are in the scan log (exact)."""
    return {row["scan_id"] for row in await pool.fetch(APPLIED_AMONG, list(scan_ids))}


# ---------------------------------------------------------------- measurements


# The wave's first scans, looked for until one is applied (the start of first-to-last).
FIRST_PROBE = 5_000

# Which of these scan_ids are applied: applied_scan_ids, since the log's own key is
# (worker_ref, scan_id) (migration 0012). Joined id by id, so that each probe is pruned
# to the one partition holding it; ``scan_id = ANY($1)`` searched all 16 partitions for
# every id (or read them whole), a load on the PostgreSQL being measured.
APPLIED_AMONG = (
    "SELECT scan_id FROM unnest($1::text[]) AS i(scan_id) JOIN applied_scan_ids USING (scan_id)"
)


async def missing_scans(pool: asyncpg.Pool, scan_ids: Sequence[str]) -> set[str]:
    """Which of ``scan_ids`` are not in the applied-scan log."""
    present: set[str] = set()
    for start in range(0, len(scan_ids), 10_000):
        present |= await applied_among(pool, scan_ids[start : start + 10_000])
    return set(scan_ids) - present


async def dead_letter_reasons(bootstrap: str, wanted: set[str]) -> dict[str, str]:
    """The dead-letter reason of each of ``wanted`` (scan_ids) found on scans.rejected."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: dict[str, str] = {}
    try:
        await consumer._client.force_metadata_update()
        partitions = [
            TopicPartition(topics.REJECTED, p)
            for p in sorted(consumer.partitions_for_topic(topics.REJECTED) or ())
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            for messages in (await consumer.getmany(timeout_ms=1000, max_records=20_000)).values():
                for message in messages:
                    value = message.value or b""
                    for scan_id in wanted:
                        if scan_id.encode() in value:
                            headers = dict(message.headers or ())
                            found[scan_id] = headers.get("reason", b"?").decode()
        return found
    finally:
        await consumer.stop()


async def measure_tracker(
    pool: asyncpg.Pool,
    trackers: Sequence[subprocess.Popen[bytes]],
    log_paths: Sequence[Path],
    *,
    started: float,
    before: int,
    scan_ids: Sequence[str],
    bootstrap: str,
    timeout_s: float,
    stall_s: float = 90.0,
) -> tuple[float, float]:
    """Wait until the scans ``scan_ids`` are applied: (rate from start, rate first to last).

    Checked once a second, exactly at both ends: the first scan applied is looked for
    among the wave's first ``FIRST_PROBE`` scans (sent first, so applied in the first
    batches); in between, progress is the log's insert count from the statistics
    (``applied_count``); once it is within ``POLL_IDS_PER_SECOND`` of the wave, or
    stops growing, the scans not applied yet are found one by one and watched until
    none is left. When none is applied for ``stall_s``, the missing ones are looked
    for on ``scans.rejected``: a scan the tracker dead-lettered is accounted for (its
    reason is printed, loudly); a scan neither applied nor dead-lettered fails the
    measurement, with the trackers' last warnings and errors.
    """
    expected = len(scan_ids)
    first_at: float | None = None
    progress_at = started
    seen = 0
    # Scans not confirmed applied, once the end is near; None before.
    left: set[str] | None = None
    with tqdm(total=expected, unit="scan", desc="tracker applied") as bar:
        while True:
            now = time.perf_counter()
            if first_at is None and await applied_among(pool, scan_ids[:FIRST_PROBE]):
                first_at = now
            if left is None:
                done = min(expected - 1, await applied_count(pool) - before)
                # Exact from when what is left can be looked at in one go (a small
                # wave: at once); the statistics can lag an idle backend by seconds.
                near_end = done >= expected - POLL_IDS_PER_SECOND
                if first_at is not None and (near_end or now - progress_at > 3):
                    left = await missing_scans(pool, scan_ids)
            if left is not None:  # at most POLL_IDS_PER_SECOND a look: the end is exact
                left -= await applied_among(pool, list(itertools.islice(left, POLL_IDS_PER_SECOND)))
                done = expected - len(left)
            if done > seen:
                seen, progress_at = done, now
            bar.update(done - bar.n)
            if left is not None and not left:
                finished = now
                break
            for tracker, log_path in zip(trackers, log_paths, strict=True):
                if tracker.poll() is not None:
                    raise RuntimeError(f"a tracker exited:\n{log_tail(log_path)}")
            if now - progress_at > stall_s or now - started > timeout_s:
                missing = await missing_scans(pool, scan_ids)
                reasons = await dead_letter_reasons(bootstrap, missing)
                if set(reasons) == missing and now - started <= timeout_s:
                    print(
                        f"\n!! {len(missing)} of the wave's {expected:,} scans were "
                        f"dead-lettered by the tracker, not applied: {reasons}",
                        flush=True,
                    )
                    finished = progress_at
                    break
                problems = "\n".join(log_problems(path) for path in log_paths)
                lost = sorted(missing - set(reasons))
                raise RuntimeError(
                    f"{expected - len(missing)}/{expected} scans applied after "
                    f"{now - started:.0f} s; dead-lettered {reasons}; neither applied nor "
                    f"dead-lettered {len(lost)}: {lost[:10]}; the trackers' last warnings "
                    f"and errors:\n{problems or '(none)'}"
                )
            await asyncio.sleep(1.0)
    assert first_at is not None
    return expected / (finished - started), expected / max(1e-6, finished - first_at)


async def warm_drain(
    bootstrap: str,
    pool: asyncpg.Pool,
    trackers: Sequence[subprocess.Popen[bytes]],
    logs: Sequence[Path],
    wave: Wave,
    *,
    warm_up: Wave,
    pseudonymiser: Pseudonymiser,
) -> float:
    """Scans/s of running trackers, from the first send of ``wave`` to its last scan applied.

    ``warm_up`` is applied first, so every consumer has joined its group and
    start-up is not counted; the wave is then produced while the trackers
    consume it (both stages busy at once, as in service).
    """
    for each in (warm_up, wave):
        await prepare(pool, each, pseudonymiser)
    for each in (warm_up, wave):
        scan_ids = list({body["scan_id"]: None for body in each.scans})
        before = await applied_count(pool)
        started = time.perf_counter()
        await produce_all(bootstrap, input_messages(each, pseudonymiser))
        rate, _ = await measure_tracker(
            pool,
            trackers,
            logs,
            started=started,
            before=before,
            scan_ids=scan_ids,
            bootstrap=bootstrap,
            timeout_s=max(600, len(scan_ids) / 200),
        )
    return rate


# The observer's budget: scan_ids looked up a second while polling for visibility.
POLL_IDS_PER_SECOND = 20_000


def poll_interval(pending: int) -> float:
    """Seconds until the next visibility poll: every 10 ms while few scans are pending,
    then less often, so the polls never probe more than ``POLL_IDS_PER_SECOND`` ids.

    Polling every pending id every 10 ms cost PostgreSQL up to a core once a backlog
    formed (5,000 ids a query, 100 queries a second), which slowed the tracker being
    measured and grew the backlog further: a 2,000 scans/s run read p99 47 s from a
    tracker that drains 2,700/s. The resolution falls only when pending, and so latency,
    is already high: 5,000 pending (2.5 s behind at 2,000/s) are polled every 0.25 s.
    """
    return max(0.01, pending / POLL_IDS_PER_SECOND)


async def measure_latency(
    bootstrap: str,
    pool: asyncpg.Pool,
    messages: list[Message],
    *,
    rate: float,
    timeout_s: float = 120.0,
) -> dict[str, float]:
    """Offer ``messages`` at ``rate``/s; per scan, the time from send until it is visible.

    Visible: a poll by scan_id (every 10 ms while few are pending, see ``poll_interval``)
    sees the committed row (an upper bound,
    by up to a poll and its query). ``applied_at`` is PostgreSQL's now(), the transaction's start
    (a lower bound: the commit comes after the batch's work).
    """
    producer = new_producer(bootstrap, linger_ms=2)
    await producer.start()
    sent: dict[str, float] = {}
    pending: dict[str, None] = {}
    seen: dict[str, float] = {}
    producing = True

    async def poll() -> None:
        deadline = time.monotonic() + timeout_s
        while producing or pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} scans not applied in {timeout_s} s")
            ids = list(pending)
            if ids:
                applied = await applied_among(pool, ids)
                now = time.time()
                for scan_id in applied:
                    seen[scan_id] = now
                    del pending[scan_id]
            await asyncio.sleep(poll_interval(len(pending)))

    poller = asyncio.create_task(poll())
    futures = []
    loop = asyncio.get_running_loop()
    tick = 0.01
    per_tick = rate * tick
    started = loop.time()
    try:
        with tqdm(total=len(messages), unit="scan", desc=f"offer {rate:,.0f}/s") as bar:
            index = 0
            tick_number = 0
            while index < len(messages):
                tick_number += 1
                due = min(len(messages), round(tick_number * per_tick))
                for topic, key, value in messages[index:due]:
                    scan_id = orjson.loads(value)["scan_id"]
                    if scan_id not in sent:
                        sent[scan_id] = time.time()
                        pending[scan_id] = None
                    futures.append(await producer.send(topic, value, key=key))
                bar.update(due - index)
                index = due
                delay = started + tick_number * tick - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            offered = len(messages) / (loop.time() - started)
        await asyncio.gather(*futures)
        producing = False
        await poller
    finally:
        producing = False
        poller.cancel()
        await producer.stop()
    visible = [(seen[s] - sent[s]) * 1000 for s in sent]
    rows = await pool.fetch(
        "SELECT scan_id, extract(epoch FROM applied_at)::float8 AS at FROM applied_scans "
        "WHERE scan_id = ANY($1::text[])",
        list(sent),
    )
    applied = [(row["at"] - sent[row["scan_id"]]) * 1000 for row in rows]
    return {
        "latency_p50_ms": percentile(visible, 0.50),
        "latency_p99_ms": percentile(visible, 0.99),
        "latency_applied_p50_ms": percentile(applied, 0.50),
        "latency_applied_p99_ms": percentile(applied, 0.99),
        "latency_offered": offered,
        "latency_scans": float(len(sent)),
    }


async def measure_consume(bootstrap: str, topic_names: list[str]) -> tuple[float, int]:
    """Read every message of ``topic_names`` with plain aiokafka and decode it with orjson."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in topic_names
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not all(consumer.partitions_for_topic(t) for t in topic_names):
            await consumer._client.force_metadata_update()
            partitions = [
                TopicPartition(topic, partition)
                for topic in topic_names
                for partition in sorted(consumer.partitions_for_topic(topic) or ())
            ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        total = sum(ends[tp] - starts[tp] for tp in partitions)
        count = undecodable = 0
        started = time.perf_counter()
        with tqdm(total=total, unit="msg", desc="aiokafka consume+decode") as bar:
            while count < total:
                fetched = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                for messages in fetched.values():
                    for message in messages:
                        try:
                            orjson.loads(message.value or b"")
                        except orjson.JSONDecodeError:
                            # Servers shared with the test suites hold their deliberately
                            # broken input too: decoding it is the same work.
                            undecodable += 1
                    count += len(messages)
                    bar.update(len(messages))
        return count / (time.perf_counter() - started), count
    finally:
        await consumer.stop()


_TEXT = (str, type(None))


def _plain_row(value: bytes | None, key: bytes | None, now: datetime) -> tuple[Any, ...] | None:
    """One input message as the first ten columns of an applied_scans row; None for one
    that is not a scan with the right types (the suites' deliberately broken input, which
    COPY would refuse: it is skipped, as a tracker would set it aside)."""
    try:
        body = orjson.loads(value or b"")
        scan_id, kind, occurred_at = body["scan_id"], body["kind"], body["occurred_at"]
        text = (body.get("station"), body.get("health_code"), body.get("trip_id"))
        enterprise, temperature = body.get("enterprise_id"), body.get("temperature_c")
        if not (
            isinstance(scan_id, str)
            and isinstance(kind, str)
            and isinstance(occurred_at, str)
            and isinstance(text[0], str)  # station: NOT NULL
            and all(isinstance(item, _TEXT) for item in (*text, enterprise))
            and (temperature is None or type(temperature) in (int, float))
        ):
            return None
        occurred = datetime.fromisoformat(occurred_at)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if occurred.tzinfo is None:
        return None
    station, health_code, trip_id = text
    return (
        scan_id,
        (key or b"").decode(errors="replace"),
        kind,
        occurred,
        station,
        None if temperature is None else float(temperature),
        health_code,
        trip_id,
        enterprise,
        now,
    )


async def measure_plain_loop(
    bootstrap: str, pool: asyncpg.Pool, topic_names: list[str], limit: int
) -> tuple[float, int]:
    """The least any tracker must do, as fast as these libraries do it: aiokafka
    ``getmany`` → orjson → rows → one transaction a batch (COPY into a staging table,
    ``INSERT … ON CONFLICT DO NOTHING`` into a table shaped like ``applied_scans``, its
    keys and indexes included, so a redelivered scan is kept once) → commit the
    offsets. No validation, no domain, no outbox. Reads ``limit`` messages of the input
    topics from their beginning, in a consumer group of its own."""
    group = f"bench-plain-loop-{secrets.token_hex(4)}"
    consumer = AIOKafkaConsumer(
        *topic_names,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    columns = COPY_COLUMNS
    async with pool.acquire() as connection:
        await connection.execute("DROP TABLE IF EXISTS bench_plain_loop")
        await connection.execute("CREATE TABLE bench_plain_loop (LIKE applied_scans INCLUDING ALL)")
        await connection.execute(
            "CREATE TEMP TABLE plain_loop_stage (LIKE bench_plain_loop INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS"
        )
        insert = (
            f"INSERT INTO bench_plain_loop ({', '.join(columns)}) "
            f"SELECT {', '.join(columns)} FROM plain_loop_stage ON CONFLICT DO NOTHING"
        )
        await consumer.start()
        count = 0
        try:
            started: float | None = None  # the first fetch that brought records
            idle_since = time.perf_counter()
            with tqdm(total=limit, unit="msg", desc="plain loop") as bar:
                while count < limit:
                    fetched = await consumer.getmany(timeout_ms=1000, max_records=2000)
                    if not fetched:
                        # joining the group, or the topics hold fewer than ``limit``
                        if time.perf_counter() - idle_since > (5 if started else 60):
                            break
                        continue
                    idle_since = time.perf_counter()
                    if started is None:
                        started = time.perf_counter()
                    rows = []
                    now = datetime.now(UTC)
                    for tp, messages in fetched.items():
                        for message in messages:
                            row = _plain_row(message.value, message.key, now)
                            if row is not None:
                                rows.append((*row, tp.topic, tp.partition, message.offset))
                        count += len(messages)
                        bar.update(len(messages))
                    async with connection.transaction():
                        await connection.copy_records_to_table(
                            "plain_loop_stage", records=rows, columns=columns
                        )
                        await connection.execute(insert)
                    await consumer.commit()
                    finished = time.perf_counter()
            if started is None:
                raise RuntimeError("the plain loop read nothing from the input topics in 60 s")
            rate = count / (finished - started)
            stored = await connection.fetchval("SELECT count(*) FROM bench_plain_loop")
            if not stored:
                raise RuntimeError(f"the plain loop read {count:,} messages and stored no scan")
            print(f"plain loop: {count:,} messages read, {stored:,} distinct scans stored")
        finally:
            await consumer.stop()
            await connection.execute("DROP TABLE IF EXISTS bench_plain_loop")
            await connection.execute("DROP TABLE IF EXISTS plain_loop_stage")
    await asyncio.to_thread(delete_groups, bootstrap, [group])
    return rate, count


def delete_groups(bootstrap: str, groups: list[str]) -> None:
    """Delete consumer groups a measurement made (with no member left), so they do not
    pile up on a broker the bench shares. aiokafka's admin client has no such call."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="returnloop-bench")
    try:
        for group, outcome in admin.delete_groups(groups).items():  # group -> "OK" or an error
            if outcome != "OK":
                print(f"!! consumer group {group} not deleted: {outcome}", flush=True)
    finally:
        admin.close()


def copy_records(wave: Wave, pseudonymiser: Pseudonymiser) -> list[tuple[Any, ...]]:
    """The wave's unique scans as applied_scans rows."""
    now = datetime.now(UTC)
    refs: dict[str, str] = {}
    rows: dict[str, tuple[Any, ...]] = {}
    for offset, body in enumerate(wave.scans):
        if body["scan_id"] in rows:
            continue
        number = wave.id_number_of(body)
        if number not in refs:
            refs[number] = pseudonymiser.worker_ref(number)
        rows[body["scan_id"]] = (
            body["scan_id"],
            refs[number],
            body["kind"],
            datetime.fromisoformat(body["occurred_at"]),
            body["station"],
            body.get("temperature_c"),
            body.get("health_code"),
            body.get("trip_id"),
            body.get("enterprise_id"),
            now,
            topics.INPUT_TOPICS[body["kind"]],
            0,
            offset,
        )
    return list(rows.values())


COPY_COLUMNS = [
    "scan_id",
    "worker_ref",
    "kind",
    "occurred_at",
    "station",
    "temperature_c",
    "health_code",
    "trip_id",
    "enterprise_id",
    "received_at",
    "source_topic",
    "source_partition",
    "source_offset",
]


async def measure_copy(pool: asyncpg.Pool, records: list[tuple[Any, ...]]) -> dict[str, float]:
    """COPY the rows into tables shaped like applied_scans (its keys and index included)."""
    figures = {}
    async with pool.acquire() as connection:
        for name, unlogged in (("copy_unlogged", True), ("copy_logged", False)):
            table = f"bench_{name}"
            await connection.execute(f"DROP TABLE IF EXISTS {table}")
            await connection.execute(
                f"CREATE {'UNLOGGED ' if unlogged else ''}TABLE {table} "
                "(LIKE applied_scans INCLUDING ALL)"
            )
            started = time.perf_counter()
            for start in range(0, len(records), 50_000):
                await connection.copy_records_to_table(
                    table, records=records[start : start + 50_000], columns=COPY_COLUMNS
                )
            figures[name] = len(records) / (time.perf_counter() - started)
            await connection.execute(f"DROP TABLE {table}")
    return figures


def database_url_for(database_url: str, database: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def fresh_database(pool: asyncpg.Pool, database_url: str, database: str) -> str:
    async with pool.acquire() as connection:
        await connection.execute(f"DROP DATABASE IF EXISTS {database}")
        await connection.execute(f"CREATE DATABASE {database}")
    url = database_url_for(database_url, database)
    await asyncio.to_thread(migrate, url)
    return url


async def measure_faust(
    mode: str, env: dict[str, str], work_dir: Path, *, limit: int, timebox_s: float
) -> tuple[float, int]:
    """Run one Faust baseline until ``limit`` events or the time box; (rate, events)."""
    out = work_dir / f"faust-{mode}.json"
    log_path = work_dir / f"faust-{mode}.log"
    process = spawn(["tests.bench.bench_faust", mode, str(out)], env, log_path)
    progress: dict[str, Any] = {}
    deadline: float | None = None
    give_up = time.monotonic() + timebox_s + 60
    try:
        with tqdm(total=limit, unit="msg", desc=f"faust {mode}") as bar:
            while True:
                await asyncio.sleep(0.5)
                if process.poll() is not None:
                    raise RuntimeError(f"the Faust baseline exited:\n{log_tail(log_path)}")
                if out.exists():
                    progress = orjson.loads(out.read_bytes())
                    bar.update(min(limit, progress["count"]) - bar.n)
                    if progress["first"] is not None and deadline is None:
                        deadline = time.monotonic() + timebox_s
                if progress.get("count", 0) >= limit:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    break
                if time.monotonic() > give_up:
                    raise RuntimeError(f"the Faust baseline saw nothing:\n{log_tail(log_path)}")
    finally:
        stop(process)
    count = progress["count"]
    elapsed = max(1e-6, progress["last"] - progress["first"])
    return count / elapsed, count


# The API client's connection pool, all opened before a timed run.
CLIENT_CONNECTIONS = 200


def quiet_collector() -> None:
    """Collect once, then keep Python's cyclic collector off everything alive now.

    Called before each timed phase: objects a run keeps (waves, id lists) otherwise
    pile up in the oldest generation, and a collection walking them stalled the
    load generator for long enough to read as the API's latency (a lookup p99 of
    1.3 s in a full run, 18 ms in an API-only one on the same servers).
    """
    gc.collect()
    gc.freeze()


async def fixed_rate(
    rate: float, duration_s: float, request: Callable[[int], Awaitable[int]]
) -> tuple[list[float], int, float, list[float]]:
    """Open loop: request i starts at i/rate; latency counts from that planned start.

    ``request`` returns the HTTP status. Also returns each request's lag: how late
    the generator sent it (its own stalls, which count in the latency).
    """
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    lags: list[float] = []
    failures = 0

    async def one(index: int, planned: float) -> None:
        nonlocal failures
        lags.append((loop.time() - planned) * 1000)
        try:
            if await request(index) >= 400:
                failures += 1
        except (aiohttp.ClientError, TimeoutError):
            failures += 1
        latencies.append((loop.time() - planned) * 1000)

    tasks = []
    started = loop.time() + 0.1
    count = int(rate * duration_s)
    for index in range(count):
        planned = started + index / rate
        delay = planned - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, planned)))
    issued_rate = count / max(1e-6, loop.time() - started)
    await asyncio.gather(*tasks)
    return latencies, failures, issued_rate, lags


async def measure_api(
    url: str,
    *,
    lookup_ids: list[str],
    single_scans: list[dict[str, Any]],
    batch_scans: list[dict[str, Any]],
    lookup_rate: float,
    scans_rate: float,
    duration_s: float,
) -> dict[str, float]:
    """The API at fixed request rates, from an aiohttp client (a fraction of httpx's CPU
    per request: with httpx the generator, not the API, saturated first)."""
    headers = {
        "Authorization": f"Bearer {BENCH_ADMIN_TOKEN}",
        "Content-Type": "application/json",
    }
    figures: dict[str, float] = {}
    async with aiohttp.ClientSession(
        base_url=url,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=60),
        connector=aiohttp.TCPConnector(limit=CLIENT_CONNECTIONS),
    ) as client:

        async def post(path: str, body: Any) -> int:
            for attempt in range(3):
                try:
                    async with client.post(path, data=orjson.dumps(body)) as response:
                        await response.read()
                        return response.status
                except aiohttp.ClientConnectionError:
                    # A pooled keep-alive connection the server had closed or reset
                    # (after an overload): sent again on a new one (scans are
                    # idempotent, lookups read-only). In the timed runs ``fixed_rate``
                    # counts it as a failure instead.
                    if attempt == 2:
                        raise
                    await asyncio.sleep(0.5)
            raise AssertionError("unreachable")

        # Warm up caches, and open the connections a timed run will use: a connection
        # opened mid-run (when a hiccup puts more requests in flight) costs the API
        # several requests' CPU and turned one stall into seconds of queueing. Real
        # callers (gates, dashboards) keep theirs open.
        for index in range(20):
            await post("/v1/workers/lookup", {"id_number": lookup_ids[index]})
        await asyncio.gather(
            *(
                post("/v1/workers/lookup", {"id_number": lookup_ids[index % len(lookup_ids)]})
                for index in range(CLIENT_CONNECTIONS)
            )
        )
        quiet_collector()
        print(f"lookup at {lookup_rate:,.0f} req/s for {duration_s:.0f} s", flush=True)
        latencies, failures, issued, lags = await fixed_rate(
            lookup_rate,
            duration_s,
            lambda i: post("/v1/workers/lookup", {"id_number": lookup_ids[i % len(lookup_ids)]}),
        )
        figures["lookup_p50_ms"] = percentile(latencies, 0.50)
        figures["lookup_p99_ms"] = percentile(latencies, 0.99)
        figures["lookup_failures"] = failures
        figures["lookup_rate_issued"] = issued
        figures["lookup_lag_p99_ms"] = percentile(lags, 0.99)
        print(f"one-scan POST /v1/scans at {scans_rate:,.0f} req/s for {duration_s:.0f} s")
        latencies, failures, issued, _ = await fixed_rate(
            scans_rate,
            duration_s,
            lambda i: post("/v1/scans", single_scans[i % len(single_scans)]),
        )
        figures["scans_p50_ms"] = percentile(latencies, 0.50)
        figures["scans_p99_ms"] = percentile(latencies, 0.99)
        figures["scans_failures"] = failures
        figures["scans_rate_issued"] = issued
        batches = [batch_scans[i : i + 1000] for i in range(0, len(batch_scans), 1000)]
        queue = list(reversed(batches))
        sent = 0

        async def post_batches() -> None:
            nonlocal sent
            while queue:
                batch = queue.pop()
                status = await post("/v1/scans", {"scans": batch})
                if status >= 400:
                    raise RuntimeError(f"a batch of scans was refused: HTTP {status}")
                sent += len(batch)

        started = time.perf_counter()
        await asyncio.gather(*(post_batches() for _ in range(4)))
        figures["batch_intake"] = sent / (time.perf_counter() - started)
    return figures


def export_manifest(
    workers: int, *, seed: int, pseudonymiser: Pseudonymiser
) -> tuple[str, list[dict[str, Any]]]:
    """One enterprise with ``workers`` on its manifest and none checked in: all not back."""
    # Distinct ID numbers: a thousand sequence numbers a birth date, a day apart from 1970 on.
    born = datetime(1970, 1, 1) + timedelta(days=random.Random(seed).randrange(3650))
    enterprise_id = f"BENCH-EXPORT-{seed}-{workers}"
    rows = []
    for index in range(workers):
        birth = born + timedelta(days=index // 1000)
        first17 = f"330302{birth:%Y%m%d}{index % 1000:03d}"
        id_number = first17 + check_digit(first17)
        rows.append(
            {
                "worker_ref": pseudonymiser.worker_ref(id_number),
                "id_masked": mask_id_number(id_number),
                "name": f"返岗工人{index:05d}",
                "enterprise_id": enterprise_id,
                "trip_id": None,
            }
        )
    return enterprise_id, rows


async def measure_exports(
    url: str, pool: asyncpg.Pool, pseudonymiser: Pseudonymiser, *, workers: int, seed: int
) -> dict[str, float]:
    """Seconds to the last byte of ``GET /v1/enterprises/{id}/not_back?format=csv|xlsx`` for
    an enterprise of ``workers`` none of whom is back; each file is checked for every row."""
    enterprise_id, rows = export_manifest(workers, seed=seed, pseudonymiser=pseudonymiser)
    enterprise = {"enterprise_id": enterprise_id, "name": "导出基准厂", "shortage": workers}
    await ManifestStore(pool).upsert_manifest([enterprise], [], rows)
    headers = {"Authorization": f"Bearer {BENCH_ADMIN_TOKEN}"}
    figures: dict[str, float] = {}
    async with aiohttp.ClientSession(
        base_url=url, headers=headers, timeout=aiohttp.ClientTimeout(total=600)
    ) as client:
        for format in ("csv", "xlsx"):
            print(f"exporting {workers:,} not-back workers as {format.upper()}", flush=True)
            started = time.perf_counter()
            async with client.get(
                f"/v1/enterprises/{enterprise_id}/not_back", params={"format": format}
            ) as response:
                body = await response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200:
                raise RuntimeError(f"the {format} export failed: HTTP {response.status}")
            if format == "csv":
                listed = body.count(b"\r\n") - 1
            else:
                book = load_workbook(io.BytesIO(body), read_only=True)
                listed = sum(1 for _ in book.worksheets[0].iter_rows(values_only=True)) - 1
                book.close()
            if listed != workers:
                raise RuntimeError(f"the {format} export has {listed:,} rows, not {workers:,}")
            figures[f"export_not_back_{format}_s"] = elapsed
            figures[f"export_not_back_{format}_bytes"] = len(body)
    return figures


async def wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the API exited:\n{log_tail(log_path)}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the API was not ready in 60 s:\n{log_tail(log_path)}")


async def latency_runs(
    results: Results,
    servers: Servers,
    pool: asyncpg.Pool,
    env: dict[str, str],
    log: Path,
    waves: Sequence[Wave],
    *,
    rate: float,
    pseudonymiser: Pseudonymiser,
    warm_up: tuple[Wave, Wave],
) -> None:
    """``--latency-only N``: the latency run N times on one ``returnloop tracker`` (as
    shipped), a wave each, after a small wave has been applied (consumers joined).

    Each run is printed; the figures kept are those of the run with the median p99,
    every run's p50/p99 goes to the notes. Runs of the same code differ by tens of
    milliseconds at p99, so one run says little about a change.
    """
    step(f"scan-to-state latency at {rate:,.0f} scans/s offered, {len(waves)} run(s)")
    runs: list[dict[str, float]] = []
    tracker = spawn(["services.cli", "tracker"], env, log)
    try:

        async def measure() -> None:
            first, second = warm_up
            await warm_drain(
                servers.kafka_bootstrap,
                pool,
                [tracker],
                [log],
                second,
                warm_up=first,
                pseudonymiser=pseudonymiser,
            )
            for number, wave in enumerate(waves, 1):
                await prepare(pool, wave, pseudonymiser)
                quiet_collector()
                figures = await measure_latency(
                    servers.kafka_bootstrap,
                    pool,
                    input_messages(wave, pseudonymiser),
                    rate=rate,
                )
                print(
                    f"run {number}: visible p50 {figures['latency_p50_ms']:.1f} / p99 "
                    f"{figures['latency_p99_ms']:.1f} ms; applied_at p50 "
                    f"{figures['latency_applied_p50_ms']:.1f} / p99 "
                    f"{figures['latency_applied_p99_ms']:.1f} ms",
                    flush=True,
                )
                runs.append(figures)

        await attempt(results, "latency", measure)
    finally:
        stop(tracker)
    if runs:
        ranked = sorted(runs, key=lambda figures: figures["latency_p99_ms"])
        results.figures.update(ranked[(len(ranked) - 1) // 2])
        results.notes["latency_runs"] = "; ".join(
            f"{f['latency_p50_ms']:.1f}/{f['latency_p99_ms']:.1f} ms" for f in runs
        )


# ---------------------------------------------------------------- the run


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("aiokafka", "faust-streaming", "asyncpg", "kafka-python", "fastapi", "uvicorn"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


def machine() -> dict[str, Any]:
    memory_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    return {
        "nproc": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "platform": platform.platform(),
    }


async def attempt(results: Results, name: str, action: Callable[[], Awaitable[None]]) -> None:
    """Run one measurement; a failure is recorded and the run goes on."""
    try:
        await action()
    except Exception as error:
        results.errors[name] = f"{type(error).__name__}: {error}"[:20000]
        print(f"!! {name} failed: {results.errors[name]}", flush=True)


SEED_CHUNK = 100_000


async def seed_workers(pool: asyncpg.Pool, count: int) -> float:
    """Put ``count`` finished journeys in PostgreSQL before the run (issue 14's "1,000,000
    workers in PostgreSQL"): a worker row, four passing scans in the log and their ids,
    a closed loop state each; set-based, ``SEED_CHUNK`` workers a statement. Their
    worker_refs look like real ones ("w_" and 24 hex digits, spread like the HMAC's).
    Returns the seconds it took."""
    started = time.perf_counter()
    ref = "'w_' || substr(md5('bench-seed-' || g), 1, 24)"
    kinds = (
        "(VALUES ('departure_check', 36.5, 'green', NULL, NULL, -30),"
        " ('boarding', NULL, NULL, 'seed-trip', NULL, -29),"
        " ('arrival_check', 36.6, 'green', NULL, NULL, -3),"
        " ('checkin', NULL, NULL, NULL, 'seed-enterprise', -2))"
        " AS k(kind, temperature, colour, trip, enterprise, hours)"
    )
    with tqdm(total=count, unit="worker", desc="seeding PostgreSQL") as bar:
        for first in range(1, count + 1, SEED_CHUNK):
            last = min(count, first + SEED_CHUNK - 1)
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute(
                    f"""
                    INSERT INTO workers (worker_ref, id_masked, enterprise_id, trip_id)
                    SELECT {ref}, '110101********0000', 'seed-enterprise', 'seed-trip'
                    FROM generate_series($1::int, $2::int) AS g;
                    """,
                    first,
                    last,
                )
                await connection.execute(
                    f"""
                    INSERT INTO applied_scans (scan_id, worker_ref, kind, occurred_at, station,
                        temperature_c, health_code, trip_id, enterprise_id, received_at)
                    SELECT 'bench-seed-' || g || '-' || k.kind, {ref}, k.kind,
                        now() - interval '3 days' + k.hours * interval '1 hour', 'seed station',
                        k.temperature, k.colour, k.trip, k.enterprise, now()
                    FROM generate_series($1::int, $2::int) AS g CROSS JOIN {kinds};
                    """,
                    first,
                    last,
                )
                await connection.execute(
                    """
                    INSERT INTO applied_scan_ids (scan_id)
                    SELECT 'bench-seed-' || g || '-' || k
                    FROM generate_series($1::int, $2::int) AS g
                    CROSS JOIN unnest(ARRAY['departure_check', 'boarding', 'arrival_check',
                        'checkin']) AS k;
                    """,
                    first,
                    last,
                )
                await connection.execute(
                    f"""
                    INSERT INTO loop_state (worker_ref, id_masked, stage, status, health_code,
                        departed, boarded_trip_id, arrived, checked_in_enterprise_id, scan_count)
                    SELECT {ref}, '110101********0000', 'checked_in', 'closed', 'green',
                        true, 'seed-trip', true, 'seed-enterprise', 4
                    FROM generate_series($1::int, $2::int) AS g;
                    """,
                    first,
                    last,
                )
            bar.update(last - first + 1)
    await pool.execute("ANALYZE")
    return time.perf_counter() - started


async def run(
    servers: Servers,
    work_dir: Path,
    *,
    workers: int,
    latency_rate: float,
    latency_seconds: float,
    faust_limit: int,
    api_seconds: float,
    lookup_rate: float,
    scans_rate: float,
    seed: int,
    export_workers: int = 29_400,
    tracker_only: bool = False,
    api_only: bool = False,
    latency_only: int = 0,
    seeded: int = 0,
) -> Results:
    results = Results()
    rules = Rules()
    pseudonymiser = Pseudonymiser(
        os.environ.get("RETURNLOOP_WORKER_REF_KEY", BENCH_WORKER_REF_KEY).encode()
    )
    env = {
        **os.environ,
        "RETURNLOOP_KAFKA_BOOTSTRAP": servers.kafka_bootstrap,
        "RETURNLOOP_DATABASE_URL": servers.database_url,
        "RETURNLOOP_WORKER_REF_KEY": os.environ.get(
            "RETURNLOOP_WORKER_REF_KEY", BENCH_WORKER_REF_KEY
        ),
        "RETURNLOOP_ADMIN_TOKEN": BENCH_ADMIN_TOKEN,
        "RETURNLOOP_DATA_DIR": str(work_dir / "data"),
    }
    now = datetime.now(UTC)

    step(f"building a wave of {workers:,} workers")
    wave = wave_of(workers, seed=seed, now=now)
    unique = len({body["scan_id"] for body in wave.scans})
    latency_wave_workers = max(10, int(latency_rate * latency_seconds / 4.4))
    latency_wave = wave_of(latency_wave_workers, seed=seed + 1, now=now)
    api_wave = wave_of(max(1000, min(workers, 20_000)), seed=seed + 2, now=now)
    quiet_collector()  # the waves live as long as the run
    results.set("workers", workers)
    results.set("scans_delivered", len(wave.scans))
    results.set("scans_unique", unique)
    results.set("scans_by_code", by_code_share(wave))
    results.set("latency_rate_asked", latency_rate)
    results.set("lookup_rate_asked", lookup_rate)
    print(
        f"{len(wave.scans):,} scans delivered, {unique:,} unique, "
        f"{by_code_share(wave):.0f} % naming the worker by a linked code",
        flush=True,
    )

    pool = await create_pool(servers.database_url, max_size=4)
    try:
        results.notes["postgresql"] = await pool.fetchval("SHOW server_version")
        results.notes["seed"] = str(seed)
        if seeded:
            step(f"seeding PostgreSQL with {seeded:,} finished journeys")
            seconds = await seed_workers(pool, seeded)
            results.set("seeded_workers", seeded)
            results.set("seed_seconds", seconds)
            print(f"seeded {seeded:,} workers in {seconds:.0f} s", flush=True)
        await refuse_fed_waves(pool, (wave, latency_wave, api_wave), pseudonymiser, seed)
        for each in (wave, latency_wave, api_wave):
            await prepare(pool, each, pseudonymiser)
        results.set(
            "workers_in_postgresql", float(await pool.fetchval("SELECT count(*) FROM workers"))
        )

        async def api_step() -> None:
            step("API: lookup and scans at fixed rates, batch intake")
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            api_log = work_dir / "api.log"
            api = spawn(["services.cli", "api"], {**env, "RETURNLOOP_API_PORT": str(port)}, api_log)
            try:

                async def api_figures() -> None:
                    await wait_ready(url, api, api_log)
                    rng = random.Random(seed)
                    lookup_ids = [w["id_number"] for w in wave.manifest["workers"]]
                    rng.shuffle(lookup_ids)
                    half = len(api_wave.scans) // 2
                    results.figures.update(
                        await measure_api(
                            url,
                            lookup_ids=lookup_ids,
                            single_scans=api_wave.scans[:half],
                            batch_scans=api_wave.scans[half:],
                            lookup_rate=lookup_rate,
                            scans_rate=scans_rate,
                            duration_s=api_seconds,
                        )
                    )

                await attempt(results, "api", api_figures)

                async def export_figures() -> None:
                    await wait_ready(url, api, api_log)
                    results.figures.update(
                        await measure_exports(
                            url, pool, pseudonymiser, workers=export_workers, seed=seed
                        )
                    )

                if export_workers:
                    await attempt(results, "exports", export_figures)
            finally:
                stop(api)

        if api_only:
            await api_step()
            return results

        if latency_only:
            await latency_runs(
                results,
                servers,
                pool,
                env,
                work_dir / "tracker-latency.log",
                [latency_wave]
                + [
                    wave_of(latency_wave_workers, seed=seed + 20 + run, now=now)
                    for run in range(1, latency_only)
                ],
                rate=latency_rate,
                pseudonymiser=pseudonymiser,
                warm_up=(
                    wave_of(200, seed=seed + 18, now=now),
                    wave_of(200, seed=seed + 19, now=now),
                ),
            )
            return results

        step("pre-producing the wave to the input topics")
        messages = input_messages(wave, pseudonymiser)
        quiet_collector()
        results.set("produce_rate", await produce_all(servers.kafka_bootstrap, messages))
        del messages

        step("tracker end to end: `returnloop tracker` (Faust worker) drains the wave")
        before = await applied_count(pool)
        tracker_log = work_dir / "tracker.log"
        started = time.perf_counter()
        tracker = spawn(["services.cli", "tracker"], env, tracker_log)
        with ProcessTreeRss(tracker.pid) as rss:
            try:

                async def drain() -> None:
                    e2e, steady = await measure_tracker(
                        pool,
                        [tracker],
                        [tracker_log],
                        started=started,
                        before=before,
                        scan_ids=list({body["scan_id"]: None for body in wave.scans}),
                        bootstrap=servers.kafka_bootstrap,
                        timeout_s=max(600, unique / 200),
                    )
                    results.set("tracker_e2e", e2e)
                    results.set("tracker_steady", steady)

                await attempt(results, "tracker_e2e", drain)

                step(
                    f"scan-to-state latency at {latency_rate:,.0f} scans/s offered "
                    f"for {latency_seconds:.0f} s"
                )

                async def latency() -> None:
                    quiet_collector()
                    figures = await measure_latency(
                        servers.kafka_bootstrap,
                        pool,
                        input_messages(latency_wave, pseudonymiser),
                        rate=latency_rate,
                    )
                    results.figures.update(figures)

                await attempt(results, "latency", latency)
            finally:
                stop(tracker)
        results.set("tracker_peak_rss_mb", rss.peak_bytes / 1024 / 1024)

        step("tracker, warm: one process (--processes 1), a wave sent while it runs")
        one_log = work_dir / "tracker-one.log"
        one = spawn(["services.cli", "tracker", "--processes", "1"], env, one_log)
        with ProcessTreeRss(one.pid) as one_rss:
            try:

                async def warm_one() -> None:
                    rate = await warm_drain(
                        servers.kafka_bootstrap,
                        pool,
                        [one],
                        [one_log],
                        wave_of(max(1000, workers // 2), seed=seed + 3, now=now),
                        warm_up=wave_of(200, seed=seed + 4, now=now),
                        pseudonymiser=pseudonymiser,
                    )
                    results.set("tracker_warm_one", rate)

                await attempt(results, "tracker_warm_one", warm_one)

                step("scan-to-state latency at 80 % of one process's measured capacity")

                async def latency_80() -> None:
                    capacity = results.figures.get("tracker_warm_one")
                    if not capacity or math.isnan(capacity):
                        raise RuntimeError("tracker_warm_one was not measured: no rate to offer")
                    rate = 0.8 * capacity
                    results.set("latency80_rate_asked", rate)
                    results.notes["latency80_rate"] = (
                        f"{rate:,.0f} scans/s (0.8 × tracker_warm_one, {capacity:,.0f} scans/s)"
                    )
                    # Its own wave (a seed no other wave of the run uses: fresh scan_ids),
                    # its codes linked before its first scan is sent.
                    wave_80 = wave_of(
                        max(10, int(rate * latency_seconds / 4.4)), seed=seed + 7, now=now
                    )
                    await prepare(pool, wave_80, pseudonymiser)
                    quiet_collector()
                    print(f"offering {rate:,.0f} scans/s for {latency_seconds:.0f} s", flush=True)
                    figures = await measure_latency(
                        servers.kafka_bootstrap,
                        pool,
                        input_messages(wave_80, pseudonymiser),
                        rate=rate,
                    )
                    results.figures.update(
                        {f"latency80_{k.removeprefix('latency_')}": v for k, v in figures.items()}
                    )

                await attempt(results, "latency80", latency_80)
            finally:
                stop(one)
        results.set("tracker_one_peak_rss_mb", one_rss.peak_bytes / 1024 / 1024)

        step("tracker, warm: two processes in one consumer group (--processes 2)")

        async def warm_two() -> None:
            logs = [work_dir / "tracker-two.log"]
            pair = [spawn(["services.cli", "tracker", "--processes", "2"], env, logs[0])]
            try:
                rate = await warm_drain(
                    servers.kafka_bootstrap,
                    pool,
                    pair,
                    logs,
                    wave_of(max(1000, workers // 2), seed=seed + 5, now=now),
                    warm_up=wave_of(200, seed=seed + 6, now=now),
                    pseudonymiser=pseudonymiser,
                )
            finally:
                for process in pair:
                    stop(process)
            results.set("tracker_warm_two", rate)

        await attempt(results, "tracker_warm_two", warm_two)
        if tracker_only:
            return results

        step("limit: plain aiokafka consume + orjson decode of the input topics")

        async def consume() -> None:
            rate, count = await measure_consume(
                servers.kafka_bootstrap, list(topics.INPUT_TOPICS.values())
            )
            results.set("consume_limit", rate)
            results.set("consume_messages", count)

        await attempt(results, "consume_limit", consume)

        step("limit: the plain loop (getmany → orjson → COPY, one transaction a batch → commit)")

        async def plain_loop() -> None:
            rate, count = await measure_plain_loop(
                servers.kafka_bootstrap, pool, list(topics.INPUT_TOPICS.values()), len(wave.scans)
            )
            results.set("plain_loop", rate)
            results.set("plain_loop_messages", count)

        await attempt(results, "plain_loop", plain_loop)

        step("limits: asyncpg COPY of the same rows into an UNLOGGED and a logged table")

        async def copy() -> None:
            results.figures.update(await measure_copy(pool, copy_records(wave, pseudonymiser)))

        await attempt(results, "copy", copy)

        step("rebuild: `returnloop rebuild` (one process a core) over the applied-scan log")

        async def rebuild_rate() -> None:
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "services.cli", "rebuild"],
                env=env,
                capture_output=True,
                text=True,
                timeout=3600,
            )
            if done.returncode != 0:
                raise RuntimeError(f"returnloop rebuild failed:\n{done.stderr[-2000:]}")
            # "rebuilt W worker(s) from S scan(s) in T s (R scans/s, N processes); C state(s)…"
            line = done.stdout.strip().splitlines()[-1]
            print(line, flush=True)
            words = line.split()
            scans = int(words[4])
            seconds = float(words[7])
            results.set("rebuild", scans / seconds)
            results.set("rebuild_scans", scans)
            results.set("rebuild_corrected", int(line.split("; ")[1].split()[0]))

        await attempt(results, "rebuild", rebuild_rate)

        step("rebuild, one process (in this process, for comparison)")

        async def rebuild_one() -> None:
            store = await PostgresStore.connect(servers.database_url, max_size=3)
            try:
                report = await rebuild(store, rules=rules)
            finally:
                await store.close()
            results.set("rebuild_one", report.scans_per_second)

        await attempt(results, "rebuild_one", rebuild_one)

        step("baselines: Faust agents on scans.accepted")

        async def faust_noop() -> None:
            rate, count = await measure_faust(
                "noop", env, work_dir, limit=min(unique, faust_limit * 5), timebox_s=60
            )
            results.set("faust_noop", rate)
            results.set("faust_noop_events", count)

        await attempt(results, "faust_noop", faust_noop)

        async def faust_transaction() -> None:
            url = await fresh_database(pool, servers.database_url, FAUST_DATABASE)
            rate, count = await measure_faust(
                "transaction",
                {**env, "RETURNLOOP_BENCH_FAUST_DATABASE_URL": url},
                work_dir,
                limit=min(unique, faust_limit),
                timebox_s=60,
            )
            results.set("faust_transaction", rate)
            results.set("faust_transaction_events", count)

        await attempt(results, "faust_transaction", faust_transaction)
        with contextlib.suppress(Exception):
            async with pool.acquire() as connection:
                await connection.execute(f"DROP DATABASE IF EXISTS {FAUST_DATABASE}")

        await api_step()
    finally:
        await pool.close()
    results.notes["lookup_rate"] = f"{lookup_rate:,.0f} req/s"
    results.notes["scans_rate"] = f"{scans_rate:,.0f} req/s"
    results.notes["export_workers"] = f"{export_workers:,} workers not back, one enterprise"
    return results


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value:,.1f} ms"
    if unit == "s":
        return f"{value:,.2f} s"
    if unit == "MB":
        return f"{value:,.0f} MB"
    return f"{value:,.0f} {unit}"


def measured(value: float | None) -> float | None:
    """A figure, or None when it was not measured (absent, or NaN: no samples)."""
    return None if value is None or math.isnan(value) else value


def target_text(row: Row, asked: float | None) -> str | None:
    """The target as the table shows it: ``< 100 ms``, ``≥ 2.00× Faust noop``."""
    if row.target is None:
        return None
    op, bound = row.target
    on_ratio = op.startswith("ratio")
    symbol = TARGET_OPS[op.removeprefix("ratio")][0]
    if on_ratio:
        assert row.baseline is not None, f"{row.key}: a ratio target needs a baseline"
        text = f"{symbol} {bound:.2f}× {BASELINE_NAMES[row.baseline]}"
    else:
        text = f"{symbol} {bound:,g} {row.unit}"
    if row.rate is not None and asked is not None:
        text += f" at {asked:,.0f}/s"
    if row.stretch:
        text += " (stretch)"
    return text


def table(results: Results) -> list[dict[str, Any]]:
    """The table's rows, each with its target's status.

    status: ``met``; ``missed``; ``missed (generator)`` (the load generator issued less
    than ``GENERATOR_SHARE`` of the rate asked, so the figure says nothing of the
    target); ``not measured`` (the figure, its baseline or the generator's rate is
    missing); None for a row without a target. ``met`` is True, False or None to match.
    """
    rows = []
    for row in TABLE:
        value = measured(results.figures.get(row.key))
        baseline = measured(results.figures.get(row.baseline)) if row.baseline else None
        ratio = value / baseline if value is not None and baseline else None
        issued = asked = None
        if row.rate is not None:
            issued = measured(results.figures.get(row.rate[0]))
            asked = measured(results.figures.get(row.rate[1]))
        status: str | None = None
        target_on: str | None = None
        if row.target is not None:
            op, bound = row.target
            target_on = "ratio" if op.startswith("ratio") else "value"
            compared = ratio if target_on == "ratio" else value
            if compared is None or (row.rate is not None and (issued is None or not asked)):
                status = "not measured"
            elif issued is not None and asked and issued < GENERATOR_SHARE * asked:
                status = "missed (generator)"
            elif TARGET_OPS[op.removeprefix("ratio")][1](compared, bound):
                status = "met"
            else:
                status = "missed"
        rows.append(
            {
                "figure": row.label,
                "key": row.key,
                "value": value,
                "unit": row.unit,
                "baseline": row.baseline,
                "baseline_value": baseline,
                "ratio": ratio,
                "target": target_text(row, asked),
                "target_on": target_on,
                "stretch": row.stretch,
                "rate_issued": issued,
                "rate_asked": asked,
                "status": status,
                "met": None if status in (None, "not measured") else status == "met",
            }
        )
    return rows


def summary(rows: list[dict[str, Any]]) -> str:
    """One line: how many targets were met, missed, not measured (stretch apart)."""
    targets = [row for row in rows if row["status"] is not None and not row["stretch"]]
    met = sum(row["status"] == "met" for row in targets)
    missed = [row for row in targets if row["status"].startswith("missed")]
    by_generator = sum(row["status"] == "missed (generator)" for row in missed)
    unmeasured = sum(row["status"] == "not measured" for row in targets)
    text = f"targets: {met} met, {len(missed)} missed"
    if by_generator:
        text += f" ({by_generator} because the load generator fell short)"
    text += f", {unmeasured} not measured, of {len(targets)}"
    stretch = [row["status"] for row in rows if row["status"] is not None and row["stretch"]]
    if stretch:
        text += "; stretch: " + ", ".join(stretch)
    return text


def status_text(row: dict[str, Any]) -> str:
    status = row["status"]
    if status is None:
        return ""
    if status == "met":
        return "met"
    if status == "missed (generator)":
        return (
            f"MISSED (generator: {row['rate_issued']:,.0f}/s issued of "
            f"{row['rate_asked']:,.0f}/s asked)"
        )
    if status == "missed":
        return "MISSED"
    return "not measured"


def render(rows: list[dict[str, Any]], results: Results) -> str:
    lines = [
        f"{'figure':54} {'value':>16}  {'baseline':>26} {'ratio':>8}  {'target':30} status",
        "-" * 150,
    ]
    for row in rows:
        baseline = ""
        if row["baseline"]:
            value = format_value(row["baseline_value"], "").strip()
            baseline = f"{BASELINE_NAMES[row['baseline']]} {value}"
        ratio = f"{row['ratio']:.2f}×" if row["ratio"] is not None else ""
        lines.append(
            f"{row['figure']:54} {format_value(row['value'], row['unit']):>16}  "
            f"{baseline:>26} {ratio:>8}  {row['target'] or '':30} {status_text(row)}".rstrip()
        )
    lines.append(
        "ratio = value ÷ baseline, both from this run; a target on a load generator's "
        f"figure counts only if it issued ≥ {GENERATOR_SHARE * 100:.0f} % of the rate asked"
    )
    lines.append(summary(rows))
    for name, error in results.errors.items():
        lines.append(f"error in {name}: {error.splitlines()[0]}")
    return "\n".join(lines)


def main(
    workers: Annotated[int, typer.Option(help="workers in the wave (~4.4 scans each)")] = 100_000,
    latency_rate: Annotated[float, typer.Option(help="offered scans/s in the latency run")] = 2000,
    latency_seconds: Annotated[float, typer.Option(help="length of the latency run")] = 20,
    faust_limit: Annotated[
        int, typer.Option(help="scans for the per-scan-transaction Faust baseline")
    ] = 20_000,
    api_seconds: Annotated[float, typer.Option(help="length of each API run")] = 10,
    lookup_rate: Annotated[float, typer.Option(help="lookup requests/s")] = 1000,
    scans_rate: Annotated[float, typer.Option(help="one-scan POST /v1/scans requests/s")] = 200,
    seed: Annotated[
        int | None,
        typer.Option(
            help="seed of the waves (default: a new one each run, printed: a run repeated "
            "on the same servers must not send scan_ids they already hold)"
        ),
    ] = None,
    export_workers: Annotated[
        int, typer.Option(help="workers on the not-back list exported as CSV and XLSX (0: skip)")
    ] = 29_400,
    tracker_only: Annotated[
        bool, typer.Option(help="only the tracker figures (end to end, latency, RSS)")
    ] = False,
    api_only: Annotated[bool, typer.Option(help="only the API figures")] = False,
    latency_only: Annotated[
        int,
        typer.Option(
            help="only the latency run at --latency-rate, this many times on one tracker "
            "(figures of the median p99 run)",
            min=0,
        ),
    ] = 0,
    seed_workers_count: Annotated[
        int,
        typer.Option(
            "--seed-workers",
            help="finished journeys put in PostgreSQL first (set-based; e.g. 1000000)",
            min=0,
        ),
    ] = 0,
    out: Annotated[Path, typer.Option(help="where the JSON goes")] = Path(
        "bench-results/bench.json"
    ),
) -> None:
    """Measure the tracker, its limits and baselines, and the API in one run."""
    work_dir = Path(tempfile.mkdtemp(prefix="returnloop-bench-"))
    began = datetime.now(UTC)
    if seed is None:
        seed = random.randrange(1_000_000)
    print(f"seed of the waves: {seed} (--seed {seed} repeats them)", flush=True)
    try:
        with bench_servers(work_dir) as servers:
            results = asyncio.run(
                run(
                    servers,
                    work_dir,
                    workers=workers,
                    latency_rate=latency_rate,
                    latency_seconds=latency_seconds,
                    faust_limit=faust_limit,
                    api_seconds=api_seconds,
                    lookup_rate=lookup_rate,
                    scans_rate=scans_rate,
                    seed=seed,
                    export_workers=export_workers,
                    tracker_only=tracker_only,
                    api_only=api_only,
                    latency_only=latency_only,
                    seeded=seed_workers_count,
                )
            )
    finally:
        logs = Path(out).parent / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for log in work_dir.glob("*.log"):
            shutil.copy(log, logs / log.name)
        shutil.rmtree(work_dir, ignore_errors=True)
    rows = table(results)
    text = render(rows, results)
    print("\n" + text, flush=True)
    broker = (
        "Tansu (embedded, in-memory)"
        if servers.embedded_kafka
        else f"Kafka at {servers.kafka_bootstrap}"
    )
    report = {
        "started_at": began.isoformat(),
        "seconds": round((datetime.now(UTC) - began).total_seconds(), 1),
        "command": " ".join(["python -m tests.bench.bench", *sys.argv[1:]]),
        "table": rows,
        "figures": results.figures,
        "errors": results.errors,
        "notes": results.notes,
        "versions": {
            **versions(),
            "broker": broker,
            "postgresql": results.notes.get("postgresql", "?")
            + (" (embedded pgserver)" if servers.embedded_postgres else ""),
        },
        "machine": machine(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten to {out}", flush=True)
    if results.errors:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
