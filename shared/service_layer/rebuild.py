"""``returnloop rebuild``: recompute every worker's loop state from the applied-scan log.

Workers are paged in ``worker_ref`` order (keyset pagination); each page is
re-decided by the pure domain in one transaction that holds the page's worker
rows locked, exactly as a tracker batch locks them, so a rebuild may run next
to a running tracker. Stored alerts stay as history (``model.apply``
reconciles them); states and alerts are written set-based per page.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from tqdm import tqdm

from shared.domain.model import Rules
from shared.identity import WORKER_REF_PREFIX
from shared.service_layer.handlers import redecide_workers
from shared.service_layer.ports import LoopStore


@dataclass
class RebuildReport:
    workers: int = 0
    scans: int = 0
    corrected: int = 0
    seconds: float = 0.0

    @property
    def scans_per_second(self) -> float:
        return self.scans / self.seconds if self.seconds > 0 else 0.0


def key_ranges(count: int) -> list[tuple[str, str | None]]:
    """``count`` ranges of worker_ref (``w_`` and 24 hex digits, uniformly spread by the
    HMAC) that cover every string once: (after, before), the first after "", the last
    unbounded.

    A bound is the prefix and 4 hex digits, which no worker_ref equals, so none falls
    between two ranges.
    """
    bounds = [f"{WORKER_REF_PREFIX}{index * 16**4 // count:04x}" for index in range(1, count)]
    starts = ["", *bounds]
    ends: list[str | None] = [*bounds, None]
    return list(zip(starts, ends, strict=True))


async def rebuild(
    store: LoopStore,
    *,
    rules: Rules,
    chunk_size: int = 1000,
    jobs: int = 2,
    progress: bool = True,
    key_range: tuple[str, str | None] = ("", None),
    on_page: Callable[[int], None] | None = None,
) -> RebuildReport:
    """Re-decide every worker with history (in ``key_range``: after, before); ``jobs``
    pages are in flight at once; ``on_page(scans)`` after each page."""
    report = RebuildReport()
    total = await store.applied_scan_count() if progress else 0
    pages: asyncio.Queue[dict[str, str] | None] = asyncio.Queue(maxsize=jobs * 2)
    started = time.perf_counter()
    bar = tqdm(total=total, unit="scan", desc="rebuild", disable=not progress or None)
    lower, upper = key_range

    async def page_through() -> None:
        after = lower
        while page := await store.workers_after(after, chunk_size, upper):
            await pages.put(page)
            after = next(reversed(page))  # the page is in the database's key order
        for _ in range(jobs):
            await pages.put(None)

    async def redecide() -> None:
        while (page := await pages.get()) is not None:
            transitions = await redecide_workers(store, page, rules=rules, now=datetime.now(UTC))
            scans = sum(len(t.transition.history.scans) for t in transitions)
            report.workers += len(transitions)
            report.scans += scans
            report.corrected += sum(t.transition.changed for t in transitions)
            bar.update(scans)
            if on_page is not None:
                on_page(scans)

    try:
        await asyncio.gather(page_through(), *(redecide() for _ in range(jobs)))
    finally:
        bar.close()
    report.seconds = time.perf_counter() - started
    return report
