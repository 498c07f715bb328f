"""``PostgresStore`` held to the same contract as the in-memory fake (real PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
import pytest

from shared.adapters.postgres.manifests import ManifestStore
from shared.adapters.postgres.unit_of_work import PostgresStore
from shared.domain.vocabulary import Travel
from shared.service_layer.ports import LoopStore
from tests.contract.loop_store_contract import LoopStoreContract

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
