"""Who is held after a failed check: the supervisor's list, with what was done about it.

Read from the current-state tables (``loop_state``, ``alerts``, ``dispositions``),
like the rosters: a held worker is one whose status is ``held``, and they are held
since the earliest of their open health alerts was raised.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

import asyncpg

from shared.adapters.postgres.supervision import in_district
from shared.domain.vocabulary import HEALTH_ALERTS

_HEALTH_ALERT_KINDS = sorted(kind.value for kind in HEALTH_ALERTS)

_HELD = """
    SELECT s.worker_ref, s.id_masked, w.name, w.enterprise_id,
           coalesce(w.trip_id, s.boarded_trip_id) AS trip_id,
           coalesce(w.travel, 'organised') AS travel, s.stage,
           a.kinds, a.raised, a.held_since
    FROM loop_state s
    LEFT JOIN workers w USING (worker_ref)
    CROSS JOIN LATERAL (
        SELECT coalesce(array_agg(kind ORDER BY raised_at, kind), '{{}}') AS kinds,
               coalesce(array_agg(raised_at ORDER BY raised_at, kind), '{{}}') AS raised,
               min(raised_at) AS held_since
        FROM alerts
        WHERE worker_ref = s.worker_ref AND open AND kind = ANY($1::text[])
    ) a
    WHERE s.status = 'held'
      AND ($2::text IS NULL OR w.enterprise_id = $2)
      AND ($3::text IS NULL OR {scope})
    ORDER BY a.held_since NULLS LAST, s.worker_ref
"""

_DISPOSITIONS = """
    SELECT worker_ref, disposition_id, kind, at, recorded_by, note
    FROM dispositions
    WHERE worker_ref = ANY($1::text[])
    ORDER BY worker_ref, at, disposition_id
"""


def days_between(since: datetime, now: datetime, zone: tzinfo) -> int:
    """Calendar days in ``zone`` from the day of ``since`` to the day of ``now`` (0 on the
    same day), as the bureau's daily table counts them."""
    return (now.astimezone(zone).date() - since.astimezone(zone).date()).days


class HeldWorkers:
    """Held workers with their open health alerts, their dispositions and their days held."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def held(
        self,
        *,
        zone: tzinfo,
        now: datetime,
        enterprise_id: str | None = None,
        district: str | None = None,
    ) -> list[dict[str, Any]]:
        """Every held worker (of the manifest enterprise ``enterprise_id``, of ``district``'s
        enterprises, if given), longest held first."""
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                _HELD.format(scope=in_district("w.enterprise_id", "$3")),
                _HEALTH_ALERT_KINDS,
                enterprise_id,
                district,
            )
            dispositions = await connection.fetch(
                _DISPOSITIONS, [row["worker_ref"] for row in rows]
            )
        recorded: dict[str, list[dict[str, Any]]] = {}
        for row in dispositions:
            recorded.setdefault(row["worker_ref"], []).append(
                {
                    "disposition_id": row["disposition_id"],
                    "kind": row["kind"],
                    "at": row["at"].isoformat(),
                    "by": row["recorded_by"],
                    "note": row["note"],
                }
            )
        return [
            {
                "worker_ref": row["worker_ref"],
                "id_masked": row["id_masked"],
                "name": row["name"],
                "enterprise_id": row["enterprise_id"],
                "trip_id": row["trip_id"],
                "travel": row["travel"],
                "stage": row["stage"],
                "open_alerts": [
                    {"kind": kind, "raised_at": raised_at.isoformat()}
                    for kind, raised_at in zip(row["kinds"], row["raised"], strict=True)
                ],
                "dispositions": recorded.get(row["worker_ref"], []),
                "held_since": row["held_since"].isoformat() if row["held_since"] else None,
                "days_held": days_between(row["held_since"], now, zone)
                if row["held_since"]
                else None,
            }
            for row in rows
        ]
