"""The city-sized wave (29,400 workers, 1,034 buses, 8 trains, 5 flights) through the system.

Slow: run with `make test-city` (CI runs it against Apache Kafka and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest

from services.cli.demo import build_wave
from shared.adapters.postgres.pool import create_pool
from shared.identity import Pseudonymiser
from shared.settings import Settings
from tests.e2e.conftest import RunningSystem
from tests.support.servers import Servers

pytestmark = [pytest.mark.e2e, pytest.mark.city]

# What each planted exception must show as, by the end of the wave.
EXCEPTION_ALERTS = {
    "fever_held": ("fever_at_departure", True),
    "code_yellow": ("code_not_green_at_departure", True),
    "red_at_arrival": ("code_not_green_at_arrival", True),
    "lost_in_transit": ("overdue_arrival", True),
    "wrong_gate": ("wrong_enterprise", True),
    "fever_recovers": ("fever_at_departure", False),
    "fever_at_arrival_recovers": ("fever_at_arrival", False),
}
ROSTER_STATES = ("expected", "departed", "in_transit", "arrived", "checked_in", "held", "broken")


async def test_the_city_wave_closes_and_rosters_trips_and_alerts_agree_with_the_database(
    system: RunningSystem, servers: Servers, settings: Settings, admin: httpx.AsyncClient
) -> None:
    seed = random.randrange(1_000_000)
    now = datetime.now(UTC)
    ok = await system.feed_demo("city", settings=settings, now=now, seed=seed, settle_timeout_s=900)
    assert ok, "the loops did not end as the pure domain predicts"

    wave = build_wave("city", now=now, seed=seed)
    pseudonymiser = Pseudonymiser(system.env["RETURNLOOP_WORKER_REF_KEY"].encode())
    refs = [pseudonymiser.worker_ref(number) for number in wave.id_numbers]
    enterprises = [e["enterprise_id"] for e in wave.manifest["enterprises"]]
    trips = [t["trip_id"] for t in wave.manifest["trips"]]

    rosters = await asyncio.gather(
        *(admin.get(f"/v1/enterprises/{enterprise}/roster") for enterprise in enterprises)
    )
    totals: Counter[str] = Counter()
    for response in rosters:
        assert response.status_code == 200
        for state in ROSTER_STATES:
            totals[state] += response.json()[state]

    pool = await create_pool(servers.database_url, max_size=2)
    try:
        row = await pool.fetchrow(
            """
            SELECT count(*) AS expected,
                   count(*) FILTER (WHERE s.departed) AS departed,
                   count(*) FILTER (WHERE s.boarded_trip_id IS NOT NULL AND NOT s.arrived)
                       AS in_transit,
                   count(*) FILTER (WHERE s.arrived) AS arrived,
                   count(*) FILTER (WHERE s.checked_in_enterprise_id = w.enterprise_id)
                       AS checked_in,
                   count(*) FILTER (WHERE s.status = 'held') AS held,
                   count(*) FILTER (WHERE s.status = 'broken') AS broken
            FROM workers w LEFT JOIN loop_state s USING (worker_ref)
            WHERE w.worker_ref = ANY($1::text[])
            """,
            refs,
        )
        assert dict(totals) == {state: row[state] for state in ROSTER_STATES}

        missing_rows = await pool.fetch(
            "SELECT boarded_trip_id, worker_ref FROM loop_state "
            "WHERE worker_ref = ANY($1::text[]) AND boarded_trip_id IS NOT NULL AND NOT arrived",
            refs,
        )
        alert_rows = await pool.fetch(
            "SELECT worker_ref, kind, open FROM alerts WHERE worker_ref = ANY($1::text[])", refs
        )
    finally:
        await pool.close()

    expected_missing: dict[str, set[str]] = {}
    for row in missing_rows:
        expected_missing.setdefault(row["boarded_trip_id"], set()).add(row["worker_ref"])
    views = await asyncio.gather(*(admin.get(f"/v1/trips/{trip}") for trip in trips))
    for trip, response in zip(trips, views, strict=True):
        assert response.status_code == 200, trip
        assert set(response.json()["missing"]) == expected_missing.get(trip, set()), trip

    alerts = {(row["kind"], row["open"]) for row in alert_rows}
    for exception, planted in wave.exceptions.items():
        if exception in EXCEPTION_ALERTS and planted:
            assert EXCEPTION_ALERTS[exception] in alerts, exception
