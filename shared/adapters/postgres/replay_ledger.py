"""The PostgreSQL record of dead letters replayed, so none is sent back twice.

A replay claims its dead letter (insert, in a transaction) before producing and
commits only after the broker acknowledged: a failed send leaves no claim, and
two replays at once cannot both send the same dead letter. A crash between the
ack and the commit can resend one; scans are idempotent on ``scan_id``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg

from shared.adapters.postgres.schema import asyncpg_url
from shared.service_layer.dead_letters import DeadLetterId


class ReplayClaim:
    """A dead letter claimed for replay inside an open transaction."""

    def __init__(self, connection: asyncpg.Connection, letter_id: DeadLetterId) -> None:
        self._connection = connection
        self._letter_id = letter_id

    async def sent(self, partition: int, offset: int) -> None:
        """Note where the replayed message landed."""
        await self._connection.execute(
            "UPDATE dead_letter_replays SET target_partition = $3, target_offset = $4 "
            "WHERE dead_letter_partition = $1 AND dead_letter_offset = $2",
            self._letter_id.partition,
            self._letter_id.offset,
            partition,
            offset,
        )


class ReplayLedger:
    """Which dead letters were replayed, on one connection."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    @classmethod
    async def connect(cls, database_url: str) -> ReplayLedger:
        return cls(await asyncpg.connect(asyncpg_url(database_url)))

    async def close(self) -> None:
        await self._connection.close()

    async def replayed(self, letter_ids: Iterable[DeadLetterId]) -> dict[DeadLetterId, datetime]:
        """When each of ``letter_ids`` that was replayed was replayed."""
        wanted = list(letter_ids)
        rows = await self._connection.fetch(
            "SELECT r.dead_letter_partition, r.dead_letter_offset, r.replayed_at "
            "FROM dead_letter_replays r "
            "JOIN UNNEST($1::integer[], $2::bigint[]) AS w (partition, off) "
            "ON r.dead_letter_partition = w.partition AND r.dead_letter_offset = w.off",
            [item.partition for item in wanted],
            [item.offset for item in wanted],
        )
        return {
            DeadLetterId(row["dead_letter_partition"], row["dead_letter_offset"]): row[
                "replayed_at"
            ]
            for row in rows
        }

    @asynccontextmanager
    async def claim(
        self, letter_id: DeadLetterId, *, reason: str, source_topic: str, target_topic: str
    ) -> AsyncIterator[ReplayClaim | None]:
        """A claim on ``letter_id`` (None if it was replayed already), committed on exit."""
        async with self._connection.transaction():
            claimed = await self._connection.fetchval(
                "INSERT INTO dead_letter_replays (dead_letter_partition, dead_letter_offset, "
                "reason, source_topic, target_topic) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT DO NOTHING RETURNING true",
                letter_id.partition,
                letter_id.offset,
                reason,
                source_topic,
                target_topic,
            )
            yield ReplayClaim(self._connection, letter_id) if claimed else None
