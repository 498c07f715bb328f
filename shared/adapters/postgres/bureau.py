"""The bureau's table of one enterprise: who is not back yet, by name, and the daily tick-off.

Who is not back comes from the current-state tables (``workers``,
``loop_state``, ``alerts``). The daily history is derived from what is kept
anyway, never from a counter of its own that a rebuild could not reproduce:
each worker checked in at the enterprise counts from the day of their first
check-in scan there in the applied-scan log, in the configured time zone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

import asyncpg

from shared.adapters.postgres.supervision import in_district, stream_rows

# Everyone on the enterprise's manifest not checked in there, with their open alerts
# (gathered once for the enterprise rather than looked up worker by worker).
_NOT_BACK = """
    SELECT w.worker_ref, w.id_masked, w.name,
           coalesce(w.trip_id, s.boarded_trip_id) AS trip_id, w.travel,
           coalesce(s.stage, 'registered') AS stage, coalesce(s.status, 'open') AS status,
           coalesce(o.kinds, '{}') AS open_alerts
    FROM workers w
    LEFT JOIN loop_state s USING (worker_ref)
    LEFT JOIN (
        SELECT a.worker_ref, array_agg(DISTINCT a.kind ORDER BY a.kind) AS kinds
        FROM alerts a JOIN workers aw USING (worker_ref)
        WHERE a.open AND aw.enterprise_id = $1
        GROUP BY a.worker_ref
    ) o USING (worker_ref)
    WHERE w.enterprise_id = $1 AND s.checked_in_enterprise_id IS DISTINCT FROM $1
    ORDER BY w.name NULLS LAST, w.worker_ref
"""


def daily_rows(
    *,
    first_day: date | None,
    today: date,
    expected: int,
    newly_by_day: Mapping[date, int],
) -> list[dict[str, Any]]:
    """One row per calendar day from ``first_day`` to ``today`` (or a later check-in's
    day): the expected count, how many were on post by that day's end, how many newly.
    No first day (no scan yet) means no rows."""
    if first_day is None:
        return []
    last_day = max([today, *newly_by_day])
    rows, on_post, day = [], 0, first_day
    while day <= last_day:
        newly = newly_by_day.get(day, 0)
        on_post += newly
        rows.append(
            {
                "date": day.isoformat(),
                "expected": expected,
                "checked_in": on_post,
                "newly_checked_in": newly,
                "on_post_ratio": on_post / expected if expected else 0.0,
            }
        )
        day += timedelta(days=1)
    return rows


class BureauReads:
    """Who of an enterprise is not back yet, and its day-by-day progress."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def enterprise_visible(self, enterprise_id: str, *, district: str | None) -> bool:
        """Whether anything refers to the enterprise (a manifest names it, or a worker
        checked in there) and, with ``district``, whether it is that district's."""
        visible: bool = await self.pool.fetchval(
            f"""
            SELECT (EXISTS (SELECT 1 FROM enterprises WHERE enterprise_id = $1)
                    OR EXISTS (SELECT 1 FROM workers WHERE enterprise_id = $1)
                    OR EXISTS (SELECT 1 FROM loop_state WHERE checked_in_enterprise_id = $1))
                   AND ($2::text IS NULL OR {in_district("$1", "$2")})
            """,
            enterprise_id,
            district,
        )
        return visible

    async def not_back(self, enterprise_id: str) -> AsyncIterator[dict[str, Any]]:
        """Everyone on the enterprise's manifest not checked in there (应返未返), by name,
        streamed from a server-side cursor."""
        async for row in stream_rows(self.pool, _NOT_BACK, enterprise_id):
            yield {
                "worker_ref": row["worker_ref"],
                "id_masked": row["id_masked"],
                "name": row["name"],
                "trip_id": row["trip_id"],
                "travel": row["travel"],
                "stage": row["stage"],
                "status": row["status"],
                "open_alerts": list(row["open_alerts"]),
            }

    async def daily(
        self, enterprise_id: str, *, zone: tzinfo, now: datetime
    ) -> list[dict[str, Any]]:
        """The enterprise's days from its first scan to today in ``zone`` (see ``daily_rows``).

        The first scan is the earliest of its manifest workers' scans and of the check-in
        scans at it. A worker on post counts from their first check-in scan there (their
        loop's check-in time if the log has none, as after a purge).
        """
        zone_name = str(zone)
        async with self.pool.acquire() as connection:
            head = await connection.fetchrow(
                """
                SELECT (SELECT count(*) FROM workers WHERE enterprise_id = $1) AS expected,
                       least(
                           (SELECT min(f.occurred_at) FROM workers w, LATERAL (
                                SELECT a.occurred_at FROM applied_scans a
                                WHERE a.worker_ref = w.worker_ref
                                ORDER BY a.occurred_at LIMIT 1) f
                            WHERE w.enterprise_id = $1),
                           (SELECT min(occurred_at) FROM applied_scans
                            WHERE kind = 'checkin' AND enterprise_id = $1)
                       ) AS first_at
                """,
                enterprise_id,
            )
            days = await connection.fetch(
                """
                WITH on_post AS (
                    SELECT coalesce(
                               (SELECT min(a.occurred_at) FROM applied_scans a
                                WHERE a.worker_ref = s.worker_ref AND a.kind = 'checkin'
                                  AND a.enterprise_id = $1),
                               (s.checkpoints -> 'checkin' ->> 'at')::timestamptz,
                               s.updated_at) AS at
                    FROM loop_state s WHERE s.checked_in_enterprise_id = $1
                )
                SELECT (at AT TIME ZONE $2)::date AS day, count(*) AS newly
                FROM on_post GROUP BY 1
                """,
                enterprise_id,
                zone_name,
            )
        assert head is not None
        first_at: datetime | None = head["first_at"]
        newly_by_day = {row["day"]: row["newly"] for row in days}
        first_day = first_at.astimezone(zone).date() if first_at is not None else None
        if first_day is not None and newly_by_day:
            first_day = min(first_day, *newly_by_day)
        return daily_rows(
            first_day=first_day,
            today=now.astimezone(zone).date(),
            expected=head["expected"],
            newly_by_day=newly_by_day,
        )
