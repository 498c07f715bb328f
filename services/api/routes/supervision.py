"""Supervisors' views: an enterprise's roster, a trip's table, the alert queue."""

from __future__ import annotations

import unicodedata
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import AfterValidator, BaseModel, Field

from services.api.auth import Principal, Role
from services.api.deps import ContextDep, require
from services.api.errors import ApiError
from shared.adapters.postgres.supervision import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, InvalidCursor
from shared.contract import printable
from shared.domain.vocabulary import AlertKind

router = APIRouter(tags=["supervision"])

Reader = Annotated[Principal, Depends(require(Role.GATE, Role.SUPERVISOR, Role.ADMIN))]
Supervisor = Annotated[Principal, Depends(require(Role.SUPERVISOR, Role.ADMIN))]
Filter = Annotated[
    Annotated[str, AfterValidator(printable)] | None, Query(min_length=1, max_length=128)
]


def _plausible(identifier: str) -> bool:
    """Whether an id from a path could name anything (the manifest caps ids at 128)."""
    return len(identifier) <= 128 and not any(
        unicodedata.category(char) == "Cc" for char in identifier
    )


class RosterOut(BaseModel):
    enterprise_id: str
    expected: int
    departed: int
    in_transit: int
    arrived: int
    checked_in: int
    held: int
    broken: int
    on_post_ratio: float
    shortage: int


class NamedRosterOut(RosterOut):
    name: str | None


class EnterprisesOut(BaseModel):
    enterprises: list[NamedRosterOut]


class NamedWorkerOut(BaseModel):
    worker_ref: str
    id_masked: str
    name: str | None


class TripOut(BaseModel):
    trip_id: str
    mode: str | None
    departs_at: str | None
    manifest: int
    boarded: int
    arrived: int
    missing: list[str]
    not_on_manifest: list[str]
    no_show: Annotated[
        list[str],
        Field(description="on the manifest, no boarding, past departs_at + the boarding grace"),
    ]
    workers: Annotated[
        list[NamedWorkerOut], Field(description="name and masked ID of everyone listed above")
    ]


class TripSummaryOut(BaseModel):
    trip_id: str
    mode: str | None
    origin: str | None
    destination: str | None
    departs_at: str | None
    eta: str | None
    manifest: int
    boarded: int
    arrived: int
    missing_count: int
    not_on_manifest_count: int


class TripsOut(BaseModel):
    trips: list[TripSummaryOut]


class AlertOut(BaseModel):
    alert_id: int
    worker_ref: str
    id_masked: str | None
    name: str | None
    enterprise_id: str | None
    trip_id: str | None
    kind: str
    raised_at: str
    open: bool
    closed_at: str | None
    acknowledged_at: str | None
    acknowledged_by: str | None
    resolution_note: str | None


class AlertPageOut(BaseModel):
    alerts: list[AlertOut]
    next_cursor: str | None


def _note_text(value: str) -> str:
    # A note may run over lines; other control characters cannot be shown safely.
    printable(value.replace("\r\n", " ").replace("\n", " ").replace("\t", " "))
    return value


class AcknowledgeIn(BaseModel):
    note: Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_note_text)]


@router.get("/enterprises", response_model=EnterprisesOut)
async def list_enterprises(context: ContextDep, _: Supervisor) -> Any:
    """Every enterprise's roster, one table for all (supervisors' overview)."""
    return {"enterprises": await context.supervision.rosters()}


@router.get("/enterprises/{enterprise_id}/roster", response_model=RosterOut)
async def get_roster(enterprise_id: str, context: ContextDep, principal: Reader) -> Any:
    """One enterprise's roster: expected, departed, in transit, arrived, on post, held, broken."""
    # A gate sees only its own enterprise; others are "not found" to it.
    roster = (
        await context.supervision.roster(enterprise_id)
        if _plausible(enterprise_id) and principal.may_read_enterprise(enterprise_id)
        else None
    )
    if roster is None:
        raise ApiError(404, "not_found", "no such enterprise")
    return roster


@router.get("/trips", response_model=TripsOut)
async def list_trips(context: ContextDep, _: Supervisor, with_missing_only: bool = False) -> Any:
    """Every trip's counts, soonest ``eta`` first; optionally only those with workers missing."""
    return {"trips": await context.supervision.trips(with_missing_only=with_missing_only)}


@router.get("/trips/{trip_id}", response_model=TripOut)
async def get_trip(trip_id: str, context: ContextDep, _: Supervisor) -> Any:
    """One trip's table: manifest, boarded, arrived, who is missing, who is not on the manifest."""
    grace = timedelta(minutes=context.settings.boarding_grace_minutes)
    trip = (
        await context.supervision.trip(trip_id, boarding_grace=grace)
        if _plausible(trip_id)
        else None
    )
    if trip is None:
        raise ApiError(404, "not_found", "no such trip")
    return trip


@router.get("/alerts", response_model=AlertPageOut)
async def list_alerts(
    context: ContextDep,
    principal: Reader,
    status: Literal["open", "closed", "all"] = "open",
    kind: AlertKind | None = None,
    enterprise_id: Filter = None,
    trip_id: Filter = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
) -> Any:
    """A page of alerts, newest first; pass ``next_cursor`` back as ``cursor`` for the next."""
    if principal.role is Role.GATE:
        if principal.enterprise_id is None or enterprise_id not in (None, principal.enterprise_id):
            raise ApiError(403, "forbidden", "a gate reads only its own enterprise's alerts")
        enterprise_id = principal.enterprise_id
    try:
        return await context.supervision.alerts(
            status=status,
            kind=kind,
            enterprise_id=enterprise_id,
            trip_id=trip_id,
            cursor=cursor,
            limit=limit,
        )
    except InvalidCursor as problem:
        raise ApiError(400, "invalid_cursor", str(problem)) from None


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertOut)
async def acknowledge_alert(
    alert_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    body: AcknowledgeIn,
    context: ContextDep,
    principal: Supervisor,
) -> Any:
    """Acknowledge an alert: who, when and how it was handled (it stays open until resolved)."""
    alert = await context.supervision.acknowledge(alert_id, principal.actor, body.note)
    if alert is None:
        raise ApiError(404, "not_found", "no such alert")
    return alert
