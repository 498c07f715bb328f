"""One table per enterprise, ticked off daily: who is not back (by name), the daily history in
RETURNLOOP_TIMEZONE, and the districts' rollup (PRODUCT.md, contract v1.1)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.support.api import post_accepted_scans, post_manifest
from tests.support.scans import scan_body
from tests.support.servers import random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOT_BACK_FIELDS = {
    "worker_ref",
    "id_masked",
    "name",
    "trip_id",
    "travel",
    "stage",
    "status",
    "open_alerts",
}


def shanghai(day: date, hour: int, minute: int = 0, second: int = 0) -> str:
    """An instant given by its wall-clock time in Shanghai, as RFC 3339 in UTC."""
    local = datetime.combine(day, time(hour, minute, second), tzinfo=SHANGHAI)
    return local.astimezone(UTC).isoformat()


def scan(kind: str, id_number: str, occurred_at: str, **fields: Any) -> dict[str, Any]:
    return scan_body(kind, id_number, hours=0, **fields) | {"occurred_at": occurred_at}


@dataclass(frozen=True)
class Table:
    """An enterprise in a district of its own, another there, and one elsewhere."""

    district: str
    enterprise_id: str
    second_enterprise_id: str
    elsewhere_enterprise_id: str
    trip_id: str
    ids: dict[str, str]
    today: date


@pytest.fixture(scope="module")
async def table(system: Any) -> Table:
    today = datetime.now(SHANGHAI).date()
    district, trip_id = unique("区"), unique("T")
    enterprise_id, second, elsewhere = unique("E"), unique("E"), unique("E")
    ids = {
        name: random_id_number()
        for name in ("on_post", "on_post_today", "feverish", "at_home", "driving", "second")
    }
    names = {
        "on_post": "王一",
        "on_post_today": "李二",
        "feverish": "张三",
        "at_home": "刘四",
        "driving": "陈五",
        "second": "杨六",
    }
    now = datetime.now(UTC)
    async with httpx.AsyncClient(
        base_url=system.url, headers={"Authorization": f"Bearer {system.admin_token}"}, timeout=30
    ) as admin:
        await post_manifest(
            admin,
            {
                "enterprises": [
                    {"enterprise_id": enterprise_id, "name": "鹿城鞋革厂", "shortage": 40,
                     "district": district, "open_positions": 12},
                    {"enterprise_id": second, "name": "鹿城眼镜厂", "shortage": 5,
                     "district": district},
                    {"enterprise_id": elsewhere, "name": "瑞安泵阀厂", "shortage": 9,
                     "district": unique("市")},
                ],
                "trips": [
                    {"trip_id": trip_id, "mode": "bus", "origin": "贵州毕节", "destination": "温州",
                     "departs_at": (now - timedelta(days=4)).isoformat(),
                     "eta": (now + timedelta(days=1)).isoformat()},
                ],
                "workers": [
                    *(
                        {"id_number": ids[who], "name": names[who], "enterprise_id": enterprise_id,
                         "trip_id": trip_id}
                        for who in ("on_post", "on_post_today", "feverish", "at_home")
                    ),
                    {"id_number": ids["driving"], "name": names["driving"],
                     "enterprise_id": enterprise_id, "travel": "self"},
                    {"id_number": ids["second"], "name": names["second"], "enterprise_id": second,
                     "trip_id": trip_id},
                ],
            },
        )  # fmt: skip
        three_days_ago, yesterday = today - timedelta(days=3), today - timedelta(days=1)
        checked_in = {"enterprise_id": enterprise_id}
        await post_accepted_scans(
            admin,
            # The enterprise's first scan, three days ago (Shanghai).
            scan("departure_check", ids["on_post"], shanghai(three_days_ago, 10)),
            scan("boarding", ids["on_post"], shanghai(three_days_ago, 11), trip_id=trip_id),
            scan("arrival_check", ids["on_post"], shanghai(yesterday, 6)),
            # 07:00 in Shanghai is 23:00 UTC the day before: the zone decides the day.
            scan("checkin", ids["on_post"], shanghai(yesterday, 7), **checked_in),
            scan("departure_check", ids["on_post_today"], shanghai(three_days_ago, 10, 5)),
            scan("boarding", ids["on_post_today"], shanghai(three_days_ago, 11, 5),
                 trip_id=trip_id),
            scan("arrival_check", ids["on_post_today"], shanghai(today, 0, 0, 1)),
            scan("checkin", ids["on_post_today"], shanghai(today, 0, 0, 2), **checked_in),
            scan("departure_check", ids["feverish"], shanghai(yesterday, 9), temperature_c=38.6),
            scan("departure_check", ids["driving"], shanghai(yesterday, 9, 30)),
        )  # fmt: skip

        async def roster() -> dict[str, Any]:
            response = await admin.get(f"/v1/enterprises/{enterprise_id}/roster")
            body: dict[str, Any] = response.json()
            return body

        await eventually(
            roster,
            lambda r: r["checked_in"] == 2 and r["held"] == 1 and r["departed"] == 3,
            what="two on post and one held",
            within=90,
        )
    return Table(district, enterprise_id, second, elsewhere, trip_id, ids, today)


async def test_not_back_lists_everyone_on_the_manifest_not_checked_in_there_by_name(
    admin: httpx.AsyncClient, table: Table
) -> None:
    response = await admin.get(f"/v1/enterprises/{table.enterprise_id}/not_back")

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"enterprise_id", "as_of", "count", "workers"}
    assert body["enterprise_id"] == table.enterprise_id
    assert datetime.fromisoformat(body["as_of"]).tzinfo is not None
    assert body["count"] == len(body["workers"]) == 3
    by_name = {worker["name"]: worker for worker in body["workers"]}
    assert set(by_name) == {"张三", "刘四", "陈五"}
    for worker in body["workers"]:
        assert set(worker) == NOT_BACK_FIELDS
    feverish, at_home, driving = by_name["张三"], by_name["刘四"], by_name["陈五"]
    assert feverish["id_masked"] == table.ids["feverish"][:6] + "*" * 8 + table.ids["feverish"][-4:]
    assert (feverish["stage"], feverish["status"]) == ("registered", "held")
    assert feverish["open_alerts"] == ["fever_at_departure"]
    assert feverish["trip_id"] == table.trip_id and feverish["travel"] == "organised"
    assert (at_home["stage"], at_home["status"], at_home["open_alerts"]) == (
        "registered",
        "open",
        [],
    )
    assert (driving["travel"], driving["trip_id"], driving["stage"]) == (
        "self",
        None,
        "departure_cleared",
    )
    for id_number in table.ids.values():
        assert id_number not in response.text


async def test_the_daily_history_has_a_row_per_shanghai_day_from_the_first_scan_to_today(
    admin: httpx.AsyncClient, table: Table
) -> None:
    response = await admin.get(f"/v1/enterprises/{table.enterprise_id}/daily")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["enterprise_id"] == table.enterprise_id
    days = [(table.today - timedelta(days=back)).isoformat() for back in (3, 2, 1, 0)]
    assert [row["date"] for row in body["days"]] == days
    assert [row["expected"] for row in body["days"]] == [5, 5, 5, 5]
    assert [row["newly_checked_in"] for row in body["days"]] == [0, 0, 1, 1]
    assert [row["checked_in"] for row in body["days"]] == [0, 0, 1, 2]
    assert [row["on_post_ratio"] for row in body["days"]] == [0.0, 0.0, 0.2, 0.4]
    for row in body["days"]:
        assert set(row) == {"date", "expected", "checked_in", "newly_checked_in", "on_post_ratio"}


async def test_the_daily_history_is_empty_before_any_scan(
    admin: httpx.AsyncClient, table: Table
) -> None:
    response = await admin.get(f"/v1/enterprises/{table.second_enterprise_id}/daily")

    assert response.status_code == 200, response.text
    assert response.json() == {"enterprise_id": table.second_enterprise_id, "days": []}


async def test_districts_sum_their_enterprises_rosters(
    admin: httpx.AsyncClient, table: Table
) -> None:
    response = await admin.get("/v1/districts")

    assert response.status_code == 200, response.text
    districts = {row["district"]: row for row in response.json()["districts"]}
    assert districts[table.district] == {
        "district": table.district,
        "enterprises": 2,
        "expected": 6,
        "checked_in": 2,
        "on_post_ratio": 2 / 6,
        "held": 1,
        "broken": 0,
        "withdrawn": 0,  # contract v1.1, "After a failed check: dispositions"
    }


async def test_the_enterprise_list_shows_district_and_open_positions(
    admin: httpx.AsyncClient, table: Table
) -> None:
    response = await admin.get("/v1/enterprises")

    listed = {row["enterprise_id"]: row for row in response.json()["enterprises"]}
    mine = listed[table.enterprise_id]
    assert (mine["district"], mine["open_positions"], mine["shortage"]) == (table.district, 12, 40)
    assert listed[table.second_enterprise_id]["open_positions"] is None


@pytest.mark.parametrize("path", ["not_back", "daily"])
async def test_an_unknown_enterprise_is_not_found(admin: httpx.AsyncClient, path: str) -> None:
    response = await admin.get(f"/v1/enterprises/{unique('nobody')}/{path}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
