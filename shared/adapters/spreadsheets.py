"""Spreadsheets in and out: CSV (the standard library) and XLSX (openpyxl).

Exports take their rows as an async iterable and never hold them all: CSV is
written out in chunks as rows arrive; XLSX rows go into openpyxl's write-only
sheet (kept in a temporary file, not in memory) and the finished workbook is
read out in chunks. Imports read a file already spooled to disk one row at a
time, so a large file is never held in memory, let alone twice.

A cell is always data, never a formula: a text starting with ``=`` is stored as
text in XLSX, and in CSV (where the spreadsheet decides) it gets a leading
``'`` so that Excel shows it instead of evaluating it.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import itertools
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping, Sequence
from typing import IO, Any, Literal
from urllib.parse import quote

from openpyxl import Workbook, load_workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

SheetFormat = Literal["csv", "xlsx"]
CSV_MEDIA_TYPE = "text/csv"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MEDIA_TYPES: dict[SheetFormat, str] = {"csv": CSV_MEDIA_TYPE, "xlsx": XLSX_MEDIA_TYPE}

CHUNK_BYTES = 64 * 1024
# Rows handed to openpyxl (in a worker thread) at a time.
XLSX_BATCH_ROWS = 2000
# Spreadsheet programs run a cell starting with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _plain(value: Any) -> Any:
    """A JSON value as one cell: lists joined with ``;``, nested objects as their text."""
    if isinstance(value, list | tuple):
        return ";".join(str(item) for item in value)
    if isinstance(value, dict):
        return ";".join(f"{key}={item}" for key, item in value.items())
    return value


def _csv_text(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if isinstance(value, str) and text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


async def csv_chunks(
    columns: Sequence[str], rows: AsyncIterable[Mapping[str, Any]]
) -> AsyncIterator[bytes]:
    """UTF-8 CSV with a BOM (so Excel reads it as UTF-8) and a header row, in chunks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow(columns)
    async for row in rows:
        writer.writerow([_csv_text(row.get(column)) for column in columns])
        if buffer.tell() >= CHUNK_BYTES:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def _xlsx_cell(sheet: Any, value: Any) -> Any:
    """A value as openpyxl should store it: ``None`` for an empty cell (none is written),
    text that looks like a formula as a cell that says it is text."""
    if value.__class__ is not str:
        if value is None or value.__class__ in (int, float, bool):
            return value
        value = _plain(value)
        if not isinstance(value, str):
            return value
    if not value:
        return None
    if ILLEGAL_CHARACTERS_RE.search(value):
        value = ILLEGAL_CHARACTERS_RE.sub("", value)
    if value[0] == "=":
        cell = WriteOnlyCell(sheet, value=value)
        cell.data_type = "s"  # text, never a formula
        return cell
    return value


class _WriteOnlyBook:
    """One sheet of a write-only workbook: a bold, frozen header, then rows."""

    def __init__(self, title: str, columns: Sequence[str]) -> None:
        self.book = Workbook(write_only=True)
        self.sheet = self.book.create_sheet(title[:31] or "Sheet1")
        self.sheet.freeze_panes = "A2"
        for index, column in enumerate(columns, start=1):
            self.sheet.column_dimensions[get_column_letter(index)].width = max(12, len(column) + 4)
        header = []
        for column in columns:
            cell = WriteOnlyCell(self.sheet, value=column)
            cell.font = Font(bold=True)
            header.append(cell)
        self.sheet.append(header)
        self.columns = list(columns)

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for row in rows:
            self.sheet.append([_xlsx_cell(self.sheet, row.get(c)) for c in self.columns])

    def save(self) -> IO[bytes]:
        spooled = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
        self.book.save(spooled)
        spooled.seek(0)
        return spooled


async def xlsx_chunks(
    columns: Sequence[str], rows: AsyncIterable[Mapping[str, Any]], *, title: str
) -> AsyncIterator[bytes]:
    """An XLSX workbook of one sheet (a header row, then ``rows``), in chunks.

    openpyxl's work runs in a worker thread, a batch of rows at a time, so a large
    export does not stall the event loop for other requests.
    """
    book = await asyncio.to_thread(_WriteOnlyBook, title, columns)
    batch: list[Mapping[str, Any]] = []
    async for row in rows:
        batch.append(row)
        if len(batch) >= XLSX_BATCH_ROWS:
            await asyncio.to_thread(book.append, batch)
            batch = []
    if batch:
        await asyncio.to_thread(book.append, batch)
    saved = await asyncio.to_thread(book.save)
    try:
        while chunk := await asyncio.to_thread(saved.read, CHUNK_BYTES):
            yield chunk
    finally:
        saved.close()


def sheet_chunks(
    format: SheetFormat,
    columns: Sequence[str],
    rows: AsyncIterable[Mapping[str, Any]],
    *,
    title: str,
) -> AsyncIterator[bytes]:
    """``rows`` as a CSV or XLSX file with these ``columns``, in chunks."""
    if format == "csv":
        return csv_chunks(columns, rows)
    return xlsx_chunks(columns, rows, title=title)


def attachment(filename: str) -> str:
    """A Content-Disposition naming the file (an ASCII fallback, the UTF-8 name beside it)."""
    fallback = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def template(format: SheetFormat, columns: Sequence[str], *, title: str) -> bytes:
    """An empty sheet with a header row of ``columns``; in XLSX every column is text, so
    an ID number typed in keeps its 18 digits (Excel would round it as a number)."""
    if format == "csv":
        return ("\ufeff" + ",".join(columns) + "\r\n").encode()
    book = Workbook()
    sheet = book.active
    sheet.title = title
    sheet.append(list(columns))
    sheet.freeze_panes = "A2"
    for index, column in enumerate(columns, start=1):
        letter = get_column_letter(index)
        sheet[f"{letter}1"].font = Font(bold=True)
        sheet.column_dimensions[letter].width = max(14, len(column) + 4)
        sheet.column_dimensions[letter].number_format = "@"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


class UnreadableSheet(ValueError):
    """A file that is not a CSV or XLSX sheet this module can read."""


def _cell_value(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _csv_encoding(file: IO[bytes], declared: str | None) -> str:
    """The file's text encoding: the declared one, else UTF-8 (with or without a BOM) if it
    decodes, else GB18030 (what Excel on a Chinese Windows saves "CSV" in)."""
    if declared:
        try:
            name = codecs.lookup(declared).name
        except LookupError:
            raise UnreadableSheet(f"unknown charset {declared!r}") from None
        return "utf-8-sig" if name == "utf-8" else name  # a BOM is no part of the header
    decoder = codecs.getincrementaldecoder("utf-8")()
    file.seek(0)
    try:
        while chunk := file.read(CHUNK_BYTES):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
        return "utf-8-sig"
    except UnicodeDecodeError:
        return "gb18030"
    finally:
        file.seek(0)


def _csv_rows(file: IO[bytes], charset: str | None) -> Iterator[list[Any]]:
    encoding = _csv_encoding(file, charset)
    text = io.TextIOWrapper(file, encoding=encoding, newline="")
    try:
        for row in csv.reader(text):
            yield [_cell_value(value) for value in row]
    except (UnicodeDecodeError, csv.Error) as problem:
        raise UnreadableSheet(f"not a readable CSV file: {problem}") from None
    finally:
        text.detach()


def _xlsx_rows(file: IO[bytes]) -> Iterator[list[Any]]:
    try:
        book = load_workbook(file, read_only=True, data_only=True)
    except Exception as problem:  # openpyxl raises many kinds for a file it cannot read
        raise UnreadableSheet(f"not a readable XLSX file: {problem}") from None
    try:
        sheet = book.worksheets[0]
        for row in sheet.iter_rows(values_only=True):
            yield [_cell_value(value) for value in row]
    finally:
        book.close()


def open_sheet(
    file: IO[bytes], format: SheetFormat, *, charset: str | None = None
) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """The header of a sheet's first table and its data rows, read one at a time.

    Header names are stripped and lower-cased. Cells are stripped text (empty means
    absent) in CSV; in XLSX they keep their type (a number, a ``datetime``). A wholly
    empty row comes as ``{}``, so that row numbers stay the sheet's. Raises
    ``UnreadableSheet`` when the file cannot be read or has no header row.
    """
    rows = _csv_rows(file, charset) if format == "csv" else _xlsx_rows(file)
    header: list[str] = []
    for row in rows:
        header = [str(name).strip("\ufeff \t").lower() if name is not None else "" for name in row]
        if any(header):
            break
    if not any(header):
        raise UnreadableSheet("the file has no header row")

    def data() -> Iterator[dict[str, Any]]:
        for row in rows:
            yield {
                name: value
                for name, value in zip(header, row, strict=False)
                if name and value is not None
            }

    return header, data()


async def row_batches(
    rows: Iterator[dict[str, Any]], size: int = 1000
) -> AsyncIterator[list[dict[str, Any]]]:
    """``rows`` read ``size`` at a time in a worker thread (parsing a sheet is CPU work)."""
    while batch := await asyncio.to_thread(lambda: list(itertools.islice(rows, size))):
        yield batch
