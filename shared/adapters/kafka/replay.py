"""Read topics from a moment to their current end, batch by batch, outside any group.

``returnloop replay-accepted`` uses it after a restore: the keyed topics past
validation (``scans.accepted``, ``healthcode.accepted``, ``dispositions.accepted``)
hold everything the tracker accepted; what a restored database lacks is read
again from a moment before its dump and applied (what it already holds is a
``scan_id`` seen before and changes nothing). No consumer group is joined or
moved: the trackers' own groups are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.adapters.kafka.consumer import input_records
from shared.service_layer.ports import BatchHandler


@dataclass(frozen=True)
class ReplayReport:
    records: int
    partitions: int


async def replay_since(
    bootstrap: str,
    topic_names: Sequence[str],
    since: datetime,
    handler: BatchHandler,
    *,
    max_records: int = 2000,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReplayReport:
    """Hand every record of ``topic_names`` written at or after ``since`` (by its Kafka
    timestamp), up to the end of each partition (at least its end as this starts), to
    ``handler``, a batch at a time; ``on_progress(done, total)`` after each batch. A
    failing handler stops the replay (nothing is committed anywhere: it can simply be
    run again)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        client_id="returnloop-replay",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        # The consumer's cached metadata knows only topics it was asked about; the
        # cluster's whole metadata, fetched once, names every partition.
        cluster = await consumer._client.fetch_all_metadata()
        missing = [name for name in topic_names if name not in cluster.topics()]
        if missing:
            raise LookupError(f"no such topic: {', '.join(missing)}")
        partitions = [
            TopicPartition(name, partition)
            for name in topic_names
            for partition in sorted(cluster.partitions_for_topic(name) or ())
        ]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.offsets_for_times(
            {tp: int(since.timestamp() * 1000) for tp in partitions}
        )
        total = 0
        wanted: dict[TopicPartition, int] = {}
        for tp in partitions:
            found = starts.get(tp)
            if found is None:  # nothing that recent
                continue
            consumer.seek(tp, found.offset)
            wanted[tp] = ends[tp]
            total += max(0, ends[tp] - found.offset)
        consumer.pause(*(tp for tp in partitions if tp not in wanted))
        done = 0
        while wanted:
            fetched = await consumer.getmany(*wanted, timeout_ms=1000, max_records=max_records)
            # Only the partitions asked for come back (the others are paused too).
            records = input_records(fetched)
            if records:
                await handler(records)
                done += len(records)
                if on_progress is not None:
                    on_progress(done, max(done, total))
            # A partition is done once it is past its end as this started and a fetch
            # found nothing more: a broker's end offset may lag what a fetch returns
            # (Tansu's does), and whatever was written meanwhile is applied too.
            for tp in list(wanted):
                if tp not in fetched and await consumer.position(tp) >= wanted[tp]:
                    consumer.pause(tp)
                    del wanted[tp]
        return ReplayReport(records=done, partitions=len(partitions))
    finally:
        await consumer.stop()
