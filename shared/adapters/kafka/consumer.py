"""Batch consumption with plain aiokafka: offsets are committed only after the handler.

This is the tracker's hot path. Faust's per-message machinery caps a process
at a few thousand messages a second and its offset handling on agent errors
is fragile, so the scan streams run here instead: ``getmany`` a batch, hand it
to one handler (one PostgreSQL transaction), commit the batch's offsets (while
the next batch is fetched and handled; commits leave in batch order). A
handler that raises gets the same records again after a back-off: nothing is
skipped, and idempotency on ``scan_id`` makes the redelivery harmless.

With ``depth`` > 1 the next batch is fetched and handled while the previous one
still waits on PostgreSQL, so the process's one core decodes and validates
while the database writes; offsets are still committed in order, a batch's
only after it and every batch before it succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import Gauge

from shared.service_layer.ports import BatchHandler, InputRecord

logger = logging.getLogger(__name__)

Fetched = dict[TopicPartition, list[ConsumerRecord]]

# A batch taken from aiokafka's buffer (``getmany`` returned within BUFFERED_S) whose
# newest record is older than STALE_MS is topped up (``BatchConsumer._top_up``) by a
# ``getmany`` of at most TOP_UP_MS.
STALE_MS = 5
BUFFERED_S = 0.001
TOP_UP_MS = 5


def worth_topping_up(
    *, count: int, max_records: int, newest_ms: int, now_ms: float, waited_s: float
) -> bool:
    """Whether more may have reached the broker since this batch was fetched.

    Only a batch that was waiting in the buffer can be stale: a ``getmany`` that had
    to wait returned what a fetch brought just now (however old its records are,
    e.g. lingered in their producer). A full batch is a backlog: nothing to add.
    """
    return count < max_records and waited_s < BUFFERED_S and now_ms - newest_ms >= STALE_MS


def partition_lag(
    highwaters: Mapping[TopicPartition, int | None], positions: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Records between each position and its partition's end (never negative).

    Partitions whose end is not known yet (nothing fetched from them) are left out.
    """
    return {
        tp: max(0, highwater - positions[tp])
        for tp, highwater in highwaters.items()
        if highwater is not None and tp in positions
    }


def input_records(fetched: Fetched) -> list[InputRecord]:
    """What ``getmany`` returned, as the handlers' records, partition by partition."""
    return [
        InputRecord(
            topic=tp.topic,
            partition=tp.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            timestamp_ms=message.timestamp or 0,
            headers=tuple(message.headers or ()),
        )
        for tp, messages in fetched.items()
        for message in messages
    ]


class BatchConsumer:
    """Consume ``topics`` in one consumer group, one handler call per batch."""

    def __init__(
        self,
        *,
        name: str,
        bootstrap: str,
        group_id: str,
        topics: Sequence[str],
        handler: BatchHandler,
        max_records: int = 2000,
        timeout_ms: int = 200,
        retry_backoff_s: float = 0.5,
        retry_backoff_max_s: float = 10.0,
        lag: Gauge | None = None,
        depth: int = 1,
    ) -> None:
        if depth < 1:
            raise ValueError("depth is at least 1")
        self.name = name
        self.depth = depth
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = tuple(topics)
        self.handler = handler
        self.max_records = max_records
        self.timeout_ms = timeout_ms
        self.retry_backoff_s = retry_backoff_s
        self.retry_backoff_max_s = retry_backoff_max_s
        self.lag = lag
        self.batches_committed = 0
        # The last batch's offset commit, still under way while the next batch is fetched.
        self._committing: asyncio.Task[None] | None = None
        self._lag_labels: set[tuple[str, str, str]] = set()
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            client_id=f"returnloop-{self.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # aiokafka's default (was 4 MiB): in a backlog up to this much per owned
            # partition waits in memory, in every process; a batch needs far less.
            max_partition_fetch_bytes=1024 * 1024,
            # Short sessions: a dead tracker's partitions move on within seconds
            # (and Tansu's first join waits half a session).
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            # How long a broker may hold a fetch that found nothing new. Apache
            # Kafka answers as soon as a record is there anyway; on Tansu the
            # default 500 ms showed in every hop's latency (a scan then took two:
            # intake, then apply): p50 557 -> 92 ms in the bench. Shorter waits
            # measured worse: more empty fetches for both to answer.
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        self.ready.set()
        logger.info("consumer started", extra={"consumer": self.name, "topics": self.topics})
        in_flight: deque[tuple[asyncio.Task[bool], Fetched]] = deque()
        try:
            while not self._stopping.is_set():
                if len(in_flight) >= self.depth:
                    await self._finish_oldest(consumer, in_flight)
                    continue
                asked = time.monotonic()
                fetched = await consumer.getmany(
                    timeout_ms=self.timeout_ms, max_records=self.max_records
                )
                if fetched:
                    fetched = await self._top_up(consumer, fetched, time.monotonic() - asked)
                await self._observe_lag(consumer)
                while in_flight and in_flight[0][0].done():
                    await self._finish_oldest(consumer, in_flight)
                if not fetched:
                    continue
                records = input_records(fetched)
                in_flight.append((asyncio.create_task(self._handle(records)), fetched))
            while in_flight:  # stopping: what is under way finishes (or gives up) first
                await self._finish_oldest(consumer, in_flight)
            await self._committed()
        finally:
            for task, _ in in_flight:
                task.cancel()
            await asyncio.gather(*(task for task, _ in in_flight), return_exceptions=True)
            if self._committing is not None:
                await asyncio.gather(self._committing, return_exceptions=True)
                self._committing = None
            self._forget_lag(set())
            await consumer.stop()
            logger.info("consumer stopped", extra={"consumer": self.name})

    async def _top_up(
        self, consumer: AIOKafkaConsumer, fetched: Fetched, waited_s: float
    ) -> Fetched:
        """``fetched`` and what reached the broker after it was fetched, if it is stale.

        aiokafka fetches a partition's next records as soon as the previous ones are
        taken, then nothing more of it until those are taken too. So what reaches the
        broker while a batch is handled stays there, and the next ``getmany`` returns
        records fetched a whole batch earlier: each scan waited two batches, not one.
        Such a batch (``worth_topping_up``) gets one more short ``getmany`` (a fetch
        round trip), which adds what came since, in offset order per partition.
        """
        count = sum(len(messages) for messages in fetched.values())
        newest = max(messages[-1].timestamp or 0 for messages in fetched.values())
        if not worth_topping_up(
            count=count,
            max_records=self.max_records,
            newest_ms=newest,
            now_ms=time.time() * 1000,
            waited_s=waited_s,
        ):
            return fetched
        more = await consumer.getmany(timeout_ms=TOP_UP_MS, max_records=self.max_records - count)
        for tp, messages in more.items():
            fetched.setdefault(tp, []).extend(messages)
        return fetched

    async def _handle(self, records: list[InputRecord]) -> bool:
        """Hand ``records`` to the handler until it succeeds (True), backing off after
        each failure; False if the consumer is stopped first (nothing to commit)."""
        failures = 0
        while True:
            try:
                await self.handler(records)
                return True
            except Exception:
                failures += 1
                delay = min(self.retry_backoff_s * 2 ** (failures - 1), self.retry_backoff_max_s)
                logger.exception(
                    "batch failed; will retry the same records",
                    extra={"consumer": self.name, "records": len(records), "retry_in_s": delay},
                )
                await self._sleep(delay)
                if self._stopping.is_set():
                    return False

    async def _finish_oldest(
        self, consumer: AIOKafkaConsumer, in_flight: deque[tuple[asyncio.Task[bool], Fetched]]
    ) -> None:
        """Wait for the oldest batch; commit its offsets if it was applied. Batches finish
        in the order they were fetched, so no commit passes a batch not yet applied."""
        task, fetched = in_flight[0]
        handled = await task
        in_flight.popleft()
        if handled:
            # The commit is a round trip to the group's coordinator that the next batch
            # need not wait for: it goes on while that batch is fetched and handled.
            # Commits still leave one at a time, in batch order; a crash before one
            # lands re-reads the batch, which the scan_id check makes harmless.
            await self._committed()
            self._committing = asyncio.create_task(self._commit(consumer, fetched))
        else:
            # Given up (stopping): none of the later batches may be committed either.
            for later, _ in in_flight:
                later.cancel()
            await asyncio.gather(*(later for later, _ in in_flight), return_exceptions=True)
            in_flight.clear()

    async def _observe_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Set the lag gauge for the partitions this consumer owns now, and only those."""
        if self.lag is None:
            return
        highwaters: dict[TopicPartition, int | None] = {}
        positions: dict[TopicPartition, int] = {}
        for tp in consumer.assignment():
            try:
                highwaters[tp] = consumer.highwater(tp)
                # A known end means a fetch happened, so the position is valid: no wait.
                if highwaters[tp] is not None:
                    positions[tp] = await consumer.position(tp)
            except (IllegalStateError, AssertionError):
                pass  # revoked meanwhile
        current: set[tuple[str, str, str]] = set()
        for tp, lag in partition_lag(highwaters, positions).items():
            labels = (self.name, tp.topic, str(tp.partition))
            self.lag.labels(*labels).set(lag)
            current.add(labels)
        self._forget_lag(current)

    def _forget_lag(self, keep: set[tuple[str, str, str]]) -> None:
        """Drop partitions this consumer no longer owns: their new owner reports them."""
        if self.lag is not None:
            for labels in self._lag_labels - keep:
                self.lag.remove(*labels)
        self._lag_labels = keep

    async def _committed(self) -> None:
        """Wait for the offset commit under way, if any (it raises what it raised)."""
        if self._committing is not None:
            committing, self._committing = self._committing, None
            await committing

    async def _commit(
        self,
        consumer: AIOKafkaConsumer,
        fetched: Fetched,
    ) -> None:
        offsets = {tp: messages[-1].offset + 1 for tp, messages in fetched.items()}
        try:
            await consumer.commit(offsets)
            self.batches_committed += 1
        except (CommitFailedError, IllegalStateError, KafkaError) as error:
            # A rebalance took the partitions: the next owner re-reads from the last
            # committed offset and the scan_id check makes the re-read harmless.
            logger.warning(
                "offset commit failed; records will be re-read",
                extra={"consumer": self.name, "error": repr(error)},
            )

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            pass
