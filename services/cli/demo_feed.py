"""Feed a demo wave through the API and summarise how the loops ended."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime

import httpx
from tqdm import tqdm

from services.cli.demo import build_wave
from shared.adapters.postgres.pool import create_pool
from shared.domain.vocabulary import Status
from shared.identity import Pseudonymiser
from shared.settings import Settings, rules_from

# The summary's order: the loops that ended well first.
SUMMARY_ORDER = (Status.CLOSED, Status.HELD, Status.BROKEN, Status.OPEN)

BATCH = 500


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
) -> bool:
    """Post the wave's manifest and scans, wait until every scan is applied, print a summary.

    Returns whether every loop ended as the pure domain says it should.
    """
    wave = build_wave(size, now=now, rules=rules_from(settings), seed=seed)
    headers = {"Authorization": f"Bearer {admin_token}"}
    trips = wave.manifest["trips"]
    modes = Counter(trip["mode"] for trip in trips)
    print(
        f"demo wave ({size}): {len(wave.manifest['workers'])} workers, "
        f"{len(wave.manifest['enterprises'])} enterprises, {modes['bus']} buses, "
        f"{modes['train']} trains, {modes['flight']} flights, {len(wave.scans)} scans "
        f"(with duplicates and out-of-order delivery)",
        flush=True,
    )
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=60) as client:
        response = await client.post("/v1/manifests", json=wave.manifest)
        response.raise_for_status()
        rejected = 0
        with tqdm(total=len(wave.scans), unit="scan", desc="scans sent", disable=None) as bar:
            for start in range(0, len(wave.scans), BATCH):
                chunk = wave.scans[start : start + BATCH]
                response = await client.post("/v1/scans", json={"scans": chunk})
                response.raise_for_status()
                rejected += sum(r["status"] == "rejected" for r in response.json()["results"])
                bar.update(len(chunk))
    sent_after = time.monotonic() - started
    pseudonymiser = Pseudonymiser(worker_ref_key)
    refs = [pseudonymiser.worker_ref(id_number) for id_number in wave.id_numbers]
    unique_scans = len({scan["scan_id"] for scan in wave.scans})
    pool = await create_pool(database_url, max_size=2)
    try:
        deadline = time.monotonic() + settle_timeout_s
        with tqdm(total=unique_scans, unit="scan", desc="scans applied", disable=None) as bar:
            while True:
                applied = await pool.fetchval(
                    "SELECT count(*) FROM applied_scans WHERE worker_ref = ANY($1::text[])", refs
                )
                bar.update(applied - bar.n)
                if applied >= unique_scans:
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
            "SELECT kind, count(*) AS n FROM alerts WHERE open AND worker_ref = ANY($1::text[]) "
            "GROUP BY 1",
            refs,
        )
    finally:
        await pool.close()
    settled_after = time.monotonic() - started
    print(
        f"sent {len(wave.scans)} scans in {sent_after:.1f} s; every one applied after "
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
    ok = all(seen.get(s, 0) == expected.get(s, 0) for s in SUMMARY_ORDER)
    ok = ok and open_alerts == wave.expected["open_alerts"]
    print("every loop ended as expected" if ok else "MISMATCH: see the counts above", flush=True)
    return ok
