"""Kafka publisher: sends a batch and returns once the broker has every message."""

from __future__ import annotations

import asyncio
import functools
import itertools
import struct
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

from shared.service_layer.ports import Message

# Fewer messages than this go through send(), more into batches of their own.
SMALL_PUBLISH = 64

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's key hash (``org.apache.kafka.common.utils.Utils.murmur2``).

    The same partition for the same key as the Java client and aiokafka's
    default partitioner, in a quarter of the latter's time.
    """
    length = len(data)
    h = 0x9747B28C ^ length
    whole = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra >= 3:
        h ^= data[whole + 2] << 16
    if extra >= 2:
        h ^= data[whole + 1] << 8
    if extra >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


@functools.lru_cache(maxsize=8192)
def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partition for a key among ``partitions`` partitions.

    Cached: a worker's scan, its transitions and alerts share a key, within a batch
    or two. Not more: at 65,536 entries the cache held ~13 MB once full, which the
    soak saw as the live heap creeping for the 20 minutes it took to fill.
    """
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class KafkaPublisher:
    """aiokafka producer with acks=all; one await per batch, not per message.

    Messages are partitioned here (Kafka's key hash) and appended to one record
    batch per partition, so a message costs an append, not a ``send`` with its
    own future; a partition keeps the order of ``messages``.
    """

    def __init__(
        self, bootstrap: str, *, client_id: str = "returnloop", linger_ms: int = 5
    ) -> None:
        # ``linger_ms``: how long a send() waits for others to share its produce
        # request (the API's concurrent requests do); 0 where publishes come one at
        # a time (the tracker's batches), which lingering only delays.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            linger_ms=linger_ms,
            max_batch_size=512 * 1024,
        )
        self._round_robin = itertools.count()

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        if not messages:
            return
        if len(messages) < SMALL_PUBLISH:
            # A few messages (an API request's): send() appends them to the batch
            # other callers are filling, so concurrent requests share produce
            # requests; a batch of its own per call would queue behind the others.
            sent = [
                await self._producer.send(topic, value=value, key=key, headers=headers)
                for key, value, headers in messages
            ]
            await asyncio.gather(*sent)
            return
        count = len(await self._producer.partitions_for(topic))
        batches: dict[int, BatchBuilder] = {}
        batches_sent: list[asyncio.Future[object]] = []
        for key, value, headers in messages:
            if key is None:
                partition = next(self._round_robin) % count
            else:
                partition = partition_for(key, count)
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = self._producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=headers or []) is None:
                # Full: send it, and start the partition's next batch with this message.
                batch.close()
                batches_sent.append(
                    await self._producer.send_batch(batch, topic, partition=partition)
                )
                batch = batches[partition] = self._producer.create_batch()
                if (
                    batch.append(key=key, value=value, timestamp=None, headers=headers or [])
                    is None
                ):
                    raise ValueError(f"a message of {len(value):,} bytes exceeds the batch size")
        for partition, batch in batches.items():
            # Closed, it goes out at once: an open batch lingers (``linger_ms``) for
            # send()s to join it, and this one is complete.
            batch.close()
            batches_sent.append(await self._producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*batches_sent)

    async def reachable(self) -> bool:
        """Whether the broker answers a metadata request within two seconds."""
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), 2)
        except Exception:
            return False
        return True
