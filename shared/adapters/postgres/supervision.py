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
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg

from shared.domain.vocabulary import AlertKind

# The roster's counts (PRODUCT.md, GET /v1/enterprises/{enterprise_id}/roster).
ROSTER_STATES = (
    "expected",
    "departed",
    "in_transit",
    "arrived",
    "checked_in",
    "held",
    "broken",
    "withdrawn",
)

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


def in_district(enterprise_id: str, parameter: str) -> str:
    """SQL: the enterprise named by the ``enterprise_id`` expression is in the district that
    ``parameter`` ("$n") holds. A district-scoped supervisor reads only what this admits."""
    return (
        f"{enterprise_id} IN (SELECT enterprise_id FROM enterprises WHERE district = {parameter})"
    )


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
# selects one enterprise ("= $1") or all ("IS NOT NULL"), ``scope`` keeps one
# district's ("e.district = $n") or all ("true"). An enterprise is listed when
# the manifest names it or a worker checked in there.
_ROSTERS = """
    WITH manifest AS (
        SELECT w.enterprise_id, count(*) AS expected,
               count(*) FILTER (WHERE s.departed) AS departed,
               count(*) FILTER (
                   WHERE s.boarded_trip_id IS NOT NULL AND NOT s.arrived) AS in_transit,
               count(*) FILTER (WHERE s.arrived) AS arrived,
               count(*) FILTER (WHERE s.status = 'held') AS held,
               count(*) FILTER (WHERE s.status = 'broken') AS broken,
               count(*) FILTER (WHERE s.status = 'withdrawn') AS withdrawn
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
    SELECT l.enterprise_id, e.name, e.district, e.open_positions,
           coalesce(e.shortage, 0) AS shortage,
           coalesce(m.expected, 0) AS expected, coalesce(m.departed, 0) AS departed,
           coalesce(m.in_transit, 0) AS in_transit, coalesce(m.arrived, 0) AS arrived,
           coalesce(m.held, 0) AS held, coalesce(m.broken, 0) AS broken,
           coalesce(m.withdrawn, 0) AS withdrawn, coalesce(p.checked_in, 0) AS checked_in
    FROM listed l
    LEFT JOIN enterprises e USING (enterprise_id)
    LEFT JOIN manifest m USING (enterprise_id)
    LEFT JOIN on_post p USING (enterprise_id)
    WHERE {scope}
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
        "withdrawn": row["withdrawn"],
        "on_post_ratio": checked_in / expected if expected else 0.0,
        "shortage": row["shortage"],
        "district": row["district"],
        "open_positions": row["open_positions"],
    }


def _alert_filter(
    *,
    status: AlertStatus,
    kind: AlertKind | None,
    enterprise_id: str | None,
    trip_id: str | None,
    cursor: str | None,
    district: str | None,
) -> tuple[str, list[Any]]:
    """The WHERE clause of an alert query with these filters, and its arguments."""
    if status not in ALERT_STATUSES:
        raise ValueError(f"status must be one of {', '.join(ALERT_STATUSES)}")
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
    if district is not None:
        conditions.append(in_district("w.enterprise_id", parameter(district)))
    return " AND ".join(conditions) or "true", arguments


async def stream_rows(
    pool: asyncpg.Pool, query: str, *arguments: Any
) -> AsyncIterator[asyncpg.Record]:
    """The rows of ``query`` from a server-side cursor, fetched a thousand at a time, so an
    export of every row never holds them all."""
    async with pool.acquire() as connection, connection.transaction(readonly=True):
        async for row in connection.cursor(query, *arguments, prefetch=1000):
            yield row


class SupervisorReads:
    """Rosters, trip tables and alerts for supervisors, and acknowledging an alert."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def roster(
        self, enterprise_id: str, *, district: str | None = None
    ) -> dict[str, Any] | None:
        """The contract's roster of one enterprise; ``None`` when nothing refers to it (or,
        with ``district``, when it is not that district's)."""
        if district is None:
            row = await self.pool.fetchrow(
                _ROSTERS.format(match="= $1", scope="true"), enterprise_id
            )
        else:
            row = await self.pool.fetchrow(
                _ROSTERS.format(match="= $1", scope="e.district = $2"), enterprise_id, district
            )
        if row is None:
            return None
        body = _roster(row)
        for listed_only in ("name", "district", "open_positions"):
            del body[listed_only]  # the contract's roster has none of these; the list shows them
        return body

    async def rosters(self, *, district: str | None = None) -> list[dict[str, Any]]:
        """Every enterprise's roster (as ``roster``) with its name, district and open
        positions, in one set-based read (with ``district``: that district's only).

        An enterprise is listed when the manifest names it or a worker checked in
        there; ordered by ``enterprise_id``.
        """
        if district is None:
            rows = await self.pool.fetch(_ROSTERS.format(match="IS NOT NULL", scope="true"))
        else:
            rows = await self.pool.fetch(
                _ROSTERS.format(match="IS NOT NULL", scope="e.district = $1"), district
            )
        return [_roster(row) for row in rows]

    async def districts(self, *, district: str | None = None) -> list[dict[str, Any]]:
        """The rosters summed per district (enterprises with none under ``None``), from the
        same roster query; ordered by district, ``None`` last."""
        scope = "true" if district is None else "e.district = $1"
        rows = await self.pool.fetch(
            f"""
            SELECT r.district, count(*) AS enterprises,
                   sum(r.expected)::bigint AS expected, sum(r.checked_in)::bigint AS checked_in,
                   sum(r.held)::bigint AS held, sum(r.broken)::bigint AS broken,
                   sum(r.withdrawn)::bigint AS withdrawn
            FROM ({_ROSTERS.format(match="IS NOT NULL", scope=scope)}) r
            GROUP BY r.district
            ORDER BY r.district NULLS LAST
            """,
            *(() if district is None else (district,)),
        )
        return [
            {
                "district": row["district"],
                "enterprises": row["enterprises"],
                "expected": row["expected"],
                "checked_in": row["checked_in"],
                "on_post_ratio": row["checked_in"] / row["expected"] if row["expected"] else 0.0,
                "held": row["held"],
                "broken": row["broken"],
                "withdrawn": row["withdrawn"],
            }
            for row in rows
        ]

    async def worker_in_district(self, worker_ref: str, district: str) -> bool:
        """Whether the worker's manifest enterprise, or the one they checked in at, is in
        ``district``."""
        found: bool = await self.pool.fetchval(
            f"""
            SELECT EXISTS (
                SELECT 1 FROM workers w LEFT JOIN loop_state s USING (worker_ref)
                WHERE w.worker_ref = $1
                  AND ({in_district("w.enterprise_id", "$2")}
                       OR {in_district("s.checked_in_enterprise_id", "$2")}))
            """,
            worker_ref,
            district,
        )
        return found

    async def trips(
        self, *, with_missing_only: bool = False, district: str | None = None
    ) -> list[dict[str, Any]]:
        """Every trip's counts (as ``trip``, with ``missing`` counted), in one set-based read.

        A trip is listed when a manifest registers it, names it for a worker, or
        a worker boarded it; ordered by ``eta`` (unregistered trips last), then id.
        With ``district``, only that district's workers are counted, and only trips
        that carry one of them are listed.
        """
        scope = "true" if district is None else in_district("w.enterprise_id", "$2")
        registered = "SELECT trip_id FROM trips UNION" if district is None else ""
        rows = await self.pool.fetch(
            f"""
            WITH manifest AS (
                SELECT trip_id, count(*) AS manifest FROM workers w
                WHERE trip_id IS NOT NULL AND {scope} GROUP BY trip_id
            ), boarded AS (
                SELECT s.boarded_trip_id AS trip_id, count(*) AS boarded,
                       count(*) FILTER (WHERE s.arrived) AS arrived,
                       count(*) FILTER (WHERE NOT s.arrived) AS missing,
                       count(*) FILTER (WHERE w.trip_id IS DISTINCT FROM s.boarded_trip_id)
                           AS not_on_manifest
                FROM loop_state s LEFT JOIN workers w USING (worker_ref)
                WHERE s.boarded_trip_id IS NOT NULL AND {scope}
                GROUP BY s.boarded_trip_id
            ), listed AS (
                {registered} SELECT trip_id FROM manifest
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
            *(() if district is None else (district,)),
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

    async def trip(
        self, trip_id: str, *, boarding_grace: timedelta, district: str | None = None
    ) -> dict[str, Any] | None:
        """The contract's table of one trip; ``None`` when nothing refers to it.

        A trip that workers boarded but no manifest registered is shown with
        ``mode`` null, so that the boarders are not lost from sight. ``no_show``
        lists the trip's manifest workers with no boarding once ``departs_at`` +
        ``boarding_grace`` has passed; ``workers`` names everyone listed. With
        ``district``, only that district's workers count and are listed, and a trip
        that carries none of them is ``None``.
        """
        scope = "true" if district is None else in_district("w.enterprise_id", "$3")
        row = await self.pool.fetchrow(
            f"""
            SELECT t.trip_id IS NOT NULL AS listed, t.mode, t.departs_at,
                   (SELECT count(*) FROM workers w WHERE trip_id = $1 AND {scope}) AS manifest,
                   b.boarded, b.arrived, b.missing, b.not_on_manifest,
                   CASE WHEN now() > t.departs_at + $2::interval THEN (
                       SELECT coalesce(array_agg(w.worker_ref ORDER BY w.worker_ref), '{{}}')
                       FROM workers w LEFT JOIN loop_state s USING (worker_ref)
                       WHERE w.trip_id = $1 AND {scope} AND s.boarded_trip_id IS NULL
                         AND NOT coalesce(s.checkpoints ? 'boarding', false)
                   ) ELSE '{{}}' END AS no_show
            FROM (
                SELECT count(*) AS boarded,
                       count(*) FILTER (WHERE s.arrived) AS arrived,
                       coalesce(array_agg(s.worker_ref ORDER BY s.worker_ref)
                                FILTER (WHERE NOT s.arrived), '{{}}') AS missing,
                       coalesce(array_agg(s.worker_ref ORDER BY s.worker_ref)
                                FILTER (WHERE w.trip_id IS DISTINCT FROM $1), '{{}}')
                           AS not_on_manifest
                FROM loop_state s LEFT JOIN workers w USING (worker_ref)
                WHERE s.boarded_trip_id = $1 AND {scope}
            ) b
            LEFT JOIN trips t ON t.trip_id = $1
            """,
            trip_id,
            boarding_grace,
            *(() if district is None else (district,)),
        )
        assert row is not None  # an aggregate always yields one row
        if (
            (not row["listed"] or district is not None)
            and not row["manifest"]
            and not row["boarded"]
        ):
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
        district: str | None = None,
    ) -> dict[str, Any]:
        """One page of alerts, newest first: ``{"alerts": [...], "next_cursor"}``.

        With ``district``, only alerts of workers whose manifest enterprise is in it.
        Raises ``InvalidCursor`` for a cursor not handed out here and
        ``ValueError`` for a status or page size outside the contract.
        """
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        where, arguments = _alert_filter(
            status=status,
            kind=kind,
            enterprise_id=enterprise_id,
            trip_id=trip_id,
            cursor=cursor,
            district=district,
        )
        arguments.append(limit + 1)
        rows = await self.pool.fetch(
            _ALERT_SELECT.format(source="alerts")
            + f" WHERE {where} ORDER BY a.alert_id DESC LIMIT ${len(arguments)}",
            *arguments,
        )
        page = [_alert(row) for row in rows[:limit]]
        more = len(rows) > limit
        return {
            "alerts": page,
            "next_cursor": encode_cursor(page[-1]["alert_id"]) if more else None,
        }

    async def all_alerts(
        self,
        *,
        status: AlertStatus = "open",
        kind: AlertKind | None = None,
        enterprise_id: str | None = None,
        trip_id: str | None = None,
        district: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every alert the filters of ``alerts`` admit, newest first, streamed from a
        server-side cursor (an export of every row, not one page)."""
        where, arguments = _alert_filter(
            status=status,
            kind=kind,
            enterprise_id=enterprise_id,
            trip_id=trip_id,
            cursor=None,
            district=district,
        )
        query = _ALERT_SELECT.format(source="alerts") + f" WHERE {where} ORDER BY a.alert_id DESC"
        async for row in stream_rows(self.pool, query, *arguments):
            yield _alert(row)

    async def acknowledge(
        self, alert_id: int, actor: str, note: str, *, district: str | None = None
    ) -> dict[str, Any] | None:
        """Record who acknowledged an alert, when, and how it was handled; ``None`` if unknown
        (or, with ``district``, not an alert of that district's workers).

        Acknowledging annotates an alert; it does not close it (only the scans
        that explain it do). A later acknowledgement replaces an earlier one.
        """
        scope = (
            "true"
            if district is None
            else f"""worker_ref IN (SELECT worker_ref FROM workers w
                     WHERE {in_district("w.enterprise_id", "$4")})"""
        )
        row = await self.pool.fetchrow(
            f"""
            WITH acknowledged AS (
                UPDATE alerts SET acknowledged_at = now(), acknowledged_by = $2,
                    resolution_note = $3, updated_at = now()
                WHERE alert_id = $1 AND {scope}
                RETURNING *
            )
            """
            + _ALERT_SELECT.format(source="acknowledged"),
            alert_id,
            actor,
            note,
            *(() if district is None else (district,)),
        )
        return _alert(row) if row is not None else None
