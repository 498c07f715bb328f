"""Workers in transit (departed, not checked in, not withdrawn) whose full ID number is kept (encrypted): whom the platform poller asks."""

from __future__ import annotations

import asyncpg

from shared.domain.vocabulary import Stage, Status
from shared.service_layer.ports import TransitWorker

# Keyset on loop_state's primary key: a page costs the same on page 1 and on page 200.
_IN_TRANSIT_AFTER = """
SELECT s.worker_ref, w.id_number_encrypted
FROM loop_state s JOIN workers w USING (worker_ref)
WHERE s.worker_ref > $1
  AND s.departed
  AND s.stage <> $2
  AND s.status <> $4  -- a withdrawn worker is not travelling
  AND w.id_number_encrypted IS NOT NULL
ORDER BY s.worker_ref
LIMIT $3
"""


class TransitReads:
    """``WorkersInTransit`` over an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def in_transit_after(self, after: str, limit: int) -> list[TransitWorker]:
        rows = await self.pool.fetch(
            _IN_TRANSIT_AFTER, after, Stage.CHECKED_IN.value, limit, Status.WITHDRAWN.value
        )
        return [TransitWorker(row["worker_ref"], row["id_number_encrypted"]) for row in rows]
