"""Manifests: enterprises, trips and the workers expected on them (admin, integrator); the
workers also as a spreadsheet: an empty template, and an import answered row by row."""

from __future__ import annotations

import asyncio
import tempfile
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, Field

from services.api.auth import Principal, Role
from services.api.deps import ContextDep, require
from services.api.errors import ApiError
from shared.adapters.spreadsheets import (
    CSV_MEDIA_TYPE,
    MEDIA_TYPES,
    XLSX_MEDIA_TYPE,
    SheetFormat,
    UnreadableSheet,
    attachment,
    open_sheet,
    row_batches,
    template,
)
from shared.contract import ManifestName as Name
from shared.contract import ManifestText as Text
from shared.contract import Moment, WorkerIn
from shared.identity import InvalidIdNumber, mask_id_number, normalise_id_number
from shared.service_layer.manifest_import import (
    WORKER_COLUMNS,
    Identity,
    MissingColumns,
    check_header,
    import_worker_rows,
)

router = APIRouter(tags=["manifests"])

Importer = Annotated[Principal, Depends(require(Role.ADMIN, Role.INTEGRATOR))]
# An upload is kept in memory up to this size, on disk beyond it (and read from there once).
SPOOL_IN_MEMORY_BYTES = 1024 * 1024


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
    _: Importer,
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


class ImportedRowOut(BaseModel):
    row: Annotated[int, Field(description="the data row, counted from 1 below the header")]
    status: Literal["imported", "rejected"]
    reason: str | None = None
    column: Annotated[str | None, Field(description="the column at fault")] = None
    message: Annotated[str | None, Field(description="names the row and the column")] = None


class ImportOut(BaseModel):
    imported: int
    rejected: int
    rows: list[ImportedRowOut]


@router.get(
    "/manifests/template",
    response_class=Response,
    responses={
        200: {
            "description": "an empty workers sheet: the header row the import reads",
            "content": {
                CSV_MEDIA_TYPE: {"schema": {"type": "string"}},
                XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def manifest_template(_: Importer, format: SheetFormat = "csv") -> Response:
    """An empty workers sheet (CSV or XLSX) with the columns POST /v1/manifests/import reads."""
    media_type = MEDIA_TYPES[format] + ("; charset=utf-8" if format == "csv" else "")
    return Response(
        template(format, WORKER_COLUMNS, title="workers"),
        media_type=media_type,
        headers={"Content-Disposition": attachment(f"manifest-workers-template.{format}")},
    )


def _sheet_format(content_type: str | None) -> tuple[SheetFormat, str | None]:
    media_type, _, parameters = (content_type or "").partition(";")
    formats = {value: key for key, value in MEDIA_TYPES.items()}
    format = formats.get(media_type.strip().lower())
    if format is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the file as {CSV_MEDIA_TYPE} or {XLSX_MEDIA_TYPE}",
        )
    charset = None
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    return format, charset


@router.post(
    "/manifests/import",
    response_model=ImportOut,
    response_model_exclude_none=True,
    responses={415: {"description": "The body is neither CSV nor XLSX"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                CSV_MEDIA_TYPE: {"schema": {"type": "string"}},
                XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def import_manifest(
    request: Request,
    context: ContextDep,
    _: Importer,
    content_type: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Any:
    """Import a workers sheet (the template's columns) as CSV or XLSX; every row answered,
    good rows imported even when others are refused."""
    format, charset = _sheet_format(content_type)

    def identify(id_number: str) -> Identity:
        return Identity(
            worker_ref=context.pseudonymiser.worker_ref(id_number),
            id_masked=mask_id_number(id_number),
            id_number_encrypted=context.id_cipher.encrypt(id_number) if context.id_cipher else None,
        )

    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES) as upload:
        async for chunk in request.stream():
            upload.write(chunk)
        if not upload.tell():
            raise ApiError(422, "empty_file", "the body is empty: send the sheet's file")
        upload.seek(0)
        try:
            header, rows = await asyncio.to_thread(open_sheet, upload, format, charset=charset)
            check_header(header)
            report = await import_worker_rows(
                row_batches(rows),
                store=context.manifests,
                identify=identify,
                zone=context.settings.zone,
            )
        except UnreadableSheet as problem:
            raise ApiError(422, "unreadable_file", str(problem)) from None
        except MissingColumns as problem:
            raise ApiError(422, "missing_columns", str(problem)) from None
    return {
        "imported": report.imported,
        "rejected": report.rejected,
        "rows": [row.as_dict() for row in report.rows],
    }
