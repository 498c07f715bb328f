"""Transport subsidies from verified loops (contract v1.1), derived from the loop states."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from services.api.auth import Principal, Role
from services.api.deps import ContextDep, require
from services.api.errors import ApiError
from services.api.exports import EXPORT_RESPONSES, ExportFormatDep, export
from shared.domain.subsidies import ledger
from shared.domain.vocabulary import Travel
from shared.settings import subsidy_rates_from

router = APIRouter(tags=["subsidies"])

Reader = Annotated[Principal, Depends(require(Role.GATE, Role.SUPERVISOR, Role.ADMIN))]


class RatesOut(BaseModel):
    bus: float
    train: float
    flight: float
    self: float


class EnterpriseSubsidyOut(BaseModel):
    enterprise_id: str
    workers: int
    amount_yuan: float


class WorkerSubsidyOut(BaseModel):
    worker_ref: str
    id_masked: str
    name: str | None
    enterprise_id: str
    travel: Travel
    mode: str | None
    closed_at: str | None
    amount_yuan: float


class SubsidiesOut(BaseModel):
    rates: RatesOut
    total_yuan: float
    enterprises: list[EnterpriseSubsidyOut]
    workers: list[WorkerSubsidyOut]


async def subsidies_for(
    context: ContextDep, enterprise_ids: list[str] | None, *, district: str | None = None
) -> dict[str, Any]:
    """The ledger as the contract shows it: one row per subsidised worker and per enterprise
    (with ``district``, of that district's enterprises only)."""
    rates = subsidy_rates_from(context.settings)
    loops = await context.subsidy_loops.closed_loops(
        enterprise_ids=enterprise_ids, district=district
    )
    shown = {loop.worker_ref: extra for loop, extra in loops}
    paid = ledger([loop for loop, _ in loops], rates)
    per_enterprise: dict[str, list[Decimal]] = defaultdict(list)
    workers = []
    for subsidy in paid:
        loop = subsidy.loop
        assert loop.enterprise_id is not None  # the ledger pays enterprises only
        per_enterprise[loop.enterprise_id].append(subsidy.amount_yuan)
        workers.append(
            {
                "worker_ref": loop.worker_ref,
                "id_masked": shown[loop.worker_ref]["id_masked"],
                "name": shown[loop.worker_ref]["name"],
                "enterprise_id": loop.enterprise_id,
                "travel": loop.travel,
                "mode": None if loop.travel is Travel.SELF else loop.mode,
                "closed_at": loop.closed_at.isoformat() if loop.closed_at else None,
                "amount_yuan": float(subsidy.amount_yuan),
            }
        )
    return {
        "rates": {name: float(getattr(rates, name)) for name in ("bus", "train", "flight", "self")},
        "total_yuan": float(sum((s.amount_yuan for s in paid), Decimal(0))),
        "enterprises": [
            {"enterprise_id": eid, "workers": len(amounts), "amount_yuan": float(sum(amounts))}
            for eid, amounts in sorted(per_enterprise.items())
        ],
        "workers": workers,
    }


@router.get("/subsidies", response_model=SubsidiesOut, responses=EXPORT_RESPONSES)
async def get_subsidies(
    context: ContextDep,
    principal: Reader,
    format: ExportFormatDep,
    enterprise_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
) -> Any:
    """Transport subsidies earned by verified (closed) loops, per worker and per enterprise.
    As CSV or XLSX: the per-worker ledger, one row per subsidised worker."""
    if principal.role is Role.GATE:
        if enterprise_id is not None and enterprise_id != principal.enterprise_id:
            raise ApiError(403, "forbidden", "a gate reads its own enterprise's subsidies only")
        enterprise_id = principal.enterprise_id
    # A district's supervisor reads its district's enterprises only: another's pays nothing.
    subsidies = await subsidies_for(
        context, [enterprise_id] if enterprise_id else None, district=principal.district
    )
    if format != "json":
        return export(subsidies["workers"], WorkerSubsidyOut, format=format, name="subsidies")
    return subsidies
