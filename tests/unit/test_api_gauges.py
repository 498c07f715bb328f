"""The gauges read from PostgreSQL are read when scraped, at most every max_age_s."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from services.api.gauges import NO_DISTRICT, DatabaseGauges
from shared.adapters.metrics import Metrics
from tests.unit.test_metrics import samples


class Reads:
    """The four reads, counted; ``fail`` makes the next one raise."""

    def __init__(self) -> None:
        self.reads = 0
        self.open = 3
        self.fail = False

    async def workers_by_stage_status(self) -> list[tuple[str, str, int]]:
        self.reads += 1
        await asyncio.sleep(0.01)  # scrapes arriving meanwhile must wait for this read
        if self.fail:
            raise ConnectionError("PostgreSQL went away")
        return [("arrival", "on_track", 7)]

    async def open_alerts_by_kind(self) -> list[tuple[str, int]]:
        return [("overdue_arrival", self.open)]

    async def rosters(self) -> list[dict[str, Any]]:
        return [
            {
                "enterprise_id": "yinzhou-textile",
                "expected": 40,
                "departed": 38,
                "in_transit": 2,
                "arrived": 35,
                "checked_in": 30,
                "held": 1,
                "broken": 0,
                "withdrawn": 2,
                "not_back": 7,
            }
        ]

    async def districts(self) -> list[dict[str, Any]]:
        return [
            {
                "district": None,
                "expected": 40,
                "checked_in": 30,
                "held": 1,
                "broken": 0,
                "withdrawn": 2,
            }
        ]


def gauges(reads: Reads, max_age_s: float) -> tuple[CollectorRegistry, DatabaseGauges]:
    registry = CollectorRegistry()
    return registry, DatabaseGauges(Metrics(registry), reads, reads, max_age_s=max_age_s)  # type: ignore[arg-type]


async def test_a_scrape_reads_the_gauges_and_scrapes_together_share_one_read() -> None:
    reads = Reads()
    registry, database_gauges = gauges(reads, max_age_s=60)
    assert samples(registry, "returnloop_open_alerts") == {}
    await asyncio.gather(*(database_gauges.refresh_if_stale() for _ in range(5)))
    assert reads.reads == 1
    assert samples(registry, "returnloop_open_alerts") == {("overdue_arrival",): 3}
    assert samples(registry, "returnloop_workers") == {("arrival", "on_track"): 7}
    assert samples(registry, "returnloop_enterprise_workers")[("yinzhou-textile", "withdrawn")] == 2
    assert samples(registry, "returnloop_district_workers")[(NO_DISTRICT, "checked_in")] == 30


async def test_values_younger_than_max_age_are_served_as_they_are_and_older_ones_read_again() -> (
    None
):
    reads = Reads()
    registry, database_gauges = gauges(reads, max_age_s=60)
    await database_gauges.refresh_if_stale()
    reads.open = 4
    await database_gauges.refresh_if_stale()
    assert (reads.reads, samples(registry, "returnloop_open_alerts")) == (
        1,
        {("overdue_arrival",): 3},
    )
    database_gauges.max_age_s = 0
    await database_gauges.refresh_if_stale()
    assert (reads.reads, samples(registry, "returnloop_open_alerts")) == (
        2,
        {("overdue_arrival",): 4},
    )


async def test_a_failed_read_keeps_the_last_values_and_the_next_scrape_tries_again(
    caplog: Any,
) -> None:
    reads = Reads()
    registry, database_gauges = gauges(reads, max_age_s=0)
    await database_gauges.refresh_if_stale()
    reads.fail, reads.open = True, 9
    await database_gauges.refresh_if_stale()
    assert samples(registry, "returnloop_open_alerts") == {("overdue_arrival",): 3}
    assert "could not refresh the gauges read from PostgreSQL" in caplog.text
    reads.fail = False
    await database_gauges.refresh_if_stale()
    assert samples(registry, "returnloop_open_alerts") == {("overdue_arrival",): 9}
