"""Supervisors' views: an enterprise's roster, who is not back and its daily tick-off, the
districts, a trip's table, the alert queue; the lists also as CSV and XLSX."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import AfterValidator, BaseModel, Field

from services.api.auth import Principal, Role
from services.api.deps import ContextDep, require
from services.api.errors import ApiError
from services.api.exports import EXPORT_RESPONSES, ExportFormatDep, export
from services.api.scope import may_read_enterprise, plausible
from shared.adapters.postgres.supervision import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, InvalidCursor
from shared.contract import printable
from shared.domain.vocabulary import AlertKind, Stage, Status, Travel

router = APIRouter(tags=["supervision"])

Reader = Annotated[Principal, Depends(require(Role.GATE, Role.SUPERVISOR, Role.ADMIN))]
Supervisor = Annotated[Principal, Depends(require(Role.SUPERVISOR, Role.ADMIN))]
Filter = Annotated[
    Annotated[str, AfterValidator(printable)] | None, Query(min_length=1, max_length=128)
]


class RosterOut(BaseModel):
    enterprise_id: str
    expected: int
    departed: int
    in_transit: int
    arrived: int
    checked_in: int
    held: int
    broken: int
    withdrawn: Annotated[int, Field(description="will not return this wave (a disposition)")]
    on_post_ratio: float
    shortage: int


class NamedRosterOut(RosterOut):
    name: str | None
    district: str | None
    open_positions: int | None


class EnterprisesOut(BaseModel):
    enterprises: list[NamedRosterOut]


class NotBackWorkerOut(BaseModel):
    worker_ref: str
    id_masked: str
    name: str | None
    trip_id: str | None
    travel: Travel
    stage: Stage
    status: Status
    open_alerts: list[AlertKind]


class NotBackOut(BaseModel):
    enterprise_id: str
    as_of: str
    count: int
    workers: Annotated[
        list[NotBackWorkerOut],
        Field(description="everyone on the manifest not yet checked in here (应返未返), by name"),
    ]


class DayOut(BaseModel):
    date: Annotated[str, Field(description="a calendar day in RETURNLOOP_TIMEZONE")]
    expected: int
    checked_in: Annotated[int, Field(description="on post by the end of the day")]
    newly_checked_in: int
    on_post_ratio: float


class DailyOut(BaseModel):
    enterprise_id: str
    days: list[DayOut]


class DistrictOut(BaseModel):
    district: Annotated[str | None, Field(description="null: enterprises with no district")]
    enterprises: int
    expected: int
    checked_in: int
    on_post_ratio: float
    held: int
    broken: int
    withdrawn: int


class DistrictsOut(BaseModel):
    districts: list[DistrictOut]


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


@router.get("/enterprises", response_model=EnterprisesOut, responses=EXPORT_RESPONSES)
async def list_enterprises(
    context: ContextDep, principal: Supervisor, format: ExportFormatDep
) -> Any:
    """Every enterprise's roster, one table for all (supervisors' overview)."""
    rosters = await context.supervision.rosters(district=principal.district)
    if format != "json":
        return export(rosters, NamedRosterOut, format=format, name="enterprises")
    return {"enterprises": rosters}


@router.get("/enterprises/{enterprise_id}/roster", response_model=RosterOut)
async def get_roster(enterprise_id: str, context: ContextDep, principal: Reader) -> Any:
    """One enterprise's roster: expected, departed, in transit, arrived, on post, held, broken."""
    # A gate sees only its own enterprise, a district's supervisor its district's; others
    # are "not found" to them.
    roster = (
        await context.supervision.roster(enterprise_id, district=principal.district)
        if plausible(enterprise_id) and principal.may_read_enterprise(enterprise_id)
        else None
    )
    if roster is None:
        raise ApiError(404, "not_found", "no such enterprise")
    return roster


@router.get(
    "/enterprises/{enterprise_id}/not_back",
    response_model=NotBackOut,
    responses=EXPORT_RESPONSES,
)
async def get_not_back(
    enterprise_id: str, context: ContextDep, principal: Reader, format: ExportFormatDep
) -> Any:
    """Who is on the enterprise's manifest and not yet checked in there (应返未返), by name."""
    if not await may_read_enterprise(context, principal, enterprise_id):
        raise ApiError(404, "not_found", "no such enterprise")
    as_of = datetime.now(UTC).isoformat()
    workers = context.bureau.not_back(enterprise_id)
    if format != "json":
        return export(workers, NotBackWorkerOut, format=format, name=f"not_back-{enterprise_id}")
    listed = [worker async for worker in workers]
    return {"enterprise_id": enterprise_id, "as_of": as_of, "count": len(listed), "workers": listed}


@router.get("/enterprises/{enterprise_id}/daily", response_model=DailyOut)
async def get_daily(enterprise_id: str, context: ContextDep, principal: Reader) -> Any:
    """The enterprise's progress day by day (RETURNLOOP_TIMEZONE) toward 100 % on post."""
    if not await may_read_enterprise(context, principal, enterprise_id):
        raise ApiError(404, "not_found", "no such enterprise")
    days = await context.bureau.daily(
        enterprise_id, zone=context.settings.zone, now=datetime.now(UTC)
    )
    return {"enterprise_id": enterprise_id, "days": days}


@router.get("/districts", response_model=DistrictsOut, responses=EXPORT_RESPONSES)
async def list_districts(
    context: ContextDep, principal: Supervisor, format: ExportFormatDep
) -> Any:
    """The enterprises' rosters summed per district (county or district)."""
    districts = await context.supervision.districts(district=principal.district)
    if format != "json":
        return export(districts, DistrictOut, format=format, name="districts")
    return {"districts": districts}


@router.get("/trips", response_model=TripsOut, responses=EXPORT_RESPONSES)
async def list_trips(
    context: ContextDep,
    principal: Supervisor,
    format: ExportFormatDep,
    with_missing_only: bool = False,
) -> Any:
    """Every trip's counts, soonest ``eta`` first; optionally only those with workers missing."""
    trips = await context.supervision.trips(
        with_missing_only=with_missing_only, district=principal.district
    )
    if format != "json":
        return export(trips, TripSummaryOut, format=format, name="trips")
    return {"trips": trips}


@router.get("/trips/{trip_id}", response_model=TripOut)
async def get_trip(trip_id: str, context: ContextDep, principal: Supervisor) -> Any:
    """One trip's table: manifest, boarded, arrived, who is missing, who is not on the manifest."""
    grace = timedelta(minutes=context.settings.boarding_grace_minutes)
    trip = (
        await context.supervision.trip(trip_id, boarding_grace=grace, district=principal.district)
        if plausible(trip_id)
        else None
    )
    if trip is None:
        raise ApiError(404, "not_found", "no such trip")
    return trip


@router.get("/alerts", response_model=AlertPageOut, responses=EXPORT_RESPONSES)
async def list_alerts(
    context: ContextDep,
    principal: Reader,
    format: ExportFormatDep,
    status: Literal["open", "closed", "all"] = "open",
    kind: AlertKind | None = None,
    enterprise_id: Filter = None,
    trip_id: Filter = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
) -> Any:
    """A page of alerts, newest first; pass ``next_cursor`` back as ``cursor`` for the next.
    As CSV or XLSX: every alert the filters admit (no pages)."""
    if principal.role is Role.GATE:
        if principal.enterprise_id is None or enterprise_id not in (None, principal.enterprise_id):
            raise ApiError(403, "forbidden", "a gate reads only its own enterprise's alerts")
        enterprise_id = principal.enterprise_id
    filters = {
        "status": status,
        "kind": kind,
        "enterprise_id": enterprise_id,
        "trip_id": trip_id,
        "district": principal.district,
    }
    if format != "json":
        return export(
            context.supervision.all_alerts(**filters), AlertOut, format=format, name="alerts"
        )
    try:
        return await context.supervision.alerts(**filters, cursor=cursor, limit=limit)
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
    alert = await context.supervision.acknowledge(
        alert_id, principal.actor, body.note, district=principal.district
    )
    if alert is None:
        raise ApiError(404, "not_found", "no such alert")
    return alert
