"""The supervisor page's held-workers table: who is held after a failed check, by name and
masked ID, their open health alerts in Chinese and English, what was recorded since (kind,
time and note; "none yet" when nothing) and their days held, longest held first."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import screenshot, sign_in
from tests.browser.scanning import loop_view, masked
from tests.support.api import issue_token, post_accepted_scans, post_manifest
from tests.support.scans import NOW, scan_body
from tests.support.servers import random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.browser

# The real servers are shared and may be busy: a scan or a disposition may take long to apply.
APPLIED_S = 90


async def held(admin: httpx.AsyncClient, enterprise_id: str) -> dict[str, Any]:
    response = await admin.get("/v1/held", params={"enterprise_id": enterprise_id})
    return response.json() if response.status_code == 200 else {}


def fever(id_number: str, ago: timedelta) -> dict[str, Any]:
    body = scan_body("departure_check", id_number, hours=0, temperature_c=38.6)
    body["occurred_at"] = (NOW - ago).isoformat()
    return body


async def test_the_held_table_lists_held_workers_with_dispositions_and_days_held(
    page: Page, admin: httpx.AsyncClient
) -> None:
    district, enterprise_id, trip_id = unique("龙湾区"), unique("UI-HELD"), unique("UI-HELD-BUS")
    ids = {"郑小燕": random_id_number(), "钱国强": random_id_number()}
    await post_manifest(
        admin,
        {
            "enterprises": [{"enterprise_id": enterprise_id, "name": "龙湾阀门厂",
                             "shortage": 4, "district": district}],
            "trips": [{"trip_id": trip_id, "mode": "bus", "origin": "四川广安",
                       "destination": "温州龙湾",
                       "departs_at": (NOW - timedelta(days=3, hours=1)).isoformat(),
                       "eta": (NOW + timedelta(hours=20)).isoformat()}],
            "workers": [
                {"id_number": id_number, "name": name, "enterprise_id": enterprise_id,
                 "trip_id": trip_id}
                for name, id_number in ids.items()
            ],
        },
    )  # fmt: skip
    # 钱国强 was held three days ago, 郑小燕 ten minutes ago: he is listed first.
    recent, earlier = ids["郑小燕"], ids["钱国强"]
    await post_accepted_scans(
        admin, fever(earlier, timedelta(days=3)), fever(recent, timedelta(minutes=10))
    )
    view = await eventually(
        lambda: loop_view(admin, recent),
        lambda found: found.get("status") == "held",
        what="the failed departure check applied",
        within=APPLIED_S,
    )
    note = "县疾控安排集中隔离观察，复测后再定"
    response = await admin.post(
        f"/v1/workers/{view['worker_ref']}/dispositions", json={"kind": "isolation", "note": note}
    )
    assert response.status_code == 201, response.text
    disposition_id = response.json()["disposition_id"]
    listed = await eventually(
        lambda: held(admin, enterprise_id),
        lambda found: found.get("count") == 2 and any(w["dispositions"] for w in found["workers"]),
        what="both workers held and the isolation applied",
        within=APPLIED_S,
    )
    assert [w["name"] for w in listed["workers"]] == ["钱国强", "郑小燕"]

    await sign_in(page, "/ui/supervisor", await issue_token(admin, "supervisor", district=district))

    panel = page.locator("#held-panel")
    rows = page.locator("#held tbody tr[data-worker-ref]")
    await expect(rows).to_have_count(2, timeout=20_000)  # its district's held workers only
    await expect(page.locator("#held-count")).to_contain_text("2")
    await expect(rows.nth(0).locator('[data-field="name"]')).to_have_text("钱国强")
    await expect(rows.nth(1).locator('[data-field="name"]')).to_have_text("郑小燕")

    isolated = rows.nth(1)
    await expect(isolated).to_have_attribute("data-worker-ref", view["worker_ref"])
    await expect(isolated.locator('[data-field="id_masked"]')).to_have_text(masked(recent))
    await expect(isolated).not_to_contain_text(recent)
    await expect(isolated.locator('[data-field="enterprise_id"]')).to_have_text(enterprise_id)
    alerts = isolated.locator('[data-field="open_alerts"]')
    await expect(alerts).to_contain_text("出发时发热")
    await expect(alerts).to_contain_text("fever at departure")
    disposition = isolated.locator(f'li[data-disposition-id="{disposition_id}"]')
    await expect(disposition).to_have_attribute("data-kind", "isolation")
    await expect(disposition).to_contain_text("隔离 isolation")
    await expect(disposition).to_contain_text(note)
    await expect(disposition).to_contain_text(re.compile(r"\d{2}-\d{2} \d{2}:\d{2}"))
    await expect(isolated.locator('[data-field="days_held"]')).to_have_text(
        re.compile(r"^[01] 天 days$")
    )

    longest = rows.nth(0)
    await expect(longest.locator('[data-field="id_masked"]')).to_have_text(masked(earlier))
    await expect(longest.locator('[data-field="dispositions"]')).to_contain_text("none yet")
    # 72 hours (and the minutes the test took) before now: three calendar days before today,
    # or four if those minutes crossed a midnight.
    await expect(longest.locator('[data-field="days_held"]')).to_have_text(
        re.compile(r"^[34] 天 days$")
    )
    await panel.scroll_into_view_if_needed()
    await screenshot(page, "supervisor-held-1-held-workers")

    # The filter narrows the held table with the rest of the page.
    await page.fill("#filter", "钱国强")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("钱国强")
    await page.fill("#filter", "")
    await expect(rows).to_have_count(2)
