"""The in-memory ``FakeLoopStore`` held to the same contract as PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import pytest

from shared.domain.vocabulary import Travel
from shared.service_layer.ports import LoopStore, RecordRefused
from tests.contract.loop_store_contract import LoopStoreContract
from tests.fakes import FakeLoopStore, TransactionAborted


class TestFakeLoopStore(LoopStoreContract):
    refused_inside = RecordRefused
    aborted = TransactionAborted

    @pytest.fixture
    def store(self) -> FakeLoopStore:
        return FakeLoopStore()

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
        assert isinstance(store, FakeLoopStore)
        store.seed_worker(
            worker_ref,
            id_masked=id_masked,
            enterprise_id=enterprise_id,
            trip_id=trip_id,
            travel=travel,
            expected_arrival=expected_arrival,
        )

    async def seed_trip(self, store: LoopStore, trip_id: str, *, eta: datetime) -> None:
        assert isinstance(store, FakeLoopStore)
        store.seed_trip(trip_id, eta=eta)
