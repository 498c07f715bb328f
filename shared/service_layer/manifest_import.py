"""Importing a manifest's workers from a spreadsheet, row by row.

Every row gets its own answer: imported, or rejected with a reason code, the
column at fault and a message naming both the row and the column. A bad row
never blocks a good one. Rows arrive in batches (the file is read as it is
imported, never held whole) and each batch's good rows are upserted together.
The template's columns are ``WORKER_COLUMNS``, the same list read here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, tzinfo
from typing import Any, Protocol

from pydantic import ValidationError

from shared.contract import WorkerIn
from shared.identity import InvalidIdNumber, normalise_id_number

# The workers sheet: the template's header and the columns the importer reads.
WORKER_COLUMNS = ("id_number", "name", "enterprise_id", "trip_id", "travel", "expected_arrival")
REQUIRED_COLUMNS = ("id_number", "name")


class ManifestImports(Protocol):
    """What an import needs of the manifest store."""

    async def known_enterprises(self, enterprise_ids: Sequence[str]) -> set[str]:
        """Those of ``enterprise_ids`` that a manifest registered."""
        ...

    async def known_trips(self, trip_ids: Sequence[str]) -> set[str]:
        """Those of ``trip_ids`` that a manifest registered."""
        ...

    async def upsert_workers(self, workers: Sequence[dict[str, Any]]) -> None:
        """Insert or update these manifest workers (``worker_ref``, ``id_masked``, …)."""
        ...


@dataclass(frozen=True)
class Identity:
    """How a worker is kept: never the plain ID number."""

    worker_ref: str
    id_masked: str
    id_number_encrypted: str | None = None


@dataclass(frozen=True)
class RowResult:
    row: int
    status: str  # "imported" | "rejected"
    reason: str | None = None
    column: str | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"row": self.row, "status": self.status}
        if self.status == "rejected":
            answer |= {"reason": self.reason, "column": self.column, "message": self.message}
        return answer


@dataclass
class ImportReport:
    imported: int = 0
    rejected: int = 0
    rows: list[RowResult] = field(default_factory=list)

    def add(self, result: RowResult) -> None:
        self.rows.append(result)
        if result.status == "imported":
            self.imported += 1
        else:
            self.rejected += 1


class MissingColumns(ValueError):
    """The header lacks columns every row needs."""


def check_header(header: Sequence[str]) -> None:
    """Raise ``MissingColumns`` when the header lacks a required column."""
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        raise MissingColumns(
            f"the header row lacks the column(s) {', '.join(missing)}; "
            f"the template's columns are {','.join(WORKER_COLUMNS)}"
        )


class _RowRefused(ValueError):
    def __init__(self, reason: str, column: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.column = column


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _moment(value: Any, zone: tzinfo) -> Any:
    """A spreadsheet's date cell (no offset: it means the configured zone) or the text."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=zone)
    return _text(value)


_TIMESTAMP_ERRORS = {
    "datetime_parsing",
    "datetime_type",
    "timezone_aware",
    "datetime_from_date_parsing",
}


def _refusal(error: ValidationError) -> _RowRefused:
    first = error.errors()[0]
    column = str(first["loc"][0]) if first["loc"] else "travel"
    if first["type"] == "missing":
        reason = "missing_field"
    elif column == "expected_arrival" and (
        first["type"] in _TIMESTAMP_ERRORS or "offset" in first["msg"] or "between" in first["msg"]
    ):
        reason = "invalid_timestamp"
    else:
        reason = "invalid_field"
    message = (
        f"the {column} is empty"
        if reason == "missing_field"
        else first["msg"].removeprefix("Value error, ")
    )
    return _RowRefused(reason, column, message)


def _worker(values: Mapping[str, Any], zone: tzinfo) -> tuple[str, WorkerIn]:
    """The row's normalised ID number and worker, or ``_RowRefused``."""
    raw_id = values.get("id_number")
    if raw_id is None:
        raise _RowRefused("missing_field", "id_number", "the ID number is empty")
    if not isinstance(raw_id, str):
        raise _RowRefused(
            "id_number_format",
            "id_number",
            "the ID number is stored as a number (a spreadsheet rounds 18 digits); "
            "format the column as text",
        )
    try:
        id_number = normalise_id_number(raw_id)
    except InvalidIdNumber as problem:
        raise _RowRefused(problem.code, "id_number", str(problem)) from None
    fields = {
        "id_number": id_number,
        "name": _text(values.get("name")),
        "enterprise_id": _text(values.get("enterprise_id")),
        "trip_id": _text(values.get("trip_id")),
        "expected_arrival": _moment(values.get("expected_arrival"), zone),
    }
    if values.get("travel") is not None:
        fields["travel"] = _text(values["travel"])
    try:
        worker = WorkerIn.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as error:
        raise _refusal(error) from None
    return id_number, worker


def _check_batch(
    batch: Sequence[Mapping[str, Any]],
    *,
    first_number: int,
    first_row_of: dict[str, int],
    identify: Callable[[str], Identity],
    zone: tzinfo,
) -> tuple[list[int], list[tuple[int, Identity, WorkerIn]], dict[int, _RowRefused]]:
    """A batch's row numbers (empty rows left out), the rows that passed every check that
    needs no database, and why the others were refused."""
    numbers: list[int] = []
    candidates: list[tuple[int, Identity, WorkerIn]] = []
    refused: dict[int, _RowRefused] = {}
    for number, values in enumerate(batch, start=first_number):
        if not values:
            continue
        numbers.append(number)
        try:
            id_number, worker = _worker(values, zone)
            identity = identify(id_number)
            earlier = first_row_of.setdefault(identity.worker_ref, number)
            if earlier != number:
                raise _RowRefused(
                    "duplicate_id_number",
                    "id_number",
                    f"the same ID number as row {earlier}; a file names a worker once",
                )
        except _RowRefused as problem:
            refused[number] = problem
            continue
        candidates.append((number, identity, worker))
    return numbers, candidates, refused


async def import_worker_rows(
    batches: AsyncIterable[Sequence[Mapping[str, Any]]],
    *,
    store: ManifestImports,
    identify: Callable[[str], Identity],
    zone: tzinfo,
) -> ImportReport:
    """Import the rows of a workers sheet (``batches`` in file order; data rows count from 1;
    an empty row ``{}`` is skipped, keeping its number) and answer for each row.

    Checking a row (its ID number's check digit, pseudonymising and encrypting it) is CPU
    work: a batch is checked in a worker thread, so other requests are served meanwhile.
    """
    report = ImportReport()
    first_row_of: dict[str, int] = {}  # worker_ref -> the row that named it first
    number = 1
    async for batch in batches:
        rows_in_batch, candidates, refused = await asyncio.to_thread(
            _check_batch,
            batch,
            first_number=number,
            first_row_of=first_row_of,
            identify=identify,
            zone=zone,
        )
        number += len(batch)
        enterprises = await store.known_enterprises(
            sorted({w.enterprise_id for _, _, w in candidates if w.enterprise_id})
        )
        trips = await store.known_trips(sorted({w.trip_id for _, _, w in candidates if w.trip_id}))
        good = []
        for row, identity, worker in candidates:
            if worker.enterprise_id is not None and worker.enterprise_id not in enterprises:
                refused[row] = _RowRefused(
                    "unknown_enterprise",
                    "enterprise_id",
                    f"no enterprise {worker.enterprise_id!r} is registered; "
                    "post it in a manifest first",
                )
            elif worker.trip_id is not None and worker.trip_id not in trips:
                refused[row] = _RowRefused(
                    "unknown_trip",
                    "trip_id",
                    f"no trip {worker.trip_id!r} is registered; post it in a manifest first",
                )
            else:
                good.append(
                    {
                        "worker_ref": identity.worker_ref,
                        "id_masked": identity.id_masked,
                        "id_number_encrypted": identity.id_number_encrypted,
                        "name": worker.name,
                        "enterprise_id": worker.enterprise_id,
                        "trip_id": worker.trip_id,
                        "travel": worker.travel.value,
                        "expected_arrival": worker.expected_arrival,
                    }
                )
        if good:
            await store.upsert_workers(good)
        for row in rows_in_batch:
            refusal = refused.get(row)
            if refusal is None:
                report.add(RowResult(row, "imported"))
            else:
                report.add(
                    RowResult(
                        row,
                        "rejected",
                        refusal.reason,
                        refusal.column,
                        f"row {row}, column {refusal.column}: {refusal}",
                    )
                )
    return report
