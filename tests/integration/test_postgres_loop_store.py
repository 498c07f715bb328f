"""``PostgresStore`` held to the same contract as the in-memory fake (real PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import asyncpg
import pytest

from shared.adapters.postgres.manifests import ManifestStore
from shared.adapters.postgres.unit_of_work import PostgresStore
from shared.domain.model import LoopState
from shared.domain.vocabulary import Stage, Status, Travel
from shared.service_layer.ports import LoopStore, SavedState
from tests.contract.loop_store_contract import MASKED, LoopStoreContract, at, new_ref

pytestmark = pytest.mark.integration


class TestPostgresLoopStore(LoopStoreContract):
    refused_inside = asyncpg.DataError
    aborted = asyncpg.InFailedSQLTransactionError

    @pytest.fixture
    def store(self, pool: asyncpg.Pool) -> PostgresStore:
        return PostgresStore(pool)

    async def seed_worker(
        self,
        store: LoopStore,
        worker_ref: str,
        *,
        id_masked: str,
        enterprise_id: str | None,
        trip_id: str | None,
        travel: Travel = Travel.ORGANISED,
        expected_arrival: datetime | None = None,
    ) -> None:
        assert isinstance(store, PostgresStore)
        worker = {
            "worker_ref": worker_ref,
            "id_masked": id_masked,
            "name": "test worker",
            "enterprise_id": enterprise_id,
            "trip_id": trip_id,
            "travel": travel.value,
            "expected_arrival": expected_arrival,
        }
        await ManifestStore(store.pool).upsert_manifest([], [], [worker])

    async def seed_trip(self, store: LoopStore, trip_id: str, *, eta: datetime) -> None:
        assert isinstance(store, PostgresStore)
        trip = {
            "trip_id": trip_id,
            "mode": "bus",
            "origin": "Guiyang",
            "destination": "Ningbo",
            "departs_at": eta - timedelta(hours=20),
            "eta": eta,
        }
        await ManifestStore(store.pool).upsert_manifest([], [trip], [])


async def test_a_state_saved_again_unchanged_keeps_its_row_version(pool: asyncpg.Pool) -> None:
    # A rebuild re-decides every worker; one that comes out as stored costs no write.
    store, ref = PostgresStore(pool), new_ref()
    boarded = LoopState(stage=Stage.BOARDED, departed=True, boarded_trip_id="bus-0302")

    async def save(state: LoopState, scan_count: int, hours: float) -> tuple[str, datetime]:
        async with store.transaction() as uow:
            await uow.save([SavedState(ref, MASKED, state, scan_count)], at(hours))
        row = await pool.fetchrow(
            "SELECT xmin::text, updated_at FROM loop_state WHERE worker_ref = $1", ref
        )
        assert row is not None
        return row["xmin"], row["updated_at"]

    first = await save(boarded, 2, 1)
    assert await save(boarded, 2, 2) == first
    changed = await save(boarded, 3, 3)
    assert changed[0] != first[0] and changed[1] == at(3)
    closed = await save(replace(boarded, stage=Stage.CHECKED_IN, status=Status.CLOSED), 3, 4)
    assert closed[0] != changed[0] and closed[1] == at(4)
