"""``?format=csv|xlsx`` on any list: one helper every exporting route calls.

A route declares ``format: ExportFormatDep`` and ``responses=EXPORT_RESPONSES``,
answers JSON as before, and for a spreadsheet returns
``export(rows, ModelOfARow, format=format, name="…")`` instead: every row (an
async iterable is streamed as it is read), the columns of the JSON's rows,
masked IDs only because the rows are the JSON's.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, Header, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from shared.adapters.spreadsheets import (
    CSV_MEDIA_TYPE,
    MEDIA_TYPES,
    XLSX_MEDIA_TYPE,
    SheetFormat,
    attachment,
    sheet_chunks,
)

ExportFormat = Literal["json", "csv", "xlsx"]

# Documented on every exporting route, so clients (and the schema fuzzing) know the types.
EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON; with ?format=csv a UTF-8 CSV (BOM, header row), with "
        "?format=xlsx an Excel workbook: every row, the JSON rows' columns",
        "content": {
            CSV_MEDIA_TYPE: {"schema": {"type": "string"}},
            XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


async def export_format(
    format: Annotated[
        ExportFormat | None,
        Query(description="json (default), csv or xlsx: a spreadsheet of every row"),
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> ExportFormat:
    """``?format=``, else a spreadsheet type the client asked for by ``Accept``, else JSON."""
    if format is not None:
        return format
    wanted = {part.split(";")[0].strip().lower() for part in (accept or "").split(",")}
    if XLSX_MEDIA_TYPE in wanted:
        return "xlsx"
    if CSV_MEDIA_TYPE in wanted:
        return "csv"
    return "json"


ExportFormatDep = Annotated[ExportFormat, Depends(export_format)]


def columns_of(model: type[BaseModel]) -> list[str]:
    """The JSON fields of one row, in order: a spreadsheet's columns."""
    return list(model.model_fields)


async def _each(
    rows: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
) -> AsyncIterator[Mapping[str, Any]]:
    if isinstance(rows, AsyncIterable):
        async for row in rows:
            yield row
    else:
        for row in rows:
            yield row


def export(
    rows: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
    columns: type[BaseModel] | Sequence[str],
    *,
    format: SheetFormat,
    name: str,
) -> StreamingResponse:
    """``rows`` as a CSV or XLSX download named ``name`` (and today's date), streamed.

    ``columns`` is the row model (its fields, in order) or the column names.
    """
    names = columns_of(columns) if isinstance(columns, type) else list(columns)
    filename = f"{name}-{datetime.now(UTC):%Y%m%d}.{format}"
    media_type = MEDIA_TYPES[format] + ("; charset=utf-8" if format == "csv" else "")
    return StreamingResponse(
        sheet_chunks(format, names, _each(rows), title=name),
        media_type=media_type,
        headers={"Content-Disposition": attachment(filename), "Cache-Control": "no-store"},
    )
