"""The supervisor page as the bureau uses it: districts rolled up, an enterprise drilled down to
who is not back (by name and masked ID) and its daily progress chart, and the tables
downloaded as CSV and XLSX, each file opened and read."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from openpyxl import load_workbook
from playwright.async_api import Page, expect

from tests.browser.conftest import RunningSystem, screenshot, sign_in
from tests.support.api import issue_token, post_accepted_scans, post_manifest
from tests.support.scans import NOW, RECENT_START
from tests.support.scans import recent_scan as at
from tests.support.servers import random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.browser


async def test_a_district_supervisor_drills_down_to_who_is_not_back_and_downloads_the_list(
    page: Page, admin: httpx.AsyncClient, system: RunningSystem, tmp_path: Path
) -> None:
    district, enterprise_id, trip_id = unique("鹿城区"), unique("E"), unique("BUS")
    ids = {name: random_id_number() for name in ("黄小红", "林大伟", "何美玲")}
    await post_manifest(
        admin,
        {
            "enterprises": [
                {"enterprise_id": enterprise_id, "name": "鹿城鞋革第一厂", "shortage": 30,
                 "district": district, "open_positions": 9},
                {"enterprise_id": unique("E"), "name": "瑞安泵阀厂", "district": unique("瑞安市")},
            ],
            "trips": [{"trip_id": trip_id, "mode": "bus", "origin": "贵州毕节",
                       "destination": "温州鹿城", "departs_at": RECENT_START.isoformat(),
                       "eta": (NOW + timedelta(days=1)).isoformat()}],
            "workers": [
                {"id_number": id_number, "name": name, "enterprise_id": enterprise_id,
                 "trip_id": trip_id}
                for name, id_number in ids.items()
            ],
        },
    )  # fmt: skip
    back, feverish = ids["黄小红"], ids["林大伟"]
    await post_accepted_scans(
        admin,
        at(0, "departure_check", back),
        at(1, "boarding", back, trip_id=trip_id),
        at(2, "arrival_check", back),
        at(3, "checkin", back, enterprise_id=enterprise_id),
        at(0, "departure_check", feverish, temperature_c=38.5),
    )
    await eventually(
        lambda: admin.get(f"/v1/enterprises/{enterprise_id}/roster"),
        lambda response: response.json()["checked_in"] == 1 and response.json()["held"] == 1,
        what="one on post, one held",
        within=90,
    )
    token = await issue_token(admin, "supervisor", district=district)

    await sign_in(page, "/ui/supervisor", token)

    districts = page.locator("#districts tbody tr")
    await expect(districts).to_have_count(1, timeout=20_000)  # its district only
    mine = page.locator(f'#districts tr[data-district="{district}"]')
    await expect(mine.locator('[data-field="expected"]')).to_have_text("3")
    await expect(mine.locator('[data-field="checked_in"]')).to_have_text("1")
    await expect(mine.locator('[data-field="on_post_ratio"]')).to_contain_text("33%")
    await mine.click()
    await expect(page.locator("#district-filter")).to_contain_text(district)
    row = page.locator(f'#enterprises tr[data-enterprise-id="{enterprise_id}"]')
    await expect(page.locator("#enterprises tbody tr[data-enterprise-id]")).to_have_count(1)
    await expect(row.locator('[data-field="open_positions"]')).to_have_text("9")

    await row.click()

    drill = page.locator(f'tr.drill[data-drill-for="{enterprise_id}"]')
    await expect(drill).to_be_visible()
    workers = drill.locator("table.not-back tbody tr")
    await expect(workers).to_have_count(2)
    await expect(drill).to_contain_text("Not back yet: 2")
    for name in ("林大伟", "何美玲"):
        masked = ids[name][:6] + "*" * 8 + ids[name][-4:]
        listed = workers.filter(has_text=name)
        await expect(listed.locator('[data-field="id_masked"]')).to_have_text(masked)
    await expect(workers.filter(has_text="林大伟")).to_contain_text("出发时发热")
    await expect(drill).not_to_contain_text("黄小红")
    chart = drill.locator("svg.daily-chart")
    await expect(chart).to_be_visible()
    assert await chart.locator("circle").count() >= 1
    await expect(chart.locator("text.target-label").first).to_have_text("100%")
    await screenshot(page, "supervisor-bureau-1-drill-down")

    async with page.expect_download() as download_info:
        await drill.locator('button.download[data-format="xlsx"]').click()
    download = await download_info.value
    assert download.suggested_filename.startswith(f"not_back-{enterprise_id}")
    assert download.suggested_filename.endswith(".xlsx")
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    sheet = load_workbook(saved).active
    assert sheet is not None
    header, *rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert header[:3] == ["worker_ref", "id_masked", "name"]
    assert {(row[2], row[1]) for row in rows} == {
        (name, ids[name][:6] + "*" * 8 + ids[name][-4:]) for name in ("林大伟", "何美玲")
    }

    async with page.expect_download() as download_info:
        await page.locator('#enterprises-panel h2 button.download[data-format="csv"]').click()
    enterprises_csv = await download_info.value
    saved = tmp_path / enterprises_csv.suggested_filename
    await enterprises_csv.save_as(saved)
    content = saved.read_bytes()
    assert content.startswith(b"\xef\xbb\xbf")
    listed = list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))
    assert [(e["enterprise_id"], e["district"], e["checked_in"]) for e in listed] == [
        (enterprise_id, district, "1")
    ]
    await screenshot(page, "supervisor-bureau-2-after-downloads")
