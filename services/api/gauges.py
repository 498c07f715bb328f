"""The gauges read from PostgreSQL (workers by stage, open alerts, enterprises' and
districts' rosters), refreshed when ``/metrics`` is scraped.

Read on a timer, they cost the database four set-based reads every few seconds
whether anyone looked or not (~95 ms of PostgreSQL at 116,000 workers, growing with
them), and the API's event loop the time to turn them into samples, which showed as
stalls in every request's tail. Read on a scrape, at most every ``max_age_s``, they
cost what the dashboards ask for, and are never older than that when served.
"""

from __future__ import annotations

import asyncio
import logging
import time

from shared.adapters.metrics import Metrics
from shared.adapters.postgres.read_model import LoopReadModel
from shared.adapters.postgres.supervision import ROSTER_STATES, SupervisorReads

logger = logging.getLogger(__name__)

# The district gauge's states, and its label for enterprises with no district.
DISTRICT_STATES = ("expected", "checked_in", "held", "broken", "withdrawn")
NO_DISTRICT = "(none)"


class DatabaseGauges:
    """Refreshes ``metrics``' gauges read from PostgreSQL, one refresh at a time."""

    def __init__(
        self,
        metrics: Metrics,
        read_model: LoopReadModel,
        supervision: SupervisorReads,
        *,
        max_age_s: float = 5.0,
    ) -> None:
        self.metrics = metrics
        self.read_model = read_model
        self.supervision = supervision
        self.max_age_s = max_age_s
        self._refreshed_at: float | None = None
        self._lock = asyncio.Lock()

    async def refresh_if_stale(self) -> None:
        """Read the gauges again unless the last read is younger than ``max_age_s``.

        Scrapes arriving together share one read. A failed read is logged and keeps
        the last values (the next scrape tries again): the rest of the scrape is served.
        """
        async with self._lock:
            if (
                self._refreshed_at is not None
                and time.monotonic() - self._refreshed_at < self.max_age_s
            ):
                return
            try:
                await self.refresh()
            except Exception:
                logger.warning("could not refresh the gauges read from PostgreSQL", exc_info=True)
                return
            self._refreshed_at = time.monotonic()

    async def refresh(self) -> None:
        """The enterprise and district gauges come from the same roster query the API
        serves."""
        workers = await self.read_model.workers_by_stage_status()
        open_alerts = await self.read_model.open_alerts_by_kind()
        rosters = await self.supervision.rosters()
        districts = await self.supervision.districts()
        metrics = self.metrics
        metrics.workers.replace({(stage, status): n for stage, status, n in workers})
        metrics.open_alerts.replace({(kind,): n for kind, n in open_alerts})
        metrics.enterprise_workers.replace(
            {
                (roster["enterprise_id"], state): roster[state]
                for roster in rosters
                for state in ROSTER_STATES
            }
        )
        metrics.district_workers.replace(
            {
                (district["district"] or NO_DISTRICT, state): district[state]
                for district in districts
                for state in DISTRICT_STATES
            }
        )
