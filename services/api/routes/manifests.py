"""Manifests: enterprises, trips and the workers expected on them (admin)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, model_validator

from services.api.auth import Principal, Role
from services.api.deps import ContextDep, require
from services.api.errors import ApiError
from shared.contract import aware_in_range, printable
from shared.domain.vocabulary import Travel
from shared.identity import InvalidIdNumber, mask_id_number, normalise_id_number

router = APIRouter(tags=["manifests"])

Text = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(printable)]
Name = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(printable)]
Moment = Annotated[AwareDatetime, AfterValidator(aware_in_range)]


def _last_wins(items: list[Any], key: str) -> list[Any]:
    """A manifest may name an entry twice; the later one counts (as in a sequential upsert)."""
    return list({getattr(item, key): item for item in items}.values())


class EnterpriseIn(BaseModel):
    enterprise_id: Text
    name: Name
    shortage: Annotated[int, Field(ge=0, le=10_000_000)] = 0
    district: Text | None = None
    open_positions: Annotated[int, Field(ge=0, le=10_000_000)] | None = None


class TripIn(BaseModel):
    trip_id: Text
    mode: Literal["bus", "train", "flight"]
    origin: Text
    destination: Text
    departs_at: Moment
    eta: Moment


class WorkerIn(BaseModel):
    id_number: str
    name: Name
    enterprise_id: Text | None = None
    trip_id: Text | None = None
    travel: Travel = Travel.ORGANISED
    # For a self-arranged journey: when the worker should reach the arrival recheck.
    expected_arrival: Moment | None = None

    @model_validator(mode="after")
    def _self_travel_has_no_trip(self) -> WorkerIn:
        if self.travel is Travel.SELF and self.trip_id is not None:
            raise ValueError("a worker travelling on their own (travel: self) has no trip_id")
        return self


class ManifestIn(BaseModel):
    enterprises: Annotated[list[EnterpriseIn], Field(max_length=10_000)] = []
    trips: Annotated[list[TripIn], Field(max_length=10_000)] = []
    workers: Annotated[list[WorkerIn], Field(max_length=50_000)] = []


class ManifestOut(BaseModel):
    enterprises: int
    trips: int
    workers: int


@router.post("/manifests", response_model=ManifestOut)
async def post_manifests(
    body: ManifestIn,
    context: ContextDep,
    _: Annotated[Principal, Depends(require(Role.ADMIN, Role.INTEGRATOR))],
) -> Any:
    """Upsert enterprises, trips and workers; the ID numbers are pseudonymised here."""
    workers = []
    for index, worker in enumerate(body.workers):
        try:
            id_number = normalise_id_number(worker.id_number)
        except InvalidIdNumber as problem:
            raise ApiError(422, problem.code, f"workers[{index}]: {problem}") from None
        workers.append(
            {
                "worker_ref": context.pseudonymiser.worker_ref(id_number),
                "id_masked": mask_id_number(id_number),
                "name": worker.name,
                "enterprise_id": worker.enterprise_id,
                "trip_id": worker.trip_id,
                "travel": worker.travel.value,
                "expected_arrival": worker.expected_arrival,
                "id_number_encrypted": context.id_cipher.encrypt(id_number)
                if context.id_cipher
                else None,
            }
        )
    await context.manifests.upsert_manifest(
        [e.model_dump() for e in _last_wins(body.enterprises, "enterprise_id")],
        [t.model_dump() for t in _last_wins(body.trips, "trip_id")],
        list({worker["worker_ref"]: worker for worker in workers}.values()),
    )
    return {"enterprises": len(body.enterprises), "trips": len(body.trips), "workers": len(workers)}
