"""The city-sized wave's daily tick-off and district rollup against PostgreSQL's own counts.

Slow: run with `make test-city` (CI runs it against Apache Kafka and PostgreSQL).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.cli.demo import build_wave
from shared.adapters.postgres.pool import create_pool
from shared.settings import Settings
from tests.e2e.conftest import RunningSystem
from tests.support.servers import Servers
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.city]

IN_FLIGHT = 8

# Each worker on post at an enterprise, from the day (Shanghai) of their first check-in
# scan there; written apart from the API's query, from the same tables.
NEWLY_BY_DAY = """
    SELECT s.checked_in_enterprise_id AS enterprise_id,
           (min(a.occurred_at) AT TIME ZONE 'Asia/Shanghai')::date AS day, s.worker_ref
    FROM loop_state s
    JOIN applied_scans a ON a.worker_ref = s.worker_ref AND a.kind = 'checkin'
                        AND a.enterprise_id = s.checked_in_enterprise_id
    WHERE s.checked_in_enterprise_id = ANY($1::text[])
    GROUP BY s.checked_in_enterprise_id, s.worker_ref
"""
DISTRICTS = """
    SELECT e.district, count(DISTINCT e.enterprise_id) AS enterprises,
           (SELECT count(*) FROM workers w JOIN enterprises x USING (enterprise_id)
            WHERE x.district IS NOT DISTINCT FROM e.district) AS expected,
           (SELECT count(*) FROM loop_state s
            JOIN enterprises x ON x.enterprise_id = s.checked_in_enterprise_id
            WHERE x.district IS NOT DISTINCT FROM e.district) AS checked_in
    FROM enterprises e WHERE e.district = ANY($1::text[])
    GROUP BY e.district
"""


async def get_all(client: httpx.AsyncClient, paths: list[str]) -> list[dict[str, Any]]:
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def get(path: str) -> dict[str, Any]:
        async with limit:
            response = await client.get(path)
        assert response.status_code == 200, (path, response.text)
        body: dict[str, Any] = response.json()
        return body

    return await asyncio.gather(*(get(path) for path in paths))


async def test_the_city_waves_daily_and_district_totals_equal_postgresqls_counts(
    system: RunningSystem, servers: Servers, settings: Settings, admin: httpx.AsyncClient
) -> None:
    now = datetime.now(UTC)
    seed = await system.unused_seed("city", now=now)
    ok = await system.feed_demo("city", settings=settings, now=now, seed=seed, settle_timeout_s=900)
    assert ok, "the loops did not end as the pure domain predicts"
    wave = build_wave("city", now=now, seed=seed)
    enterprises = [e["enterprise_id"] for e in wave.manifest["enterprises"]]
    districts = sorted({e["district"] for e in wave.manifest["enterprises"]})

    dailies = await get_all(admin, [f"/v1/enterprises/{e}/daily" for e in enterprises])
    pool = await create_pool(servers.database_url, max_size=2)
    try:
        newly: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for row in await pool.fetch(NEWLY_BY_DAY, enterprises):
            newly[row["enterprise_id"]][row["day"].isoformat()] += 1
        expected = {
            row["enterprise_id"]: row["n"]
            for row in await pool.fetch(
                "SELECT enterprise_id, count(*) AS n FROM workers "
                "WHERE enterprise_id = ANY($1::text[]) GROUP BY enterprise_id",
                enterprises,
            )
        }

        async def both() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
            served = (await admin.get("/v1/districts")).json()["districts"]
            counted = {r["district"]: dict(r) for r in await pool.fetch(DISTRICTS, districts)}
            return served, counted

        served, _ = await eventually(
            both,
            lambda pair: all(
                {k: d[k] for k in ("enterprises", "expected", "checked_in")}
                == {k: pair[1][d["district"]][k] for k in ("enterprises", "expected", "checked_in")}
                for d in pair[0]
                if d["district"] in pair[1]
            ),
            what="the districts as PostgreSQL counts them",
            within=60,
        )
    finally:
        await pool.close()

    assert {d["district"] for d in served} >= set(districts)
    for enterprise_id, daily in zip(enterprises, dailies, strict=True):
        days = daily["days"]
        assert days, enterprise_id
        assert days[-1]["date"] >= datetime.now(settings.zone).date().isoformat()
        by_day = {day["date"]: day["newly_checked_in"] for day in days if day["newly_checked_in"]}
        assert by_day == dict(newly[enterprise_id]), enterprise_id
        assert days[-1]["checked_in"] == sum(newly[enterprise_id].values())
        assert {day["expected"] for day in days} == {expected.get(enterprise_id, 0)}
