"""Kafka publisher: sends a batch and returns once the broker has every message."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer

Message = tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]


class Publisher(Protocol):
    """Where the tracker sends messages; ``publish`` returns when they are durable."""

    async def publish(self, topic: str, messages: Sequence[Message]) -> None: ...


class KafkaPublisher:
    """aiokafka producer with acks=all; one await per batch, not per message."""

    def __init__(self, bootstrap: str, *, client_id: str = "returnloop") -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            linger_ms=5,
            max_batch_size=512 * 1024,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        if not messages:
            return
        futures = [
            await self._producer.send(topic, value=value, key=key, headers=headers)
            for key, value, headers in messages
        ]
        await asyncio.gather(*futures)

    async def reachable(self) -> bool:
        """Whether the broker answers a metadata request within two seconds."""
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), 2)
        except Exception:
            return False
        return True
