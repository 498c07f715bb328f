"""The outbox relay: publish what the apply transactions committed, then forget it.

Transitions and alerts are written to the outbox in the transaction that
decided them (``shared.service_layer.handlers``). The relay hands the oldest
to the publisher in the order they were written, and deletes them only once
the broker has every one: a crash at any point delivers each message at least
once, and a second copy carries the same ``message_id`` for consumers to drop.

One relay runs at a time (the store's turn); a tracker's relay is woken after
each of its commits and looks again every ``interval_s`` for what other
processes wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from shared.service_layer.messages import OutboxMessage
from shared.service_layer.ports import Outbox, Publisher

if TYPE_CHECKING:
    from shared.adapters.metrics import Metrics

logger = logging.getLogger(__name__)


def _no_fault(point: str) -> None:
    """Where a fault can be injected (the fault suite kills the process here)."""


class Relay:
    def __init__(
        self,
        outbox: Outbox,
        publisher: Publisher,
        *,
        limit: int = 5000,
        metrics: Metrics | None = None,
        fault_point: Callable[[str], None] = _no_fault,
    ) -> None:
        self.outbox = outbox
        self.publisher = publisher
        self.limit = limit
        self.metrics = metrics
        self.fault_point = fault_point
        self.wake = asyncio.Event()

    async def _publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Publish each topic's messages in outbox order (a worker's keep their order)."""
        by_topic: dict[str, list[OutboxMessage]] = {}
        for message in messages:
            by_topic.setdefault(message.topic, []).append(message)
        await asyncio.gather(
            *(
                self.publisher.publish(topic, [m.to_message() for m in items])
                for topic, items in by_topic.items()
            )
        )
        self.fault_point("relay_published")

    async def drain(self) -> int:
        """Relay until the outbox is empty (or another relay has the turn); return how many."""
        total = 0
        while True:
            relayed = await self.outbox.relay(self._publish, limit=self.limit)
            total += relayed
            if self.metrics is not None and relayed:
                self.metrics.outbox_relayed_total.inc(relayed)
            if relayed < self.limit:
                return total

    async def run(self, stopping: asyncio.Event, *, interval_s: float = 1.0) -> None:
        """Drain whenever woken, and every ``interval_s``; a failed round is retried."""
        failures = 0
        while not stopping.is_set():
            self.wake.clear()
            try:
                await self.drain()
                failures = 0
            except Exception:
                failures += 1
                logger.exception(
                    "outbox relay failed; the messages stay and will be relayed again",
                    extra={"failures": failures},
                )
            delay = interval_s if failures == 0 else min(10.0, interval_s * 2**failures)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(stopping, self.wake, failed=failures > 0), delay)


async def _first(stopping: asyncio.Event, wake: asyncio.Event, *, failed: bool) -> None:
    """Return when stopping, or when woken (a failing relay waits out its backoff)."""
    if failed:
        await stopping.wait()
        return
    waiters = [asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
