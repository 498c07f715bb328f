"""?format=csv and ?format=xlsx on the lists (PRODUCT.md, "Exports and imports"): every row,
the JSON's columns, masked IDs only; the XLSX is opened with openpyxl and read cell by cell."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook

from tests.support.api import post_accepted_scans, post_manifest
from tests.support.scans import recent_scan
from tests.support.servers import random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# A name a spreadsheet would run as a formula, were it not kept as text.
FORMULA = '=HYPERLINK("http://example.invalid","x")'


@dataclass(frozen=True)
class World:
    district: str
    enterprise_id: str
    trip_id: str
    ids: list[str]


@pytest.fixture(scope="module")
async def world(system: Any) -> World:
    district, enterprise_id, trip_id = unique("区"), unique("E"), unique("T")
    ids = [random_id_number() for _ in range(4)]
    now = datetime.now(UTC)
    async with httpx.AsyncClient(
        base_url=system.url, headers={"Authorization": f"Bearer {system.admin_token}"}, timeout=30
    ) as admin:
        await post_manifest(
            admin,
            {
                "enterprises": [{"enterprise_id": enterprise_id, "name": "瓯海服装厂",
                                 "shortage": 7, "district": district, "open_positions": 3}],
                "trips": [{"trip_id": trip_id, "mode": "train", "origin": "四川南充",
                           "destination": "温州南", "departs_at": now.isoformat(),
                           "eta": (now + timedelta(days=1)).isoformat()}],
                "workers": [
                    {"id_number": id_number, "name": name, "enterprise_id": enterprise_id,
                     "trip_id": trip_id}
                    for id_number, name in zip(
                        ids, ["赵一", "钱二", FORMULA, "孙三"], strict=True)
                ],
            },
        )  # fmt: skip
        # Three fevers: three open alerts; one worker closes the loop.
        await post_accepted_scans(
            admin,
            *(recent_scan(0, "departure_check", id_number, temperature_c=38.2) for id_number in ids[:3]),
            recent_scan(0, "departure_check", ids[3]),
            recent_scan(1, "boarding", ids[3], trip_id=trip_id),
            recent_scan(2, "arrival_check", ids[3]),
            recent_scan(3, "checkin", ids[3], enterprise_id=enterprise_id),
        )  # fmt: skip

        async def alerts() -> list[dict[str, Any]]:
            response = await admin.get("/v1/alerts", params={"enterprise_id": enterprise_id})
            found: list[dict[str, Any]] = response.json()["alerts"]
            return found

        await eventually(
            alerts, lambda found: len(found) == 3, what="three fever alerts", within=90
        )
        await eventually(
            lambda: admin.get(f"/v1/enterprises/{enterprise_id}/roster"),
            lambda response: response.json()["checked_in"] == 1,
            what="one on post",
            within=90,
        )
    return World(district, enterprise_id, trip_id, ids)


def csv_rows(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == "text/csv"
    assert response.content.startswith(b"\xef\xbb\xbf"), "a BOM, so Excel reads UTF-8"
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


def xlsx_rows(response: httpx.Response) -> tuple[list[str], list[list[Any]]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == XLSX
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    return [str(value) for value in rows[0]], rows[1:]


def assert_named_download(response: httpx.Response, stem: str, extension: str) -> None:
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert stem in disposition and f".{extension}" in disposition


def assert_no_plain_ids(response: httpx.Response, world: World) -> None:
    for id_number in world.ids:
        assert id_number.encode() not in response.content


async def test_not_back_as_csv_has_the_json_columns_and_every_worker(
    admin: httpx.AsyncClient, world: World
) -> None:
    path = f"/v1/enterprises/{world.enterprise_id}/not_back"
    as_json = (await admin.get(path)).json()["workers"]

    response = await admin.get(path, params={"format": "csv"})

    rows = csv_rows(response)
    assert_named_download(response, f"not_back-{world.enterprise_id}", "csv")
    assert list(rows[0]) == list(as_json[0])
    assert [row["worker_ref"] for row in rows] == [worker["worker_ref"] for worker in as_json]
    fever = next(row for row in rows if row["name"] == "赵一")
    assert fever["open_alerts"] == "fever_at_departure"
    assert fever["id_masked"] == world.ids[0][:6] + "*" * 8 + world.ids[0][-4:]
    assert_no_plain_ids(response, world)


async def test_not_back_as_xlsx_opens_with_a_row_per_worker(
    admin: httpx.AsyncClient, world: World
) -> None:
    path = f"/v1/enterprises/{world.enterprise_id}/not_back"
    as_json = (await admin.get(path)).json()["workers"]

    response = await admin.get(path, params={"format": "xlsx"})

    header, rows = xlsx_rows(response)
    assert_named_download(response, f"not_back-{world.enterprise_id}", "xlsx")
    assert header == list(as_json[0])
    assert len(rows) == len(as_json) == 3
    cells = [dict(zip(header, row, strict=True)) for row in rows]
    assert {cell["name"] for cell in cells} == {"赵一", "钱二", FORMULA}
    assert all(cell["status"] == "held" and cell["stage"] == "registered" for cell in cells)
    assert_no_plain_ids(response, world)


async def test_a_name_that_looks_like_a_formula_stays_text(
    admin: httpx.AsyncClient, world: World
) -> None:
    path = f"/v1/enterprises/{world.enterprise_id}/not_back"

    as_csv = csv_rows(await admin.get(path, params={"format": "csv"}))
    response = await admin.get(path, params={"format": "xlsx"})

    assert "'" + FORMULA in {row["name"] for row in as_csv}
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    (cell,) = [c for row in sheet.iter_rows() for c in row if c.value == FORMULA]
    assert cell.data_type == "s"


async def test_enterprises_as_csv_and_xlsx(admin: httpx.AsyncClient, world: World) -> None:
    as_json = (await admin.get("/v1/enterprises")).json()["enterprises"]
    mine = next(row for row in as_json if row["enterprise_id"] == world.enterprise_id)

    as_csv = csv_rows(await admin.get("/v1/enterprises", params={"format": "csv"}))
    header, rows = xlsx_rows(await admin.get("/v1/enterprises", params={"format": "xlsx"}))

    assert list(as_csv[0]) == header == list(mine)
    assert len(as_csv) == len(rows) >= len(as_json)
    row = next(r for r in as_csv if r["enterprise_id"] == world.enterprise_id)
    assert (row["district"], row["expected"], row["checked_in"], row["on_post_ratio"]) == (
        world.district,
        "4",
        "1",
        "0.25",
    )
    cells = next(dict(zip(header, r, strict=True)) for r in rows if r[0] == world.enterprise_id)
    assert (cells["expected"], cells["checked_in"], cells["held"], cells["open_positions"]) == (
        4,
        1,
        3,
        3,
    )


async def test_trips_as_csv_and_xlsx(admin: httpx.AsyncClient, world: World) -> None:
    as_json = (await admin.get("/v1/trips")).json()["trips"]
    mine = next(row for row in as_json if row["trip_id"] == world.trip_id)

    as_csv = csv_rows(await admin.get("/v1/trips", params={"format": "csv"}))
    header, rows = xlsx_rows(await admin.get("/v1/trips", params={"format": "xlsx"}))

    assert list(as_csv[0]) == header == list(mine)
    row = next(r for r in as_csv if r["trip_id"] == world.trip_id)
    assert (row["mode"], row["manifest"], row["boarded"], row["arrived"]) == (
        "train",
        "4",
        "1",
        "1",
    )
    cells = next(dict(zip(header, r, strict=True)) for r in rows if r[0] == world.trip_id)
    assert (cells["origin"], cells["manifest"], cells["missing_count"]) == ("四川南充", 4, 0)


async def test_alerts_export_every_row_not_one_page(admin: httpx.AsyncClient, world: World) -> None:
    query = {"enterprise_id": world.enterprise_id, "limit": 1}
    page = (await admin.get("/v1/alerts", params=query)).json()
    assert len(page["alerts"]) == 1 and page["next_cursor"] is not None

    as_csv = csv_rows(await admin.get("/v1/alerts", params={**query, "format": "csv"}))
    response = await admin.get("/v1/alerts", params={**query, "format": "xlsx"})
    header, rows = xlsx_rows(response)

    assert len(as_csv) == len(rows) == 3
    assert list(as_csv[0]) == header == list(page["alerts"][0])
    assert {row["kind"] for row in as_csv} == {"fever_at_departure"}
    assert {row["open"] for row in as_csv} == {"true"}
    cells = [dict(zip(header, r, strict=True)) for r in rows]
    assert {cell["name"] for cell in cells} == {"赵一", "钱二", FORMULA}
    assert {cell["open"] for cell in cells} == {True}
    assert_named_download(response, "alerts", "xlsx")
    assert_no_plain_ids(response, world)


async def test_districts_as_csv(admin: httpx.AsyncClient, world: World) -> None:
    rows = csv_rows(await admin.get("/v1/districts", params={"format": "csv"}))

    mine = next(row for row in rows if row["district"] == world.district)
    assert (mine["enterprises"], mine["expected"], mine["checked_in"], mine["held"]) == (
        "1",
        "4",
        "1",
        "3",
    )


async def test_an_accept_header_asks_for_a_spreadsheet_too(
    admin: httpx.AsyncClient, world: World
) -> None:
    response = await admin.get(
        f"/v1/enterprises/{world.enterprise_id}/not_back", headers={"Accept": "text/csv"}
    )

    assert len(csv_rows(response)) == 3


async def test_an_unknown_format_is_refused(admin: httpx.AsyncClient, world: World) -> None:
    response = await admin.get("/v1/trips", params={"format": "pdf"})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
