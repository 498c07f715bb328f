"""Manifests (enterprises, trips, workers) and the encrypted ID numbers they keep."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import asyncpg


class ManifestStore:
    """Manifest upserts and ID-key rotation over a pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def upsert_manifest(
        self,
        enterprises: Sequence[dict[str, Any]],
        trips: Sequence[dict[str, Any]],
        workers: Sequence[dict[str, Any]],
    ) -> None:
        """Upsert enterprises, trips and workers; workers whose assignment changed are
        re-decided by the next sweep (their deadline is set to now)."""
        async with self.pool.acquire() as connection, connection.transaction():
            if enterprises:
                await connection.execute(
                    """
                    INSERT INTO enterprises (enterprise_id, name, shortage, district,
                        open_positions)
                    SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[],
                        $5::int[])
                    ON CONFLICT (enterprise_id) DO UPDATE SET name = EXCLUDED.name,
                        shortage = EXCLUDED.shortage, district = EXCLUDED.district,
                        open_positions = EXCLUDED.open_positions, updated_at = now()
                    """,
                    [e["enterprise_id"] for e in enterprises],
                    [e["name"] for e in enterprises],
                    [e["shortage"] for e in enterprises],
                    [e.get("district") for e in enterprises],
                    [e.get("open_positions") for e in enterprises],
                )
            if trips:
                await connection.execute(
                    """
                    INSERT INTO trips (trip_id, mode, origin, destination, departs_at, eta)
                    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                        $5::timestamptz[], $6::timestamptz[])
                    ON CONFLICT (trip_id) DO UPDATE SET mode = EXCLUDED.mode,
                        origin = EXCLUDED.origin, destination = EXCLUDED.destination,
                        departs_at = EXCLUDED.departs_at, eta = EXCLUDED.eta, updated_at = now()
                    """,
                    [t["trip_id"] for t in trips],
                    [t["mode"] for t in trips],
                    [t["origin"] for t in trips],
                    [t["destination"] for t in trips],
                    [t["departs_at"] for t in trips],
                    [t["eta"] for t in trips],
                )
            if workers:
                # Key order, as the tracker locks: concurrent writers cannot deadlock.
                workers = sorted(workers, key=lambda w: w["worker_ref"])
                refs = [w["worker_ref"] for w in workers]
                await connection.execute(
                    """
                    INSERT INTO workers (worker_ref, id_masked, name, enterprise_id, trip_id,
                        id_number_encrypted, travel, expected_arrival)
                    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                        $5::text[], $6::text[], $7::text[], $8::timestamptz[])
                    ON CONFLICT (worker_ref) DO UPDATE SET id_masked = EXCLUDED.id_masked,
                        name = EXCLUDED.name, enterprise_id = EXCLUDED.enterprise_id,
                        trip_id = EXCLUDED.trip_id, travel = EXCLUDED.travel,
                        expected_arrival = EXCLUDED.expected_arrival,
                        id_number_encrypted = coalesce(
                            EXCLUDED.id_number_encrypted, workers.id_number_encrypted),
                        updated_at = now()
                    """,
                    refs,
                    [w["id_masked"] for w in workers],
                    [w["name"] for w in workers],
                    [w["enterprise_id"] for w in workers],
                    [w["trip_id"] for w in workers],
                    [w.get("id_number_encrypted") for w in workers],
                    [w.get("travel", "organised") for w in workers],
                    [w.get("expected_arrival") for w in workers],
                )
                await connection.execute(
                    "UPDATE loop_state SET next_deadline = now() WHERE worker_ref = ANY($1::text[])",
                    refs,
                )
            if trips:
                await connection.execute(
                    "UPDATE loop_state SET next_deadline = now() "
                    "WHERE boarded_trip_id = ANY($1::text[])",
                    [t["trip_id"] for t in trips],
                )

    async def known_enterprises(self, enterprise_ids: Sequence[str]) -> set[str]:
        """Those of ``enterprise_ids`` that a manifest registered."""
        rows = await self.pool.fetch(
            "SELECT enterprise_id FROM enterprises WHERE enterprise_id = ANY($1::text[])",
            list(enterprise_ids),
        )
        return {row["enterprise_id"] for row in rows}

    async def known_trips(self, trip_ids: Sequence[str]) -> set[str]:
        """Those of ``trip_ids`` that a manifest registered."""
        rows = await self.pool.fetch(
            "SELECT trip_id FROM trips WHERE trip_id = ANY($1::text[])", list(trip_ids)
        )
        return {row["trip_id"] for row in rows}

    async def upsert_workers(self, workers: Sequence[dict[str, Any]]) -> None:
        """Upsert manifest workers alone (as ``upsert_manifest`` does them)."""
        await self.upsert_manifest([], [], workers)

    async def encrypted_id_number(self, worker_ref: str) -> tuple[bool, str | None]:
        """Whether the worker is known, and their encrypted ID number if one is kept."""
        row = await self.pool.fetchrow(
            "SELECT id_number_encrypted FROM workers WHERE worker_ref = $1", worker_ref
        )
        return (row is not None, row["id_number_encrypted"] if row else None)

    async def rotate_encrypted_id_numbers(
        self, rotate: Callable[[str], str], *, batch_size: int = 1000
    ) -> int:
        """Re-encrypt every kept ID number with ``rotate``, a batch per transaction."""
        done, after = 0, ""
        while True:
            async with self.pool.acquire() as connection, connection.transaction():
                rows = await connection.fetch(
                    "SELECT worker_ref, id_number_encrypted FROM workers "
                    "WHERE worker_ref > $1 AND id_number_encrypted IS NOT NULL "
                    "ORDER BY worker_ref LIMIT $2 FOR UPDATE",
                    after,
                    batch_size,
                )
                if not rows:
                    return done
                await connection.execute(
                    "UPDATE workers w SET id_number_encrypted = t.c "
                    "FROM unnest($1::text[], $2::text[]) AS t(r, c) WHERE w.worker_ref = t.r",
                    [row["worker_ref"] for row in rows],
                    [rotate(row["id_number_encrypted"]) for row in rows],
                )
            done += len(rows)
            after = rows[-1]["worker_ref"]
