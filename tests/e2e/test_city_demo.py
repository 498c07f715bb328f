"""The city-sized wave (29,400 workers, 1,034 buses, 8 trains, 5 flights) through the system:
rosters, trips and alerts against PostgreSQL, and the seed's practice planted in it (workers
named by their linked codes, self-drivers, no-shows, an override, the platform's colours,
dispositions after failed checks), and the subsidy ledger against the domain's prediction.

Slow: run with `make test-city` (CI runs it against Apache Kafka and PostgreSQL).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from services.cli.demo import OVERRIDE_REASON, build_wave
from shared.adapters.postgres.pool import create_pool
from shared.domain.subsidies import SubsidyRates
from shared.identity import Pseudonymiser
from shared.settings import Settings
from tests.e2e.conftest import RunningSystem
from tests.support.servers import Servers

pytestmark = [pytest.mark.e2e, pytest.mark.city]

# What each planted exception must show as, by the end of the wave.
EXCEPTION_ALERTS = {
    "fever_held": ("fever_at_departure", True),
    "code_yellow": ("code_not_green_at_departure", True),
    "override_boarding": ("boarded_without_clearance", True),
    "colour_stale_held": ("code_not_green_at_departure", True),
    "self_overdue": ("overdue_arrival", True),
    "colour_missing_recovers": ("code_not_green_at_arrival", False),
    "red_at_arrival": ("code_not_green_at_arrival", True),
    "lost_in_transit": ("overdue_arrival", True),
    "wrong_gate": ("wrong_enterprise", True),
    "fever_recovers": ("fever_at_departure", False),
    "fever_at_arrival_recovers": ("fever_at_arrival", False),
}
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
# Requests in flight at once: a thousand at a time only queue in the client's pool (and
# time out there on a busy machine).
IN_FLIGHT = 8


async def get_all(client: httpx.AsyncClient, paths: list[str]) -> list[httpx.Response]:
    """GET every path, IN_FLIGHT at a time; the responses in the paths' order."""
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def get(path: str) -> httpx.Response:
        async with limit:
            return await client.get(path)

    return await asyncio.gather(*(get(path) for path in paths))


async def test_the_city_wave_closes_and_rosters_trips_and_alerts_agree_with_the_database(
    system: RunningSystem, servers: Servers, settings: Settings, admin: httpx.AsyncClient
) -> None:
    now = datetime.now(UTC)
    seed = await system.unused_seed("city", now=now)
    ok = await system.feed_demo("city", settings=settings, now=now, seed=seed, settle_timeout_s=900)
    assert ok, "the loops did not end as the pure domain predicts"

    # The prediction pays the rates the API was started with (tests/e2e/conftest.py).
    rates = SubsidyRates(
        **{
            way: Decimal(system.env.get(f"RETURNLOOP_SUBSIDY_YUAN_{way.upper()}", "0"))
            for way in ("bus", "train", "flight", "self")
        }
    )
    wave = build_wave("city", now=now, seed=seed, rates=rates)
    pseudonymiser = Pseudonymiser(system.env["RETURNLOOP_WORKER_REF_KEY"].encode())
    refs = [pseudonymiser.worker_ref(number) for number in wave.id_numbers]
    enterprises = [e["enterprise_id"] for e in wave.manifest["enterprises"]]
    trips = [t["trip_id"] for t in wave.manifest["trips"]]

    rosters = await get_all(admin, [f"/v1/enterprises/{e}/roster" for e in enterprises])
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
                   count(*) FILTER (WHERE s.status = 'broken') AS broken,
                   count(*) FILTER (WHERE s.status = 'withdrawn') AS withdrawn
            FROM workers w LEFT JOIN loop_state s USING (worker_ref)
            WHERE w.worker_ref = ANY($1::text[])
            """,
            refs,
        )
        assert dict(totals) == {state: row[state] for state in ROSTER_STATES}
        assert row["withdrawn"] == wave.expected["status"]["withdrawn"] > 0

        missing_rows = await pool.fetch(
            "SELECT boarded_trip_id, worker_ref FROM loop_state "
            "WHERE worker_ref = ANY($1::text[]) AND boarded_trip_id IS NOT NULL AND NOT arrived",
            refs,
        )
        alert_rows = await pool.fetch(
            "SELECT worker_ref, kind, open FROM alerts WHERE worker_ref = ANY($1::text[])", refs
        )
        enterprise_rows = await pool.fetch(
            "SELECT enterprise_id, district, shortage, open_positions FROM enterprises "
            "WHERE enterprise_id = ANY($1::text[])",
            enterprises,
        )
    finally:
        await pool.close()

    expected_missing: dict[str, set[str]] = {}
    for row in missing_rows:
        expected_missing.setdefault(row["boarded_trip_id"], set()).add(row["worker_ref"])
    views = await get_all(admin, [f"/v1/trips/{trip}" for trip in trips])
    no_shows: dict[str, set[str]] = {}
    for trip, response in zip(trips, views, strict=True):
        assert response.status_code == 200, trip
        assert set(response.json()["missing"]) == expected_missing.get(trip, set()), trip
        no_shows[trip] = set(response.json()["no_show"])

    alerts = {(row["kind"], row["open"]) for row in alert_rows}
    for exception, planted in wave.exceptions.items():
        if exception in EXCEPTION_ALERTS and planted:
            assert EXCEPTION_ALERTS[exception] in alerts, exception

    # Enterprises carry the bulletin's districts, shortages and open positions.
    assert {tuple(row) for row in enterprise_rows} == {
        (e["enterprise_id"], e["district"], e["shortage"], e["open_positions"])
        for e in wave.manifest["enterprises"]
    }

    ref_of = dict(zip(wave.id_numbers, refs, strict=True))
    trip_of = {w["id_number"]: w.get("trip_id") for w in wave.manifest["workers"]}
    # Manifest workers who never boarded a trip that left are listed on it, and only they.
    for number in wave.planted["no_show"]:
        assert ref_of[number] in no_shows[trip_of[number]], number
    assert {trip: listed for trip, listed in no_shows.items() if listed} == {
        trip: {ref_of[number] for number in numbers}
        for trip, numbers in wave.expected["no_show"].items()
    }

    async def views_of(planted: str, most: int = 40) -> list[dict[str, Any]]:
        numbers = wave.planted[planted][:most]
        responses = await get_all(admin, [f"/v1/workers/{ref_of[n]}" for n in numbers])
        assert [r.status_code for r in responses] == [200] * len(numbers), planted
        assert numbers, planted
        return [response.json() for response in responses]

    # Self-drivers close with no boarding; the one past their expected arrival is overdue.
    for view in await views_of("self_drive"):
        assert (view["travel"], view["trip_id"]) == ("self", None)
        assert (view["stage"], view["status"]) == ("checked_in", "closed")
        assert "boarding" not in view["checkpoints"]
    for view in await views_of("self_overdue"):
        assert view["travel"] == "self" and view["status"] == "broken"
        assert [a["kind"] for a in view["alerts"] if a["open"]] == ["overdue_arrival"]
    # A held worker boarded on an override: the boarding checkpoint says why.
    for view in await views_of("override_boarding"):
        boarding = view["checkpoints"]["boarding"]
        assert boarding["override_reason"] == OVERRIDE_REASON and not boarding["passed"]
        assert view["status"] == "held"
    # Checks with no scanned colour went by the platform's: green and fresh enough passes,
    # a day and a half old does not.
    for view in await views_of("platform_green"):
        for kind in ("departure_check", "arrival_check"):
            checkpoint = view["checkpoints"][kind]
            assert checkpoint["health_code_source"] == "platform", view["worker_ref"]
            assert checkpoint["health_code"] == "green" and checkpoint["passed"]
        assert view["status"] == "closed"
    for view in await views_of("colour_stale_held"):
        departure = view["checkpoints"]["departure_check"]
        assert (departure["health_code_source"], departure["passed"]) == ("missing", False)
        assert view["status"] == "held"

    # Dispositions: held workers isolated or under observation stay held; released after a
    # retest, the fever alert is closed (rechecked and checked in: closed; the bus gone:
    # open); an upheld appeal closed the colour alert; those who stay home are withdrawn.
    def alert(view: dict[str, Any], kind: str) -> dict[str, Any]:
        (found,) = [a for a in view["alerts"] if a["kind"] == kind]
        return found

    def kinds(view: dict[str, Any]) -> list[str]:
        return [d["kind"] for d in sorted(view["dispositions"], key=lambda d: d["at"])]

    for view in await views_of("fever_held"):
        assert view["status"] == "held" and alert(view, "fever_at_departure")["open"]
        assert kinds(view) in ([], ["isolation"])
    assert any(kinds(view) == ["isolation"] for view in await views_of("fever_held"))
    for view in await views_of("red_at_arrival"):
        assert view["status"] == "held" and kinds(view) == ["medical_observation"]
    for view in await views_of("released_at_arrival"):
        assert kinds(view) == ["medical_observation", "released"]
        fever = alert(view, "fever_at_arrival")
        assert not fever["open"] and fever["closed_at"] is not None
        assert datetime.fromisoformat(fever["closed_at"]) == datetime.fromisoformat(
            view["dispositions"][-1]["at"]
        )
        assert (view["stage"], view["status"]) == ("checked_in", "closed")
    for view in await views_of("released_at_departure"):
        assert kinds(view) == ["medical_observation", "released"]
        assert not alert(view, "fever_at_departure")["open"]
        assert (view["stage"], view["status"]) == ("registered", "open")
    for view in await views_of("appeal_upheld"):
        assert kinds(view) == ["code_appeal_upheld"]
        assert not alert(view, "code_not_green_at_arrival")["open"]
        assert view["status"] == "closed"
    for stays_home in ("withdrawn_at_home", "fever_withdrawn"):
        for view in await views_of(stays_home):
            assert kinds(view) == ["withdrawn"] and view["status"] == "withdrawn"
            assert not [a for a in view["alerts"] if a["open"]]

    # The subsidy ledger equals the domain's prediction, in total and per enterprise.
    ledgers = await get_all(admin, [f"/v1/subsidies?enterprise_id={e}" for e in enterprises])
    paid: dict[str, tuple[int, Decimal]] = {}
    paid_workers: set[str] = set()
    for response in ledgers:
        assert response.status_code == 200
        body = response.json()
        assert body["rates"] == {way: float(getattr(rates, way)) for way in body["rates"]}
        for entry in body["enterprises"]:
            paid[entry["enterprise_id"]] = (entry["workers"], Decimal(str(entry["amount_yuan"])))
        paid_workers |= {w["worker_ref"] for w in body["workers"]}
    predicted = wave.expected["subsidies"]
    assert paid == predicted["enterprises"]
    assert sum(amount for _, amount in paid.values()) == predicted["total_yuan"] > 0
    closed = {ref_of[n] for n, status in wave.expected["per_worker"].items() if status == "closed"}
    assert paid_workers == closed and len(closed) == predicted["workers"]
