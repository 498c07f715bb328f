"""The loops the subsidy ledger reads: closed ones, with how the worker travelled."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from shared.adapters.postgres.supervision import in_district
from shared.domain.subsidies import LoopOnRecord
from shared.domain.vocabulary import Status, Travel


class SubsidyLoops:
    """Closed loops with their worker, enterprise, way of travel and trip mode."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def closed_loops(
        self, *, enterprise_ids: list[str] | None = None, district: str | None = None
    ) -> list[tuple[LoopOnRecord, dict[str, Any]]]:
        """Every closed loop (of these enterprises, if given; with ``district``, of that
        district's enterprises only), with the worker's name and masked ID; ``closed_at``
        is the check-in that closed it."""
        rows = await self.pool.fetch(
            f"""
            SELECT w.worker_ref, w.id_masked, w.name, w.enterprise_id, w.travel, t.mode,
                   s.status, s.checkpoints -> 'checkin' ->> 'at' AS closed_at
            FROM loop_state s
            JOIN workers w USING (worker_ref)
            LEFT JOIN trips t ON t.trip_id = coalesce(w.trip_id, s.boarded_trip_id)
            WHERE s.status = 'closed' AND w.enterprise_id IS NOT NULL
              AND ($1::text[] IS NULL OR w.enterprise_id = ANY($1::text[]))
              AND ($2::text IS NULL OR {in_district("w.enterprise_id", "$2")})
            ORDER BY w.enterprise_id, w.worker_ref
            """,
            enterprise_ids,
            district,
        )
        return [
            (
                LoopOnRecord(
                    worker_ref=row["worker_ref"],
                    enterprise_id=row["enterprise_id"],
                    status=Status(row["status"]),
                    travel=Travel(row["travel"]),
                    mode=row["mode"],
                    closed_at=datetime.fromisoformat(row["closed_at"])
                    if row["closed_at"]
                    else None,
                ),
                {"id_masked": row["id_masked"], "name": row["name"]},
            )
            for row in rows
        ]
