"""Supervisors' reads: one table per enterprise, one per trip, and the alert queue.

Every count comes from the current-state tables (``workers``, ``loop_state``,
``alerts``), never from the applied-scan log, so a roster costs the same on the
last day of a wave as on the first. Alert pages are keyed on ``alert_id``,
newest first, so a page never shifts when new alerts arrive while a supervisor
reads on.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg

from shared.domain.vocabulary import AlertKind

# The roster's counts (PRODUCT.md, GET /v1/enterprises/{enterprise_id}/roster).
ROSTER_STATES = ("expected", "departed", "in_transit", "arrived", "checked_in", "held", "broken")

AlertStatus = Literal["open", "closed", "all"]
ALERT_STATUSES: tuple[AlertStatus, ...] = ("open", "closed", "all")
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500

_MAX_ALERT_ID = 2**63 - 1
_CURSOR = re.compile(r"[A-Za-z0-9_-]{4,40}")
_CURSOR_BODY = re.compile(r"alert:([1-9][0-9]{0,18})")


class InvalidCursor(ValueError):
    """A cursor this module did not hand out (or one mangled on the way)."""


def encode_cursor(alert_id: int) -> str:
    """The opaque cursor of the page after ``alert_id``."""
    return base64.urlsafe_b64encode(f"alert:{alert_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The alert_id a cursor stands for; ``InvalidCursor`` if it is not one of ours."""
    if not _CURSOR.fullmatch(cursor):
        raise InvalidCursor("the cursor is not one this API handed out")
    try:
        body = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        match = _CURSOR_BODY.fullmatch(body.decode("ascii"))
    except (binascii.Error, UnicodeDecodeError):
        match = None
    if match is None or int(match.group(1)) > _MAX_ALERT_ID:
        raise InvalidCursor("the cursor is not one this API handed out")
    return int(match.group(1))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# An alert with the worker's manifest enterprise and trip (the trip they boarded
# when the manifest names none), as the loop view shows them.
_ALERT_SELECT = """
    SELECT a.alert_id, a.worker_ref, w.id_masked, w.name, w.enterprise_id,
           coalesce(w.trip_id, s.boarded_trip_id) AS trip_id,
           a.kind, a.raised_at, a.open, a.closed_at,
           a.acknowledged_at, a.acknowledged_by, a.resolution_note
    FROM {source} a
    LEFT JOIN workers w USING (worker_ref)
    LEFT JOIN loop_state s USING (worker_ref)
"""


def _alert(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "alert_id": row["alert_id"],
        "worker_ref": row["worker_ref"],
        "id_masked": row["id_masked"],
        "name": row["name"],
        "enterprise_id": row["enterprise_id"],
        "trip_id": row["trip_id"],
        "kind": row["kind"],
        "raised_at": _iso(row["raised_at"]),
        "open": row["open"],
        "closed_at": _iso(row["closed_at"]),
        "acknowledged_at": _iso(row["acknowledged_at"]),
        "acknowledged_by": row["acknowledged_by"],
        "resolution_note": row["resolution_note"],
    }


# Rosters counted from workers and loop_state, never the scan log; ``match``
# selects one enterprise ("= $1") or all ("IS NOT NULL"). An enterprise is
# listed when the manifest names it or a worker checked in there.
_ROSTERS = """
    WITH manifest AS (
        SELECT w.enterprise_id, count(*) AS expected,
               count(*) FILTER (WHERE s.departed) AS departed,
               count(*) FILTER (
                   WHERE s.boarded_trip_id IS NOT NULL AND NOT s.arrived) AS in_transit,
               count(*) FILTER (WHERE s.arrived) AS arrived,
               count(*) FILTER (WHERE s.status = 'held') AS held,
               count(*) FILTER (WHERE s.status = 'broken') AS broken
        FROM workers w LEFT JOIN loop_state s USING (worker_ref)
        WHERE w.enterprise_id {match}
        GROUP BY w.enterprise_id
    ), on_post AS (
        SELECT checked_in_enterprise_id AS enterprise_id, count(*) AS checked_in
        FROM loop_state WHERE checked_in_enterprise_id {match}
        GROUP BY checked_in_enterprise_id
    ), listed AS (
        SELECT enterprise_id FROM enterprises WHERE enterprise_id {match}
        UNION SELECT enterprise_id FROM manifest
        UNION SELECT enterprise_id FROM on_post
    )
    SELECT l.enterprise_id, e.name, coalesce(e.shortage, 0) AS shortage,
           coalesce(m.expected, 0) AS expected, coalesce(m.departed, 0) AS departed,
           coalesce(m.in_transit, 0) AS in_transit, coalesce(m.arrived, 0) AS arrived,
           coalesce(m.held, 0) AS held, coalesce(m.broken, 0) AS broken,
           coalesce(p.checked_in, 0) AS checked_in
    FROM listed l
    LEFT JOIN enterprises e USING (enterprise_id)
    LEFT JOIN manifest m USING (enterprise_id)
    LEFT JOIN on_post p USING (enterprise_id)
    ORDER BY l.enterprise_id
"""


def _roster(row: asyncpg.Record) -> dict[str, Any]:
    expected: int = row["expected"]
    checked_in: int = row["checked_in"]
    return {
        "enterprise_id": row["enterprise_id"],
        "name": row["name"],
        "expected": expected,
        "departed": row["departed"],
        "in_transit": row["in_transit"],
        "arrived": row["arrived"],
        "checked_in": checked_in,
        "held": row["held"],
        "broken": row["broken"],
        "on_post_ratio": checked_in / expected if expected else 0.0,
        "shortage": row["shortage"],
    }


class SupervisorReads:
    """Rosters, trip tables and alerts for supervisors, and acknowledging an alert."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def roster(self, enterprise_id: str) -> dict[str, Any] | None:
        """The contract's roster of one enterprise; ``None`` when nothing refers to it."""
        row = await self.pool.fetchrow(_ROSTERS.format(match="= $1"), enterprise_id)
        if row is None:
            return None
        body = _roster(row)
        del body["name"]  # the contract's roster has no name; the list shows it
        return body

    async def rosters(self) -> list[dict[str, Any]]:
        """Every enterprise's roster (as ``roster``) with its name, in one set-based read.

        An enterprise is listed when the manifest names it or a worker checked in
        there; ordered by ``enterprise_id``.
        """
        return [_roster(row) for row in await self.pool.fetch(_ROSTERS.format(match="IS NOT NULL"))]

    async def trips(self, *, with_missing_only: bool = False) -> list[dict[str, Any]]:
        """Every trip's counts (as ``trip``, with ``missing`` counted), in one set-based read.

        A trip is listed when a manifest registers it, names it for a worker, or
        a worker boarded it; ordered by ``eta`` (unregistered trips last), then id.
        """
        rows = await self.pool.fetch(
            """
            WITH manifest AS (
                SELECT trip_id, count(*) AS manifest FROM workers
                WHERE trip_id IS NOT NULL GROUP BY trip_id
            ), boarded AS (
                SELECT s.boarded_trip_id AS trip_id, count(*) AS boarded,
                       count(*) FILTER (WHERE s.arrived) AS arrived,
                       count(*) FILTER (WHERE NOT s.arrived) AS missing,
                       count(*) FILTER (WHERE w.trip_id IS DISTINCT FROM s.boarded_trip_id)
                           AS not_on_manifest
                FROM loop_state s LEFT JOIN workers w USING (worker_ref)
                WHERE s.boarded_trip_id IS NOT NULL
                GROUP BY s.boarded_trip_id
            ), listed AS (
                SELECT trip_id FROM trips
                UNION SELECT trip_id FROM manifest
                UNION SELECT trip_id FROM boarded
            )
            SELECT l.trip_id, t.mode, t.origin, t.destination, t.departs_at, t.eta,
                   coalesce(m.manifest, 0) AS manifest, coalesce(b.boarded, 0) AS boarded,
                   coalesce(b.arrived, 0) AS arrived, coalesce(b.missing, 0) AS missing,
                   coalesce(b.not_on_manifest, 0) AS not_on_manifest
            FROM listed l
            LEFT JOIN trips t USING (trip_id)
            LEFT JOIN manifest m USING (trip_id)
            LEFT JOIN boarded b USING (trip_id)
            WHERE NOT $1 OR b.missing > 0
            ORDER BY t.eta NULLS LAST, l.trip_id
            """,
            with_missing_only,
        )
        return [
            {
                "trip_id": row["trip_id"],
                "mode": row["mode"],
                "origin": row["origin"],
                "destination": row["destination"],
                "departs_at": _iso(row["departs_at"]),
                "eta": _iso(row["eta"]),
                "manifest": row["manifest"],
                "boarded": row["boarded"],
                "arrived": row["arrived"],
                "missing_count": row["missing"],
                "not_on_manifest_count": row["not_on_manifest"],
            }
            for row in rows
        ]

    async def trip(self, trip_id: str, *, boarding_grace: timedelta) -> dict[str, Any] | None:
        """The contract's table of one trip; ``None`` when nothing refers to it.

        A trip that workers boarded but no manifest registered is shown with
        ``mode`` null, so that the boarders are not lost from sight. ``no_show``
        lists the trip's manifest workers with no boarding once ``departs_at`` +
        ``boarding_grace`` has passed; ``workers`` names everyone listed.
        """
        row = await self.pool.fetchrow(
            """
            SELECT t.trip_id IS NOT NULL AS listed, t.mode, t.departs_at,
                   (SELECT count(*) FROM workers WHERE trip_id = $1) AS manifest,
                   b.boarded, b.arrived, b.missing, b.not_on_manifest,
                   CASE WHEN now() > t.departs_at + $2::interval THEN (
                       SELECT coalesce(array_agg(w.worker_ref ORDER BY w.worker_ref), '{}')
                       FROM workers w LEFT JOIN loop_state s USING (worker_ref)
                       WHERE w.trip_id = $1 AND s.boarded_trip_id IS NULL
                         AND NOT coalesce(s.checkpoints ? 'boarding', false)
                   ) ELSE '{}' END AS no_show
            FROM (
                SELECT count(*) AS boarded,
                       count(*) FILTER (WHERE s.arrived) AS arrived,
                       coalesce(array_agg(s.worker_ref ORDER BY s.worker_ref)
                                FILTER (WHERE NOT s.arrived), '{}') AS missing,
                       coalesce(array_agg(s.worker_ref ORDER BY s.worker_ref)
                                FILTER (WHERE w.trip_id IS DISTINCT FROM $1), '{}')
                           AS not_on_manifest
                FROM loop_state s LEFT JOIN workers w USING (worker_ref)
                WHERE s.boarded_trip_id = $1
            ) b
            LEFT JOIN trips t ON t.trip_id = $1
            """,
            trip_id,
            boarding_grace,
        )
        assert row is not None  # an aggregate always yields one row
        if not row["listed"] and not row["manifest"] and not row["boarded"]:
            return None
        listed = {*row["missing"], *row["not_on_manifest"], *row["no_show"]}
        names = await self.pool.fetch(
            "SELECT worker_ref, id_masked, name FROM workers WHERE worker_ref = ANY($1::text[]) "
            "ORDER BY worker_ref",
            sorted(listed),
        )
        return {
            "trip_id": trip_id,
            "mode": row["mode"],
            "departs_at": _iso(row["departs_at"]),
            "manifest": row["manifest"],
            "boarded": row["boarded"],
            "arrived": row["arrived"],
            "missing": list(row["missing"]),
            "not_on_manifest": list(row["not_on_manifest"]),
            "no_show": list(row["no_show"]),
            "workers": [
                {"worker_ref": n["worker_ref"], "id_masked": n["id_masked"], "name": n["name"]}
                for n in names
            ],
        }

    async def alerts(
        self,
        *,
        status: AlertStatus = "open",
        kind: AlertKind | None = None,
        enterprise_id: str | None = None,
        trip_id: str | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> dict[str, Any]:
        """One page of alerts, newest first: ``{"alerts": [...], "next_cursor"}``.

        Raises ``InvalidCursor`` for a cursor not handed out here and
        ``ValueError`` for a status or page size outside the contract.
        """
        if status not in ALERT_STATUSES:
            raise ValueError(f"status must be one of {', '.join(ALERT_STATUSES)}")
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        # Only the filters asked for go into the statement, so that each shape
        # gets a plan that can use its index (the partial one on open alerts).
        conditions: list[str] = []
        arguments: list[Any] = []

        def parameter(value: Any) -> str:
            arguments.append(value)
            return f"${len(arguments)}"

        if status == "open":
            conditions.append("a.open")
        elif status == "closed":
            conditions.append("NOT a.open")
        if kind is not None:
            conditions.append(f"a.kind = {parameter(AlertKind(kind).value)}")
        if enterprise_id is not None:
            conditions.append(f"w.enterprise_id = {parameter(enterprise_id)}")
        if trip_id is not None:
            # coalesce(w.trip_id, s.boarded_trip_id) = T, written so indexes serve it.
            trip = parameter(trip_id)
            conditions.append(
                f"""a.worker_ref IN (
                    SELECT worker_ref FROM workers WHERE trip_id = {trip}
                    UNION ALL
                    SELECT b.worker_ref FROM loop_state b JOIN workers bw USING (worker_ref)
                    WHERE b.boarded_trip_id = {trip} AND bw.trip_id IS NULL)"""
            )
        if cursor is not None:
            conditions.append(f"a.alert_id < {parameter(decode_cursor(cursor))}")
        where = " AND ".join(conditions) or "true"
        rows = await self.pool.fetch(
            _ALERT_SELECT.format(source="alerts")
            + f" WHERE {where} ORDER BY a.alert_id DESC LIMIT {parameter(limit + 1)}",
            *arguments,
        )
        page = [_alert(row) for row in rows[:limit]]
        more = len(rows) > limit
        return {
            "alerts": page,
            "next_cursor": encode_cursor(page[-1]["alert_id"]) if more else None,
        }

    async def acknowledge(self, alert_id: int, actor: str, note: str) -> dict[str, Any] | None:
        """Record who acknowledged an alert, when, and how it was handled; ``None`` if unknown.

        Acknowledging annotates an alert; it does not close it (only the scans
        that explain it do). A later acknowledgement replaces an earlier one.
        """
        row = await self.pool.fetchrow(
            """
            WITH acknowledged AS (
                UPDATE alerts SET acknowledged_at = now(), acknowledged_by = $2,
                    resolution_note = $3, updated_at = now()
                WHERE alert_id = $1
                RETURNING *
            )
            """
            + _ALERT_SELECT.format(source="acknowledged"),
            alert_id,
            actor,
            note,
        )
        return _alert(row) if row is not None else None
