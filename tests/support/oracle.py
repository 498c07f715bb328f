"""The oracle: the pure domain folded over the same scans the system was sent."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from services.cli.demo import to_domain_scan
from shared.domain.model import Assignment, LoopState, Rules, Scan, decide
from shared.identity import Pseudonymiser


def expected_states(
    bodies: list[dict[str, Any]],
    pseudonymiser: Pseudonymiser,
    *,
    now: datetime,
    assignments: dict[str, Assignment] | None = None,
    rules: Rules | None = None,
) -> dict[str, LoopState]:
    """worker_ref -> the state event-time order gives (duplicates counted once)."""
    scans: dict[str, list[Scan]] = defaultdict(list)
    for body in bodies:
        scans[pseudonymiser.worker_ref(body["id_number"])].append(to_domain_scan(body))
    return {
        ref: decide(
            worker_scans,
            now=now,
            assignment=(assignments or {}).get(ref, Assignment()),
            rules=rules or Rules(),
        )
        for ref, worker_scans in scans.items()
    }
