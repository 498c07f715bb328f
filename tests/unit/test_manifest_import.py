"""Importing a workers sheet row by row, on a fake manifest store; the sheets it reads and the
files the exports write; the daily tick-off's rows."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openpyxl import Workbook, load_workbook

from shared.adapters.postgres.bureau import daily_rows
from shared.adapters.spreadsheets import (
    UnreadableSheet,
    csv_chunks,
    open_sheet,
    row_batches,
    template,
    xlsx_chunks,
)
from shared.identity import check_digit, mask_id_number
from shared.service_layer.manifest_import import (
    WORKER_COLUMNS,
    Identity,
    MissingColumns,
    check_header,
    import_worker_rows,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def id_number(serial: int) -> str:
    first17 = f"33030219900101{serial:03d}"
    return first17 + check_digit(first17)


class FakeManifests:
    """Knows one enterprise and one trip; records the workers upserted, batch by batch."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    async def known_enterprises(self, enterprise_ids: Sequence[str]) -> set[str]:
        return set(enterprise_ids) & {"E1"}

    async def known_trips(self, trip_ids: Sequence[str]) -> set[str]:
        return set(trip_ids) & {"T1"}

    async def upsert_workers(self, workers: Sequence[dict[str, Any]]) -> None:
        self.batches.append(list(workers))


def identify(number: str) -> Identity:
    return Identity(worker_ref="w_" + number, id_masked=mask_id_number(number))


async def batches_of(rows: Iterable[dict[str, Any]], size: int) -> AsyncIterator[list[Any]]:
    rows = list(rows)
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


async def imported(rows: list[dict[str, Any]], size: int = 1000) -> tuple[Any, FakeManifests]:
    store = FakeManifests()
    report = await import_worker_rows(
        batches_of(rows, size), store=store, identify=identify, zone=SHANGHAI
    )
    return report, store


async def test_good_rows_are_imported_even_when_others_are_refused() -> None:
    report, store = await imported(
        [
            {"id_number": id_number(1), "name": "甲", "enterprise_id": "E1", "trip_id": "T1"},
            {"id_number": id_number(2)[:-1] + "0", "name": "乙", "enterprise_id": "E1"},
            {"id_number": id_number(3), "name": "丙", "enterprise_id": "E2"},
        ]
    )

    assert (report.imported, report.rejected) == (1, 2)
    assert [worker["name"] for batch in store.batches for worker in batch] == ["甲"]
    assert [row.as_dict()["status"] for row in report.rows] == ["imported", "rejected", "rejected"]
    assert report.rows[1].reason in {"id_number_checksum", "id_number_birth_date"}
    assert report.rows[2].as_dict() == {
        "row": 3,
        "status": "rejected",
        "reason": "unknown_enterprise",
        "column": "enterprise_id",
        "message": "row 3, column enterprise_id: no enterprise 'E2' is registered; "
        "post it in a manifest first",
    }


async def test_a_second_row_with_the_same_id_number_is_reported_even_in_a_later_batch() -> None:
    rows = [{"id_number": id_number(n), "name": f"工{n}", "enterprise_id": "E1"} for n in range(5)]
    rows.append({"id_number": id_number(2).lower(), "name": "又一次", "enterprise_id": "E1"})

    report, store = await imported(rows, size=2)

    assert report.imported == 5 and len(store.batches) == 3
    last = report.rows[-1]
    assert (last.row, last.reason, last.column) == (6, "duplicate_id_number", "id_number")
    assert "as row 3" in (last.message or "")


async def test_an_id_number_a_spreadsheet_stored_as_a_number_is_refused_with_a_hint() -> None:
    report, _ = await imported([{"id_number": 3.3030219900101e17, "name": "丁"}])

    (row,) = report.rows
    assert (row.reason, row.column) == ("id_number_format", "id_number")
    assert "as text" in (row.message or "")


async def test_empty_rows_are_skipped_but_keep_their_numbers() -> None:
    report, _ = await imported([{}, {"id_number": id_number(7), "name": "戊"}, {}])

    assert [(row.row, row.status) for row in report.rows] == [(2, "imported")]


async def test_a_date_cell_without_an_offset_is_read_in_the_configured_zone() -> None:
    report, store = await imported(
        [
            {
                "id_number": id_number(8),
                "name": "己",
                "travel": "self",
                "expected_arrival": datetime(2020, 3, 2, 8, 0),
            }
        ]
    )

    assert report.imported == 1
    (worker,) = store.batches[0]
    assert worker["expected_arrival"] == datetime(2020, 3, 2, 8, 0, tzinfo=SHANGHAI)
    assert worker["travel"] == "self" and worker["trip_id"] is None


@pytest.mark.parametrize(
    ("row", "reason", "column"),
    [
        ({"name": "庚"}, "missing_field", "id_number"),
        ({"id_number": id_number(9)}, "missing_field", "name"),
        ({"id_number": id_number(9), "name": "庚", "travel": "walk"}, "invalid_field", "travel"),
        (
            {"id_number": id_number(9), "name": "庚", "expected_arrival": "tomorrow"},
            "invalid_timestamp",
            "expected_arrival",
        ),
        (
            {"id_number": id_number(9), "name": "庚", "travel": "self", "trip_id": "T1"},
            "invalid_field",
            "travel",
        ),
        ({"id_number": id_number(9), "name": "庚", "trip_id": "T9"}, "unknown_trip", "trip_id"),
    ],
)
async def test_each_refusal_names_its_reason_and_column(
    row: dict[str, Any], reason: str, column: str
) -> None:
    report, store = await imported([row])

    (result,) = report.rows
    assert (result.reason, result.column) == (reason, column), result
    assert (result.message or "").startswith(f"row 1, column {column}: ")
    assert store.batches == []


def test_the_header_needs_id_number_and_name() -> None:
    check_header(["id_number", "name"])
    with pytest.raises(MissingColumns, match="id_number"):
        check_header(["name", "enterprise_id"])


def test_the_template_has_the_columns_the_importer_reads() -> None:
    as_csv = template("csv", WORKER_COLUMNS, title="workers")
    book = load_workbook(io.BytesIO(template("xlsx", WORKER_COLUMNS, title="workers")))

    header, _ = open_sheet(io.BytesIO(as_csv), "csv")
    assert header == list(WORKER_COLUMNS)
    assert [cell.value for cell in next(book.active.iter_rows())] == list(WORKER_COLUMNS)


def test_a_sheet_is_read_one_row_at_a_time() -> None:
    body = "id_number,name\n" + "".join(f"{id_number(n % 999)},n{n}\n" for n in range(20_000))
    file = io.BytesIO(body.encode())

    _, rows = open_sheet(file, "csv")
    next(rows)

    assert file.tell() < len(body) / 2, "the first row came without reading the whole file"


def test_an_xlsx_sheet_keeps_cell_types_and_a_csv_in_gb18030_is_read() -> None:
    book = Workbook()
    book.active.append(["ID_Number ", "Name"])
    book.active.append([id_number(1), "甲"])
    book.active.append([None, None])
    out = io.BytesIO()
    book.save(out)

    header, rows = open_sheet(io.BytesIO(out.getvalue()), "xlsx")
    assert header == ["id_number", "name"]
    assert list(rows) == [{"id_number": id_number(1), "name": "甲"}, {}]
    _, gb_rows = open_sheet(io.BytesIO("id_number,name\n1,乙\n".encode("gb18030")), "csv")
    assert list(gb_rows) == [{"id_number": "1", "name": "乙"}]


def test_a_file_with_no_header_or_not_a_workbook_is_unreadable() -> None:
    with pytest.raises(UnreadableSheet):
        open_sheet(io.BytesIO(b"\n\n"), "csv")
    with pytest.raises(UnreadableSheet):
        open_sheet(io.BytesIO(b"not a zip"), "xlsx")


async def test_row_batches_hand_over_rows_in_batches() -> None:
    batches = [batch async for batch in row_batches(iter([{"n": n} for n in range(5)]), 2)]

    assert [len(batch) for batch in batches] == [2, 2, 1]


async def rows_of(items: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        yield item


async def test_csv_exports_have_a_bom_a_header_and_keep_formulas_as_text() -> None:
    items = [{"a": "=1+1", "b": ["x", "y"], "c": None}, {"a": "平", "b": [], "c": True}]

    body = b"".join([chunk async for chunk in csv_chunks(["a", "b", "c"], rows_of(items))])

    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows == [["a", "b", "c"], ["'=1+1", "x;y", ""], ["平", "", "true"]]


async def test_xlsx_exports_open_with_a_header_and_typed_cells() -> None:
    items = [{"a": "=1+1", "n": 3, "r": 0.5}, {"a": "平", "n": 0, "r": None}]

    body = b"".join([c async for c in xlsx_chunks(["a", "n", "r"], rows_of(items), title="t")])

    sheet = load_workbook(io.BytesIO(body))["t"]
    assert [[cell.value for cell in row] for row in sheet.iter_rows()] == [
        ["a", "n", "r"],
        ["=1+1", 3, 0.5],
        ["平", 0, None],
    ]
    assert sheet["A2"].data_type == "s"


def test_daily_rows_count_up_to_today_and_beyond_a_later_check_in() -> None:
    rows = daily_rows(
        first_day=date(2020, 3, 1),
        today=date(2020, 3, 3),
        expected=4,
        newly_by_day={date(2020, 3, 2): 1, date(2020, 3, 4): 3},
    )

    assert [(r["date"], r["newly_checked_in"], r["checked_in"]) for r in rows] == [
        ("2020-03-01", 0, 0),
        ("2020-03-02", 1, 1),
        ("2020-03-03", 0, 1),
        ("2020-03-04", 3, 4),
    ]
    assert rows[-1]["on_post_ratio"] == 1.0
    assert daily_rows(first_day=None, today=date(2020, 3, 3), expected=4, newly_by_day={}) == []
