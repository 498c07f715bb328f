"""Feed a demo wave through the API and summarise how the loops ended."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from tqdm import tqdm

from services.cli.demo import Wave, build_wave, expected_ledger, expected_states, summarise_ledger
from shared.adapters.postgres.pool import create_pool
from shared.domain.subsidies import SubsidyRates
from shared.domain.vocabulary import Status
from shared.identity import Pseudonymiser
from shared.settings import Settings, rules_from

# The summary's order: the loops that ended well first.
SUMMARY_ORDER = (Status.CLOSED, Status.HELD, Status.BROKEN, Status.OPEN, Status.WITHDRAWN)
WAYS = ("bus", "train", "flight", "self")

BATCH = 500
UPDATES_BATCH = 1000
# POST /v1/links takes one link a request: this many in flight (the API's pool and
# PostgreSQL do the rest; more only queues).
IN_FLIGHT = 8

# A request that fails on the way or with a 5xx is sent again, waiting 1, 2, 4, 8 s:
# every request here is idempotent (manifests upsert; links answer 200 when they exist;
# colours and scans are keyed), and a server restarting should not spoil a wave.
ATTEMPTS = 5

T = TypeVar("T")


async def _send(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    for attempt in range(ATTEMPTS):
        last = attempt == ATTEMPTS - 1
        try:
            response = await client.request(method, path, **kwargs)
        except httpx.TransportError:
            if last:
                raise
        else:
            if response.status_code < 500 or last:
                return response
        await asyncio.sleep(2**attempt)
    raise AssertionError("unreachable")


async def _bounded(
    items: Iterable[T], call: Callable[[T], Awaitable[None]], *, desc: str, total: int
) -> None:
    """``call`` each item, IN_FLIGHT at a time, with a progress bar."""
    queue = iter(items)

    with tqdm(total=total, unit="req", desc=desc, disable=None) as bar:

        async def lane() -> None:
            for item in queue:  # the lanes share one iterator: each item goes once
                await call(item)
                bar.update(1)

        await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))


async def _link(client: httpx.AsyncClient, wave: Wave) -> Counter[str]:
    """Make the wave's links; a worker whose link is refused (a code already bound to
    someone else, or a person an earlier wave drew already linked) is named by ID number
    instead. How many were refused, by the server's reason."""
    refused: set[str] = set()
    reasons: Counter[str] = Counter()

    async def one(link: dict[str, str]) -> None:
        response = await _send(client, "POST", "/v1/links", json=link)
        if response.status_code == 409:
            refused.add(link["id_number"])
            reasons[response.json()["error"]["message"]] += 1
            return
        response.raise_for_status()

    await _bounded(wave.links, one, desc="links made", total=len(wave.links))
    wave.by_id_number_only(refused)
    return reasons


async def _post_batches(
    client: httpx.AsyncClient, path: str, key: str, items: list[dict[str, Any]], size: int
) -> int:
    """POST ``items`` in bodies of ``size``; the number rejected."""
    rejected = 0
    with tqdm(total=len(items), unit=key[:-1], desc=f"{key} sent", disable=None) as bar:
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            response = await _send(client, "POST", path, json={key: chunk})
            response.raise_for_status()
            rejected += sum(r["status"] == "rejected" for r in response.json()["results"])
            bar.update(len(chunk))
    return rejected


async def _dispose(
    client: httpx.AsyncClient, wave: Wave, ref_of: dict[str, str]
) -> tuple[list[str], int]:
    """Record the wave's dispositions (as a health station would, after the scans); the
    ids the server gave them, and the number refused."""
    recorded: list[str] = []
    refused = 0

    async def one(body: dict[str, str]) -> None:
        nonlocal refused
        response = await _send(
            client,
            "POST",
            f"/v1/workers/{ref_of[body['id_number']]}/dispositions",
            json={"kind": body["kind"], "note": body["note"], "at": body["at"]},
        )
        if response.status_code != 201:
            refused += 1
            return
        recorded.append(response.json()["disposition_id"])

    total = len(wave.dispositions)
    await _bounded(wave.dispositions, one, desc="dispositions recorded", total=total)
    return recorded, refused


async def _subsidies(
    client: httpx.AsyncClient, enterprise_ids: list[str]
) -> tuple[dict[str, Decimal] | None, dict[str, tuple[int, Decimal]]]:
    """GET /v1/subsidies for each of the wave's enterprises: the rates the API pays, and
    each enterprise's (workers, amount) it lists."""
    rates: dict[str, Decimal] | None = None
    found: dict[str, tuple[int, Decimal]] = {}

    async def one(enterprise_id: str) -> None:
        nonlocal rates
        response = await _send(
            client, "GET", "/v1/subsidies", params={"enterprise_id": enterprise_id}
        )
        response.raise_for_status()
        body = response.json()
        rates = {way: _decimal(body["rates"][way]) for way in WAYS}
        for row in body["enterprises"]:
            found[row["enterprise_id"]] = (row["workers"], _decimal(row["amount_yuan"]))

    await _bounded(enterprise_ids, one, desc="subsidies read", total=len(enterprise_ids))
    return rates, dict(sorted(found.items()))


def _decimal(amount: float) -> Decimal:
    # The API sends yuan as JSON numbers: two decimals at most.
    return round(Decimal(str(amount)), 2)


def _yuan(amount: Decimal) -> str:
    return f"{amount:,.2f}".removesuffix(".00")


async def _no_shows(client: httpx.AsyncClient, trip_ids: list[str]) -> dict[str, set[str]]:
    """Each trip's ``no_show`` as the API lists it."""
    found: dict[str, set[str]] = {}

    async def one(trip_id: str) -> None:
        response = await _send(client, "GET", f"/v1/trips/{trip_id}")
        response.raise_for_status()
        if response.json()["no_show"]:
            found[trip_id] = set(response.json()["no_show"])

    await _bounded(trip_ids, one, desc="trips read", total=len(trip_ids))
    return found


async def feed_and_summarise(
    size: str,
    *,
    api_url: str,
    admin_token: str,
    database_url: str,
    worker_ref_key: bytes,
    settings: Settings,
    now: datetime,
    alive: Callable[[], bool] = lambda: True,
    settle_timeout_s: float = 600.0,
    seed: int = 2020,
    rates: SubsidyRates | None = None,
) -> bool:
    """Post the wave's manifest, links, platform colours and scans, then record its
    dispositions; wait until every one is applied, print a summary.

    Returns whether every loop (every trip's no-shows, and the subsidy ledger) ended
    as the pure domain says it should. The ledger is predicted at ``rates`` (the API
    must report the same); without them, at the rates the API reports.
    """
    wave = build_wave(
        size,
        now=now,
        rules=rules_from(settings),
        boarding_grace=timedelta(minutes=settings.boarding_grace_minutes),
        seed=seed,
        rates=rates,
    )
    headers = {"Authorization": f"Bearer {admin_token}"}
    trips = wave.manifest["trips"]
    workers = wave.manifest["workers"]
    modes = Counter(trip["mode"] for trip in trips)
    self_travel = [w for w in workers if w.get("travel") == "self"]
    named = wave.named_by()
    print(
        f"demo wave ({size}): {len(workers)} workers ({len(self_travel)} driving back on "
        f"their own), {len(wave.manifest['enterprises'])} enterprises in "
        f"{len({e['district'] for e in wave.manifest['enterprises']})} districts, "
        f"{modes['bus']} buses, {modes['train']} trains, {modes['flight']} flights\n"
        f"  {len(wave.links)} workers' codes linked first, {len(wave.updates)} platform "
        f"colours, {len(wave.scans)} scans naming the worker by health code "
        f"{named['health_code']}, social-security card {named['ssc_card']}, ID number "
        f"{named['id_number']} (with duplicates and out-of-order delivery), then "
        f"{len(wave.dispositions)} dispositions after failed checks "
        f"({_kinds(wave.dispositions)})",
        flush=True,
    )
    started = time.monotonic()
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx.AsyncClient(
        base_url=api_url, headers=headers, timeout=60, limits=limits
    ) as client:
        response = await _send(client, "POST", "/v1/manifests", json=wave.manifest)
        response.raise_for_status()
        refused = await _link(client, wave)
        linked_after = time.monotonic() - started
        rejected = await _post_batches(
            client, "/v1/healthcode/updates", "updates", wave.updates, UPDATES_BATCH
        )
        rejected += await _post_batches(client, "/v1/scans", "scans", wave.scans, BATCH)
        pseudonymiser = Pseudonymiser(worker_ref_key)
        ref_of = {number: pseudonymiser.worker_ref(number) for number in wave.id_numbers}
        refs = list(ref_of.values())
        disposition_ids, refused_dispositions = await _dispose(client, wave, ref_of)
        rejected += refused_dispositions
        sent_after = time.monotonic() - started
        unique_scans = len({scan["scan_id"] for scan in wave.scans})
        unique_updates = len(
            {
                (wave.id_number_of(u), datetime.fromisoformat(u["as_of"]), u["health_code"])
                for u in wave.updates
            }
        )
        pool = await create_pool(database_url, max_size=2)
        try:
            deadline = time.monotonic() + settle_timeout_s
            expected_total = unique_scans + unique_updates + len(disposition_ids)
            with tqdm(total=expected_total, unit="event", desc="applied", disable=None) as bar:
                while True:
                    applied = await pool.fetchval(
                        "SELECT (SELECT count(*) FROM applied_scans "
                        "        WHERE worker_ref = ANY($1::text[])) "
                        "     + (SELECT count(*) FROM health_code_updates "
                        "        WHERE worker_ref = ANY($1::text[])) "
                        "     + (SELECT count(*) FROM dispositions "
                        "        WHERE disposition_id = ANY($2::text[]))",
                        refs,
                        disposition_ids,
                    )
                    bar.update(applied - bar.n)
                    if applied >= expected_total:
                        break
                    if time.monotonic() > deadline or not alive():
                        print("the tracker stopped or did not finish in time", flush=True)
                        return False
                    await asyncio.sleep(0.5)
            rows = await pool.fetch(
                """
                SELECT coalesce(s.status, 'open') AS status, count(*) AS n
                FROM workers w LEFT JOIN loop_state s USING (worker_ref)
                WHERE w.worker_ref = ANY($1::text[]) GROUP BY 1
                """,
                refs,
            )
            alert_rows = await pool.fetch(
                "SELECT kind, count(*) AS n FROM alerts "
                "WHERE open AND worker_ref = ANY($1::text[]) GROUP BY 1",
                refs,
            )
        finally:
            await pool.close()
        settled_after = time.monotonic() - started
        no_shows = await _no_shows(client, [trip["trip_id"] for trip in trips])
        api_rates, paid = await _subsidies(
            client, [e["enterprise_id"] for e in wave.manifest["enterprises"]]
        )
    for reason, count in sorted(refused.items()):
        print(f"{count} link(s) refused ({reason}): named by ID number")
    if any("already holds" in reason for reason in refused):
        print(
            "  a worker who already holds codes was drawn by an earlier wave in this "
            "database: their loop holds both waves' events and may end otherwise"
        )
    print(
        f"linked after {linked_after:.1f} s, sent every colour, scan and disposition after "
        f"{sent_after:.1f} s; every one applied after "
        f"{settled_after:.1f} s ({unique_scans / settled_after:,.0f} unique scans/s end to end)"
    )
    seen = {row["status"]: row["n"] for row in rows}
    expected = wave.expected["status"]
    print(f"rejected at intake: {rejected}")
    print(
        "loops    "
        + "  ".join(
            f"{status}: {seen.get(status, 0)} (expected {expected.get(status, 0)})"
            for status in SUMMARY_ORDER
        )
    )
    open_alerts = {row["kind"]: row["n"] for row in alert_rows}
    print(
        "open alerts  "
        + ", ".join(f"{kind}: {count}" for kind, count in sorted(open_alerts.items()))
    )
    predicted = {
        trip_id: {ref_of[number] for number in numbers}
        for trip_id, numbers in wave.expected["no_show"].items()
    }
    print(
        f"no-shows  {sum(map(len, no_shows.values()))} on {len(no_shows)} trips "
        f"(expected {sum(map(len, predicted.values()))} on {len(predicted)} trips)"
    )
    predicted_ledger = wave.expected["subsidies"]
    if rates is None and api_rates is not None:
        # No rates of our own: predict at the rates the API pays.
        states = expected_states(wave, now=now, rules=rules_from(settings))
        paying = SubsidyRates(**api_rates)
        predicted_ledger = summarise_ledger(expected_ledger(wave, states, paying))
    paid_total = sum((amount for _, amount in paid.values()), Decimal(0))
    paid_loops = sum(workers for workers, _ in paid.values())
    shown_rates = (
        ", ".join(f"{way} {_yuan(api_rates[way])}" for way in WAYS) if api_rates else "none read"
    )
    print(
        f"subsidies  total {_yuan(paid_total)} yuan "
        f"(expected {_yuan(predicted_ledger['total_yuan'])}) for {paid_loops} verified loops "
        f"(expected {predicted_ledger['workers']}); yuan per worker: {shown_rates}"
    )
    rates_agree = rates is None or api_rates == {way: getattr(rates, way) for way in WAYS}
    if not rates_agree:
        print(f"MISMATCH: the API pays other rates than the demo's ({rates})")
    ok = all(seen.get(s, 0) == expected.get(s, 0) for s in SUMMARY_ORDER)
    ok = ok and open_alerts == wave.expected["open_alerts"] and no_shows == predicted
    ok = ok and rates_agree and paid == predicted_ledger["enterprises"]
    print("every loop ended as expected" if ok else "MISMATCH: see the counts above", flush=True)
    return ok


def _kinds(dispositions: list[dict[str, str]]) -> str:
    counts = Counter(body["kind"] for body in dispositions)
    return ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()))
