"""Ask the health-code platform for the colours of workers in transit.

Colours usually arrive on ``healthcode.updates`` (pushed by the platform or an
integrator) or over ``POST /v1/healthcode/updates``. A platform that only answers
questions is polled instead: every round walks the workers who departed and are
not checked in yet (a page at a time, keyset on ``worker_ref``), asks the platform
for each one's colour (a few at a time), and puts each answer on
``healthcode.updates`` like any other colour update. The tracker's intake and
apply take it from there: an older ``as_of`` never overrides a newer one, and the
same (worker, ``as_of``, colour) twice is one row.

Only workers whose full ID number is kept (encrypted, ``RETURNLOOP_ID_ENCRYPTION_KEYS``)
can be asked for: the platform knows people by ID number. The plain number is
decrypted for the question and the message only; it is never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson

from shared import topics
from shared.id_encryption import IdNumberCipher, IdNumberUnreadable
from shared.identity import InvalidIdNumber
from shared.service_layer.dead_letters import mask_personal
from shared.service_layer.ports import (
    HealthCodePlatform,
    Message,
    PlatformError,
    Publisher,
    TransitWorker,
    WorkersInTransit,
)

if TYPE_CHECKING:
    from shared.adapters.metrics import Metrics

logger = logging.getLogger(__name__)

PAGE_SIZE = 500
CONCURRENCY = 8

ANSWERED = "answered"
NO_CODE = "no_code"
ERROR = "error"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class PollRound:
    """What one round found: answers published, workers without a code, failures."""

    answered: int = 0
    no_code: int = 0
    error: int = 0
    pages: int = 0

    @property
    def asked(self) -> int:
        return self.answered + self.no_code + self.error


class PlatformPoller:
    """One round at a time: workers in transit -> the platform -> ``healthcode.updates``."""

    def __init__(
        self,
        *,
        workers: WorkersInTransit,
        platform: HealthCodePlatform,
        publisher: Publisher,
        cipher: IdNumberCipher,
        metrics: Metrics | None = None,
        page_size: int = PAGE_SIZE,
        concurrency: int = CONCURRENCY,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if page_size < 1 or concurrency < 1:
            raise ValueError("page_size and concurrency must be at least 1")
        self.workers = workers
        self.platform = platform
        self.publisher = publisher
        self.cipher = cipher
        self.metrics = metrics
        self.page_size = page_size
        self.concurrency = concurrency
        self.clock = clock

    async def poll(self) -> PollRound:
        """Ask for every worker in transit; return once every answer is on the topic.

        A worker the platform fails on is counted and skipped (asked again next
        round); a failing page read or publish ends the round with the error.
        """
        found = PollRound()
        limit = asyncio.Semaphore(self.concurrency)
        after = ""
        while True:
            page = await self.workers.in_transit_after(after, self.page_size)
            if not page:
                break
            found.pages += 1
            answers = await asyncio.gather(*(self._ask(worker, limit, found) for worker in page))
            now = self.clock().isoformat().encode()
            messages: list[Message] = [
                (worker_ref.encode(), value, [("received_at", now)])
                for worker_ref, value in (answer for answer in answers if answer is not None)
            ]
            await self.publisher.publish(topics.HEALTHCODE_UPDATES, messages)
            if len(page) < self.page_size:
                break
            after = page[-1].worker_ref
        return found

    async def _ask(
        self, worker: TransitWorker, limit: asyncio.Semaphore, found: PollRound
    ) -> tuple[str, bytes] | None:
        """The worker's colour update as ``healthcode.updates`` carries it, or None."""
        async with limit:
            try:
                id_number = self.cipher.decrypt(worker.id_number_encrypted)
                update = await self.platform.colour_of(id_number)
            except (PlatformError, IdNumberUnreadable, InvalidIdNumber) as error:
                found.error += 1
                self._count(ERROR)
                logger.warning(
                    "health-code platform gave no colour for a worker; asking again next round",
                    extra={
                        "worker_ref": worker.worker_ref,
                        "error": type(error).__name__,
                        "detail": mask_personal(str(error)),
                    },
                )
                return None
        if update is None:
            found.no_code += 1
            self._count(NO_CODE)
            return None
        found.answered += 1
        self._count(ANSWERED)
        value = orjson.dumps(
            {
                "id_number": id_number,
                "health_code": str(update.health_code),
                "as_of": update.as_of.isoformat(),
            }
        )
        return worker.worker_ref, value

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.platform_polls_total.labels(outcome).inc()
