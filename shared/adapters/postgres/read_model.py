"""The read model: the loop view of one worker, and the counts the gauges show."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared.domain.decisions import WorkerFacts
from shared.domain.model import Alert, Checkpoint, LoopState
from shared.domain.vocabulary import AlertKind, HealthCode, Kind, Stage, Status, Travel

_KINDS = {kind.value: kind for kind in Kind}
# The columns of the alert and disposition rows a loop view reads (anonymous records).
_ALERT_FIELDS = ("kind", "raised_at", "open", "closed_at")
_DISPOSITION_FIELDS = ("disposition_id", "kind", "at", "recorded_by", "note")

# One worker with their state, alerts and dispositions (``$1``: the worker_ref).
_WORKER = """
    SELECT w.worker_ref, w.id_masked, w.name, w.enterprise_id, w.trip_id, w.travel,
           w.updated_at AS worker_updated_at, s.stage, s.status, s.health_code,
           s.health_code_at, s.checkpoints, s.boarded_trip_id, s.departed,
           s.arrived, s.checked_in_enterprise_id,
           s.updated_at AS state_updated_at,
           (w.enterprise_id IS NOT NULL OR w.trip_id IS NOT NULL) AS on_manifest,
           ARRAY(SELECT ROW(a.kind, a.raised_at, a.open, a.closed_at) FROM alerts a
                 WHERE a.worker_ref = w.worker_ref
                 ORDER BY a.raised_at, a.kind) AS alerts,
           ARRAY(SELECT ROW(d.disposition_id, d.kind, d.at, d.recorded_by, d.note)
                 FROM dispositions d WHERE d.worker_ref = w.worker_ref
                 ORDER BY d.at, d.disposition_id) AS dispositions
    FROM workers w LEFT JOIN loop_state s USING (worker_ref)
    WHERE w.worker_ref = $1
"""

# The same, and the read entered in the access audit if the worker exists
# (``$2``..``$5``: actor, role, action, detail).
_WORKER_AUDITED = f"""
    WITH found AS ({_WORKER}),
         audited AS (
             INSERT INTO access_audit (actor, role, action, worker_ref, detail)
             SELECT $2, $3, $4, worker_ref, $5 FROM found)
    SELECT * FROM found
"""


@dataclass(frozen=True)
class AuditedRead:
    """Who reads a worker, for the access audit (``LinkStore.audit``'s columns)."""

    actor: str
    role: str
    action: str
    detail: str = ""


def loop_view(
    worker: asyncpg.Record,
    alerts: Sequence[Mapping[str, Any]],
    dispositions: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The contract's loop view of one worker (no plain ID number, ever)."""
    return {
        "worker_ref": worker["worker_ref"],
        "id_masked": worker["id_masked"],
        "name": worker["name"],
        "enterprise_id": worker["enterprise_id"],
        "trip_id": worker["trip_id"] or worker["boarded_trip_id"],
        "travel": worker["travel"],
        "stage": worker["stage"] or Stage.REGISTERED.value,
        "status": worker["status"] or Status.OPEN.value,
        "health_code": worker["health_code"],
        "checkpoints": worker["checkpoints"] or {},
        "alerts": [
            {
                "kind": alert["kind"],
                "raised_at": alert["raised_at"].isoformat(),
                "open": alert["open"],
                "closed_at": alert["closed_at"].isoformat() if alert["closed_at"] else None,
            }
            for alert in alerts
        ],
        "dispositions": [
            {
                "disposition_id": row["disposition_id"],
                "kind": row["kind"],
                "at": row["at"].isoformat(),
                "by": row["recorded_by"],
                "note": row["note"],
            }
            for row in dispositions
        ],
        "updated_at": (worker["state_updated_at"] or worker["worker_updated_at"]).isoformat(),
    }


class LoopReadModel:
    """Reads of the current-state tables for the API and the gauges."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def _worker(
        self, worker_ref: str, audit: AuditedRead | None = None
    ) -> tuple[asyncpg.Record, list[dict[str, Any]], list[dict[str, Any]]] | None:
        # One statement, so one snapshot for the worker, its alerts and its dispositions
        # (a tracker commit between separate reads showed a status from before it beside
        # alerts or dispositions from after it), and one round trip instead of five.
        if audit is None:
            worker = await self.pool.fetchrow(_WORKER, worker_ref)
        else:
            # The access audit's entry in the same statement, written only if the worker
            # exists: a round trip and a transaction fewer a read (~15 % of a lookup's CPU).
            worker = await self.pool.fetchrow(
                _WORKER_AUDITED,
                worker_ref,
                audit.actor,
                audit.role,
                audit.action,
                audit.detail,
            )
        if worker is None:
            return None
        alerts = [dict(zip(_ALERT_FIELDS, row, strict=True)) for row in worker["alerts"]]
        dispositions = [
            dict(zip(_DISPOSITION_FIELDS, row, strict=True)) for row in worker["dispositions"]
        ]
        return worker, alerts, dispositions

    async def loop_view(
        self, worker_ref: str, *, audit: AuditedRead | None = None
    ) -> dict[str, Any] | None:
        """The worker's loop view, ``None`` if no such worker; with ``audit``, the read is
        entered in the access audit (in the same statement) when the worker exists."""
        found = await self._worker(worker_ref, audit)
        return loop_view(*found) if found is not None else None

    async def decision_facts(self, worker_ref: str) -> tuple[dict[str, Any], WorkerFacts] | None:
        """The loop view and what a checkpoint decision needs to know of the worker."""
        found = await self._worker(worker_ref)
        if found is None:
            return None
        worker, alerts, dispositions = found
        checkpoints = {
            _KINDS[kind]: Checkpoint(
                scan_id=body.get("scan_id", ""),
                at=datetime.fromisoformat(body["at"]),
                passed=bool(body["passed"]),
                station=body.get("station", ""),
            )
            for kind, body in (worker["checkpoints"] or {}).items()
            if kind in _KINDS
        }
        state = LoopState(
            stage=Stage(worker["stage"] or Stage.REGISTERED),
            status=Status(worker["status"] or Status.OPEN),
            checkpoints=checkpoints,
            alerts=tuple(
                Alert(AlertKind(a["kind"]), a["raised_at"], a["open"], a["closed_at"])
                for a in alerts
            ),
            health_code=HealthCode(worker["health_code"]) if worker["health_code"] else None,
            health_code_at=worker["health_code_at"],
            departed=bool(worker["departed"]),
            boarded_trip_id=worker["boarded_trip_id"],
            arrived=bool(worker["arrived"]),
            checked_in_enterprise_id=worker["checked_in_enterprise_id"],
        )
        facts = WorkerFacts(
            on_manifest=worker["on_manifest"],
            enterprise_id=worker["enterprise_id"],
            trip_id=worker["trip_id"],
            travel=Travel(worker["travel"]),
            state=state,
        )
        return loop_view(worker, alerts, dispositions), facts

    async def ping(self) -> bool:
        return bool(await self.pool.fetchval("SELECT 1"))

    async def worker_enterprise(self, worker_ref: str) -> tuple[bool, str | None]:
        """Whether the worker is known, and the enterprise their manifest names."""
        row = await self.pool.fetchrow(
            "SELECT enterprise_id FROM workers WHERE worker_ref = $1", worker_ref
        )
        return (row is not None, row["enterprise_id"] if row else None)

    async def workers_by_stage_status(self) -> list[tuple[str, str, int]]:
        rows = await self.pool.fetch(
            """
            SELECT coalesce(s.stage, 'registered') AS stage, coalesce(s.status, 'open') AS status,
                   count(*) AS n
            FROM workers w LEFT JOIN loop_state s USING (worker_ref)
            GROUP BY 1, 2
            """
        )
        return [(row["stage"], row["status"], row["n"]) for row in rows]

    async def open_alerts_by_kind(self) -> list[tuple[str, int]]:
        rows = await self.pool.fetch(
            "SELECT kind, count(*) AS n FROM alerts WHERE open GROUP BY kind"
        )
        return [(row["kind"], row["n"]) for row in rows]
