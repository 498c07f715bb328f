"""Send a generated stream, keep tracker processes running, inject faults, check the end.

The checks, after every scenario:
- every message sent is on ``scans.accepted`` or ``scans.rejected`` (by its
  source position), never both: accepted + rejected = sent;
- every broken message, and only those, is on ``scans.rejected``;
- exactly once: ``applied_scans`` holds each valid scan once, and each
  worker's ``scan_count`` is the number of its distinct scans;
- each worker's state (stage, status, colour, loop flags, open alerts) equals
  the oracle's: the pure domain folded over the same scans in event-time order;
- nothing announced is lost or invented: each worker's ``loop.transitions`` (second
  copies dropped by ``message_id``) form one unbroken chain from the first stage to
  the oracle's, and its ``loop.alerts`` end as its stored alerts, each announced.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from shared import topics
from shared.domain.model import LoopState
from shared.identity import Pseudonymiser
from shared.service_layer.messages import AcceptedScan
from tests.faults.stream import Message, Stream
from tests.support.oracle import expected_states
from tests.support.processes import ServiceProcess

REPO = Path(__file__).resolve().parents[2]
Source = tuple[str, int, int]
# While PostgreSQL is down or refusing, the suite's own queries fail too.
DATABASE_DOWN = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


def deploy(script: str, *args: str, log: Path) -> None:
    """Run one of the deploy scripts (restart a server, refuse connections)."""
    with log.open("ab") as out:
        subprocess.run(
            [str(REPO / "deploy" / script), *args],
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=180,
        )


async def _stop(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer without a group; aiokafka may raise the CancelledError of its own
    helper task when that task had not started yet (a race in NoGroupCoordinator.close)."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        partitions = await producer.partitions_for(topic)  # fetches the metadata
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await _stop(consumer)


async def read_since(
    bootstrap: str, topic: str, start: dict[int, int], within: float = 60
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on ``topic`` from ``start`` (partition -> offset) to its end now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in start]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, start[tp.partition])
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + within
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            batches = await consumer.getmany(timeout_ms=1000, max_records=20_000)
            for messages in batches.values():
                records.extend(messages)
        return records
    finally:
        await _stop(consumer)


async def send(bootstrap: str, messages: list[Message]) -> dict[Source, Message]:
    """Produce the messages in order; return each by where it landed."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(message.topic, message.value, key=message.key)
            for message in messages
        ]
        landed = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {
        (meta.topic, meta.partition, meta.offset): message
        for meta, message in zip(landed, messages, strict=True)
    }


def cut_before_the_last(stream: Stream, share: float) -> int:
    """How many of the stream's messages to send first so that ``share`` of its distinct
    scans is first sent only after them: the trackers cannot finish before the rest is sent,
    so a fault injected before then lands mid-stream whatever the trackers' speed."""
    keep = len(stream.bodies) - int(len(stream.bodies) * share)
    seen: set[str] = set()
    for index, message in enumerate(stream.messages):
        if message.valid:
            seen.add(orjson.loads(message.value)["scan_id"])
            if len(seen) == keep:
                return index + 1
    return len(stream.messages)


class Trackers:
    """The scenario's tracker processes, with a supervisor's habit: one that exits is restarted."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.processes: list[ServiceProcess] = []
        self.started = 0
        self.killed = 0
        self.exited = 0  # ended on their own (and were restarted)

    def start(self) -> ServiceProcess:
        self.started += 1
        log = self.log_dir / f"tracker-{self.started}.log"
        process = ServiceProcess(["tracker"], self.env, log).start()
        self.processes.append(process)
        return process

    def kill(self, process: ServiceProcess) -> None:
        process.kill()
        self.processes.remove(process)
        self.killed += 1

    def supervise(self) -> None:
        for process in list(self.processes):
            if not process.running:
                self.processes.remove(process)
                self.exited += 1
                self.start()

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop()

    def count_in_logs(self, text: str) -> int:
        return sum(
            path.read_text(errors="replace").count(text)
            for path in self.log_dir.glob("tracker-*.log")
        )

    def log_tails(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-2000:]}"
            for path in sorted(self.log_dir.glob("tracker-*.log"))
        )


@dataclass
class Scenario:
    """One run: a stream, the trackers, and what was injected into it."""

    name: str
    stream: Stream
    pool: asyncpg.Pool
    pseudonymiser: Pseudonymiser
    bootstrap: str
    trackers: Trackers
    refs: list[str] = field(default_factory=list)
    sent: dict[Source, Message] = field(default_factory=dict)
    starts: dict[str, dict[int, int]] = field(default_factory=dict)
    injected: list[str] = field(default_factory=list)
    began: float = field(default_factory=time.monotonic)
    # The share of the distinct scans held back until the faults are injected (see
    # ``cut_before_the_last``), and how many messages have been sent so far.
    held_back: float = 0.1
    cut: int = 0

    async def send_stream(self) -> None:
        """Send the stream but its last ``held_back`` share; ``send_rest`` sends that."""
        for topic in (topics.ACCEPTED, topics.REJECTED, topics.TRANSITIONS, topics.ALERTS):
            self.starts[topic] = await end_offsets(self.bootstrap, topic)
        self.refs = sorted({self.pseudonymiser.worker_ref(n) for n in self.stream.id_numbers})
        self.cut = cut_before_the_last(self.stream, self.held_back)
        self.sent = await send(self.bootstrap, self.stream.messages[: self.cut])

    async def send_rest(self) -> int:
        """Send the messages held back; return how many."""
        rest = self.stream.messages[self.cut :]
        self.sent |= await send(self.bootstrap, rest)
        self.cut = len(self.stream.messages)
        return len(rest)

    async def applied(self) -> int | None:
        """Scans of this run in applied_scans; None while the database cannot be asked."""
        try:
            return int(
                await self.pool.fetchval(
                    "SELECT count(*) FROM applied_scans WHERE worker_ref = ANY($1::text[])",
                    self.refs,
                    timeout=10,
                )
            )
        except DATABASE_DOWN:
            return None

    async def wait_applied(self, fraction: float, within: float = 150) -> int:
        """Supervise the trackers until ``fraction`` of the distinct scans is applied."""
        wanted = len(self.stream.bodies) * fraction
        deadline = time.monotonic() + within
        while True:
            self.trackers.supervise()
            applied = await self.applied()
            if applied is not None and applied >= wanted:
                return applied
            assert time.monotonic() < deadline, (
                f"{self.name}: {applied} of {len(self.stream.bodies)} scans applied after "
                f"{within} s (waiting for {fraction:.0%})\n{self.trackers.log_tails()}"
            )
            await asyncio.sleep(0.1)

    async def hold(self, seconds: float) -> None:
        """Keep supervising for a while (e.g. while a server is away)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.trackers.supervise()
            await asyncio.sleep(0.2)

    async def mid_stream(self, fraction: float, what: str, within: float = 150) -> int:
        """Wait for ``fraction`` of the scans, check the fault lands mid-stream, note it."""
        assert self.cut < len(self.stream.messages), (
            f"{self.name}: {what} after the whole stream was sent"
        )
        assert fraction <= 1 - self.held_back, (
            f"{self.name}: {fraction:.0%} of the scans cannot be applied before the held-back "
            f"{self.held_back:.0%} is sent"
        )
        applied = await self.wait_applied(fraction, within)
        return self._noted_mid_stream(what, applied, f"{what} at")

    async def until_logged(self, text: str, times: int, what: str, within: float = 240) -> int:
        """Supervise the trackers until their logs hold ``text`` ``times`` times (a fault
        injected inside a tracker, counted where it happened rather than guessed from how
        far the stream got); check it landed mid-stream and note it."""
        deadline = time.monotonic() + within
        while (seen := self.trackers.count_in_logs(text)) < times:
            self.trackers.supervise()
            assert time.monotonic() < deadline, (
                f"{self.name}: {text} logged {seen} of {times} times after {within} s, "
                f"{await self.applied()} of {len(self.stream.bodies)} scans applied\n"
                f"{self.trackers.log_tails()}"
            )
            await asyncio.sleep(0.1)
        return self._noted_mid_stream(what, await self.applied(), f"{what} ({seen} times) by")

    def _noted_mid_stream(self, what: str, applied: int | None, note: str) -> int:
        """Check a fault landed before the stream ended; note it for the report."""
        assert applied is not None and applied < len(self.stream.bodies), (
            f"{self.name}: the stream ended before {what}"
        )
        self.injected.append(f"{note} {applied}/{len(self.stream.bodies)} applied")
        return applied

    async def finish_and_check(self, report: Callable[[str], None]) -> dict[str, Any]:
        if self.cut < len(self.stream.messages):
            rest = await self.send_rest()
            self.injected.append(
                f"the last {rest} messages ({self.held_back:.0%} of the scans) sent after that"
            )
        await self.wait_applied(1.0, within=240)
        dead_letters = await self._wait_dead_letters()
        await self._wait_outbox_empty()
        self.trackers.stop_all()
        accepted = await self._accepted_sources()
        result = self._check_sorting(accepted, dead_letters)
        await self._check_exactly_once_and_states()
        result |= await self._check_announcements()
        result |= {
            "scenario": self.name,
            "workers": len(self.refs),
            "distinct_scans": len(self.stream.bodies),
            "duplicates": self.stream.duplicates,
            "out_of_order": self.stream.out_of_order,
            "trackers_started": self.trackers.started,
            "killed": self.trackers.killed,
            "exited_and_restarted": self.trackers.exited,
            # The fault was felt: batches that failed and were retried, commits refused.
            "batch_retries": self.trackers.count_in_logs("batch failed; will retry"),
            "commits_refused": self.trackers.count_in_logs("offset commit failed"),
            "injected": self.injected,
            "seconds": round(time.monotonic() - self.began, 1),
        }
        report(
            f"{self.name}: sent {result['sent']} messages ({result['workers']} workers, "
            f"{result['distinct_scans']} distinct scans, {result['duplicates']} duplicates, "
            f"{result['out_of_order']} out of order), accepted {result['accepted']}, "
            f"rejected {result['rejected']} {dict(result['reasons'])}; trackers started "
            f"{result['trackers_started']}, SIGKILLed {result['killed']}, exited and restarted "
            f"{result['exited_and_restarted']}; batches retried {result['batch_retries']}, "
            f"commits refused {result['commits_refused']}; injected: {'; '.join(self.injected) or 'nothing'}; "
            f"applied exactly once, states = oracle; announced {result['transitions']} "
            f"transitions and {result['alerts']} alert messages ({result['second_copies']} "
            f"second copies dropped by message_id), none lost or invented; {result['seconds']} s"
        )
        return result

    async def _wait_dead_letters(self, within: float = 60) -> dict[Source, str]:
        wanted = {source for source, message in self.sent.items() if not message.valid}
        deadline = time.monotonic() + within
        while True:
            found = {}
            for record in await read_since(
                self.bootstrap, topics.REJECTED, self.starts[topics.REJECTED]
            ):
                headers = {name: value.decode() for name, value in record.headers}
                if not headers.get("source_partition", "").isdigit():
                    continue  # not read from a topic (an HTTP dead letter, another run's)
                source = (
                    headers["source_topic"],
                    int(headers["source_partition"]),
                    int(headers["source_offset"]),
                )
                if source in self.sent:
                    found[source] = headers["reason"]
            if set(found) >= wanted or time.monotonic() > deadline:
                return found
            await asyncio.sleep(1)

    async def _accepted_sources(self) -> set[Source]:
        sources = set()
        for record in await read_since(
            self.bootstrap, topics.ACCEPTED, self.starts[topics.ACCEPTED]
        ):
            item = AcceptedScan.from_bytes(record.value or b"")
            if item.source is not None:
                source = (item.source.topic, item.source.partition, item.source.offset)
                if source in self.sent:
                    sources.add(source)  # a tracker killed before its commit sends it again
        return sources

    def _check_sorting(
        self, accepted: set[Source], dead_letters: dict[Source, str]
    ) -> dict[str, Any]:
        sent = set(self.sent)
        broken = {source for source, message in self.sent.items() if not message.valid}
        rejected = set(dead_letters)
        assert not accepted & rejected, f"{self.name}: accepted and rejected: {accepted & rejected}"
        assert accepted | rejected == sent, (
            f"{self.name}: accepted {len(accepted)} + rejected {len(rejected)} "
            f"!= sent {len(sent)}; missing {sorted(sent - accepted - rejected)[:5]}"
        )
        assert rejected == broken, f"{self.name}: rejected {len(rejected)}, broken {len(broken)}"
        reasons = Counter(dead_letters.values())
        assert set(reasons) <= {"invalid_json", "id_number_checksum"}, reasons
        return {
            "sent": len(sent),
            "accepted": len(accepted),
            "rejected": len(rejected),
            "reasons": reasons,
        }

    async def _check_exactly_once_and_states(self) -> None:
        scan_ids = [
            row["scan_id"]
            for row in await self.pool.fetch(
                "SELECT scan_id FROM applied_scans WHERE worker_ref = ANY($1::text[])", self.refs
            )
        ]
        twice = [scan_id for scan_id, n in Counter(scan_ids).items() if n > 1]
        assert not twice, f"{self.name}: applied more than once: {twice[:5]}"
        expected_ids = {body["scan_id"] for body in self.stream.bodies}
        assert set(scan_ids) == expected_ids, (
            f"{self.name}: applied_scans has {len(scan_ids)} rows for {len(expected_ids)} "
            f"distinct scans; unexpected {sorted(set(scan_ids) - expected_ids)[:3]}, "
            f"missing {sorted(expected_ids - set(scan_ids))[:3]}"
        )
        now = datetime.now(UTC)
        oracle = expected_states(self.stream.bodies, self.pseudonymiser, now=now)
        scan_counts = Counter(
            self.pseudonymiser.worker_ref(b["id_number"]) for b in self.stream.bodies
        )
        rows = await self.pool.fetch(
            "SELECT worker_ref, stage, status, health_code, departed, boarded_trip_id, arrived, "
            "checked_in_enterprise_id, scan_count FROM loop_state "
            "WHERE worker_ref = ANY($1::text[])",
            self.refs,
        )
        open_alerts: dict[str, set[str]] = {ref: set() for ref in self.refs}
        for row in await self.pool.fetch(
            "SELECT worker_ref, kind FROM alerts WHERE open AND worker_ref = ANY($1::text[])",
            self.refs,
        ):
            open_alerts[row["worker_ref"]].add(row["kind"])
        assert len(rows) == len(self.refs), (
            f"{self.name}: {len(rows)} states, {len(self.refs)} workers"
        )
        wrong = []
        for row in rows:
            ref = row["worker_ref"]
            state = oracle[ref]
            want = (
                state.stage.value,
                state.status.value,
                state.health_code.value if state.health_code else None,
                state.departed,
                state.boarded_trip_id,
                state.arrived,
                state.checked_in_enterprise_id,
                scan_counts[ref],
                {kind.value for kind in state.open_alerts},
            )
            got = (*(row[column] for column in list(row.keys())[1:]), open_alerts[ref])
            if got != want:
                wrong.append((ref, got, want))
        assert not wrong, (
            f"{self.name}: {len(wrong)} of {len(rows)} workers differ from the oracle "
            f"(got, expected): {wrong[:3]}"
        )

    async def _wait_outbox_empty(self, within: float = 120) -> None:
        """Keep the trackers running until their relay has published everything."""
        deadline = time.monotonic() + within
        while True:
            self.trackers.supervise()
            waiting = await self.pool.fetchval("SELECT count(*) FROM outbox")
            if waiting == 0:
                return
            assert time.monotonic() < deadline, (
                f"{self.name}: {waiting} messages still in the outbox after {within} s\n"
                f"{self.trackers.log_tails()}"
            )
            await asyncio.sleep(0.2)

    async def _announced(self, topic: str) -> tuple[dict[str, list[dict[str, Any]]], int]:
        """This run's messages on ``topic`` per worker in partition order, second copies
        (same message_id) dropped; and how many were dropped."""
        mine = set(self.refs)
        seen: set[str] = set()
        second_copies = 0
        by_worker: dict[str, list[dict[str, Any]]] = {}
        for record in await read_since(self.bootstrap, topic, self.starts[topic]):
            body = orjson.loads(record.value or b"")
            if body.get("worker_ref") not in mine:
                continue
            headers = dict(record.headers or ())
            assert headers.get("message_id", b"").decode() == body["message_id"], body
            if body["message_id"] in seen:
                second_copies += 1
                continue
            seen.add(body["message_id"])
            by_worker.setdefault(body["worker_ref"], []).append(body)
        return by_worker, second_copies

    async def _check_announcements(self) -> dict[str, Any]:
        transitions, copies_t = await self._announced(topics.TRANSITIONS)
        alerts, copies_a = await self._announced(topics.ALERTS)
        states = {
            row["worker_ref"]: (row["stage"], row["status"])
            for row in await self.pool.fetch(
                "SELECT worker_ref, stage, status FROM loop_state WHERE worker_ref = ANY($1)",
                self.refs,
            )
        }
        first = LoopState()
        broken = []
        for ref in self.refs:
            at = (first.stage.value, first.status.value)
            for message in transitions.get(ref, []):
                if (message["previous_stage"], message["previous_status"]) != at:
                    broken.append((ref, at, message))
                    break
                at = (message["stage"], message["status"])
            else:
                if at != states[ref]:
                    broken.append((ref, at, states[ref]))
        assert not broken, (
            f"{self.name}: {len(broken)} workers' transitions are not one chain ending at "
            f"their state (worker, announced so far, next or stored): {broken[:3]}"
        )
        stored = {
            (row["worker_ref"], row["kind"], row["raised_at"]): row["open"]
            for row in await self.pool.fetch(
                "SELECT worker_ref, kind, raised_at, open FROM alerts WHERE worker_ref = ANY($1)",
                self.refs,
            )
        }
        told: dict[tuple[str, str, datetime], bool] = {}
        for ref, messages in alerts.items():
            for message in messages:
                raised_at = datetime.fromisoformat(message["raised_at"])
                told[(ref, message["kind"], raised_at)] = message["open"]
        assert told == stored, (
            f"{self.name}: announced alerts differ from the stored ones: "
            f"lost {sorted(set(stored) - set(told))[:3]}, "
            f"invented {sorted(set(told) - set(stored))[:3]}, "
            f"open differs {[k for k in stored if k in told and told[k] != stored[k]][:3]}"
        )
        return {
            "transitions": sum(map(len, transitions.values())),
            "alerts": sum(map(len, alerts.values())),
            "second_copies": copies_t + copies_a,
        }
