"""The workers sheet: GET /v1/manifests/template and POST /v1/manifests/import (CSV and XLSX),
answered row by row, good rows imported whatever the bad ones (PRODUCT.md, contract v1.1)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook

from tests.support.api import bearer, issue_token, lookup, post_manifest
from tests.support.servers import random_id_number, unique

pytestmark = pytest.mark.e2e

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
COLUMNS = ["id_number", "name", "enterprise_id", "trip_id", "travel", "expected_arrival"]


def wrong_check_digit(id_number: str) -> str:
    last = "0" if id_number[-1] != "0" else "1"
    return id_number[:-1] + last


@dataclass(frozen=True)
class Registered:
    enterprise_id: str
    trip_id: str


@pytest.fixture
async def registered(admin: httpx.AsyncClient) -> Registered:
    enterprise_id, trip_id = unique("E"), unique("T")
    now = datetime.now(UTC)
    await post_manifest(
        admin,
        {
            "enterprises": [{"enterprise_id": enterprise_id, "name": "乐清电气厂", "shortage": 8}],
            "trips": [
                {
                    "trip_id": trip_id,
                    "mode": "bus",
                    "origin": "湖南邵阳",
                    "destination": "乐清",
                    "departs_at": now.isoformat(),
                    "eta": (now + timedelta(days=1)).isoformat(),
                }
            ],
        },
    )
    return Registered(enterprise_id, trip_id)


def mixed_rows(registered: Registered) -> tuple[list[list[Any]], dict[str, str]]:
    """Two good rows and one bad row of each kind, in the template's column order."""
    ids = {name: random_id_number() for name in ("bus", "self", "twice", "no_name")}
    arrival = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    e, t = registered.enterprise_id, registered.trip_id
    rows = [
        [ids["bus"], "周一", e, t, "organised", None],  # 1: imported
        [ids["self"], "吴二", e, None, "self", arrival],  # 2: imported
        [wrong_check_digit(random_id_number()), "郑三", e, t, None, None],  # 3: checksum
        [random_id_number(), "王四", unique("E-none"), None, None, None],  # 4: enterprise
        [random_id_number(), "冯五", e, unique("T-none"), None, None],  # 5: trip
        [ids["bus"], "周一", e, t, None, None],  # 6: the same ID number as row 1
        [ids["no_name"], None, e, t, None, None],  # 7: no name
        [random_id_number(), "陈七", e, t, "by_air", None],  # 8: travel
    ]
    return rows, ids


EXPECTED = [
    {"row": 1, "status": "imported"},
    {"row": 2, "status": "imported"},
    ("id_number_checksum", "id_number"),
    ("unknown_enterprise", "enterprise_id"),
    ("unknown_trip", "trip_id"),
    ("duplicate_id_number", "id_number"),
    ("missing_field", "name"),
    ("invalid_field", "travel"),
]


def assert_row_by_row(answer: dict[str, Any]) -> None:
    assert (answer["imported"], answer["rejected"]) == (2, 6)
    assert answer["rows"][:2] == EXPECTED[:2]
    for number, (result, (reason, column)) in enumerate(
        zip(answer["rows"][2:], EXPECTED[2:], strict=True), start=3
    ):
        assert result["row"] == number
        assert result["status"] == "rejected"
        assert (result["reason"], result["column"]) == (reason, column), result
        assert result["message"].startswith(f"row {number}, column {column}: "), result
    assert "row 1" in answer["rows"][5]["message"]


async def assert_imported(admin: httpx.AsyncClient, ids: dict[str, str], e: str) -> None:
    bus, self_travel = await lookup(admin, ids["bus"]), await lookup(admin, ids["self"])
    assert (bus["status_code"], bus["name"], bus["enterprise_id"]) == (200, "周一", e)
    assert (self_travel["travel"], self_travel["trip_id"]) == ("self", None)
    assert (await lookup(admin, ids["no_name"]))["status_code"] == 404


async def test_the_csv_template_is_an_empty_sheet_with_the_columns(
    admin: httpx.AsyncClient,
) -> None:
    response = await admin.get("/v1/manifests/template", params={"format": "csv"})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == "text/csv"
    assert "attachment;" in response.headers["content-disposition"]
    assert response.content == b"\xef\xbb\xbf" + ",".join(COLUMNS).encode() + b"\r\n"


async def test_the_xlsx_template_is_an_empty_sheet_with_the_columns(
    admin: httpx.AsyncClient,
) -> None:
    response = await admin.get("/v1/manifests/template", params={"format": "xlsx"})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == XLSX
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    assert [[cell.value for cell in row] for row in sheet.iter_rows()] == [COLUMNS]


async def test_the_xlsx_template_filled_in_imports_good_rows_and_answers_each_bad_one(
    admin: httpx.AsyncClient, registered: Registered
) -> None:
    template = await admin.get("/v1/manifests/template", params={"format": "xlsx"})
    book = load_workbook(io.BytesIO(template.content))
    rows, ids = mixed_rows(registered)
    for row in rows:
        book.active.append(row)
    filled = io.BytesIO()
    book.save(filled)

    response = await admin.post(
        "/v1/manifests/import", content=filled.getvalue(), headers={"Content-Type": XLSX}
    )

    assert response.status_code == 200, response.text
    assert_row_by_row(response.json())
    await assert_imported(admin, ids, registered.enterprise_id)


async def test_the_csv_template_filled_in_imports_good_rows_and_answers_each_bad_one(
    admin: httpx.AsyncClient, registered: Registered
) -> None:
    template = (await admin.get("/v1/manifests/template", params={"format": "csv"})).text
    rows, ids = mixed_rows(registered)
    out = io.StringIO()
    out.write(template)
    csv.writer(out, lineterminator="\r\n").writerows(
        [["" if value is None else value for value in row] for row in rows]
    )

    response = await admin.post(
        "/v1/manifests/import",
        content=out.getvalue().encode("utf-8"),
        headers={"Content-Type": "text/csv; charset=utf-8"},
    )

    assert response.status_code == 200, response.text
    assert_row_by_row(response.json())
    await assert_imported(admin, ids, registered.enterprise_id)


async def test_a_csv_excel_saved_in_gb18030_imports_too(
    admin: httpx.AsyncClient, registered: Registered
) -> None:
    id_number = random_id_number()
    body = f"id_number,name,enterprise_id\r\n{id_number},褚八,{registered.enterprise_id}\r\n"

    response = await admin.post(
        "/v1/manifests/import", content=body.encode("gb18030"), headers={"Content-Type": "text/csv"}
    )

    assert response.json() == {
        "imported": 1,
        "rejected": 0,
        "rows": [{"row": 1, "status": "imported"}],
    }
    assert (await lookup(admin, id_number))["name"] == "褚八"


async def test_fifty_thousand_rows_import_in_one_file(
    admin: httpx.AsyncClient, registered: Registered
) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for index in range(50_000):
        writer.writerow(
            [
                random_id_number(),
                f"工人{index}",
                registered.enterprise_id,
                registered.trip_id,
                "",
                "",
            ]
        )

    response = await admin.post(
        "/v1/manifests/import",
        content=out.getvalue().encode(),
        headers={"Content-Type": "text/csv"},
        timeout=300,
    )

    assert response.status_code == 200, response.text[:500]
    answer = response.json()
    duplicates = [row for row in answer["rows"] if row["status"] == "rejected"]
    assert all(row["reason"] == "duplicate_id_number" for row in duplicates)  # random ids may meet
    assert answer["imported"] + answer["rejected"] == len(answer["rows"]) == 50_000
    roster = (await admin.get(f"/v1/enterprises/{registered.enterprise_id}/roster")).json()
    assert roster["expected"] == answer["imported"]


async def test_an_integrator_may_import_and_a_recruiter_may_not(
    admin: httpx.AsyncClient, registered: Registered
) -> None:
    body = f"id_number,name,enterprise_id\n{random_id_number()},卫九,{registered.enterprise_id}\n"
    integrator = bearer(await issue_token(admin, "integrator"))
    recruiter = bearer(await issue_token(admin, "recruiter"))
    headers = {"Content-Type": "text/csv"}

    by_integrator = await admin.post(
        "/v1/manifests/import", content=body, headers={**headers, **integrator}
    )
    by_recruiter = await admin.post(
        "/v1/manifests/import", content=body, headers={**headers, **recruiter}
    )

    assert by_integrator.status_code == 200, by_integrator.text
    assert by_integrator.json()["imported"] == 1
    assert by_recruiter.status_code == 403


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("application/json", b'{"workers": []}', 415, "unsupported_media_type"),
        ("text/csv", b"", 422, "empty_file"),
        ("text/csv", b"name,enterprise_id\n", 422, "missing_columns"),
        (XLSX, b"PK\x03\x04 not really a workbook", 422, "unreadable_file"),
    ],
    ids=["json", "empty", "no id_number column", "not a workbook"],
)
async def test_a_file_that_is_not_a_workers_sheet_is_refused_whole(
    admin: httpx.AsyncClient, content_type: str, body: bytes, status: int, code: str
) -> None:
    response = await admin.post(
        "/v1/manifests/import", content=body, headers={"Content-Type": content_type}
    )

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
