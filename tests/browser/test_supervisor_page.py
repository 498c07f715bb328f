"""The supervisor page: the enterprise table, trips with missing workers, open alerts, live."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import RunningSystem, screenshot, sign_in
from tests.support.api import post_accepted_scans, post_manifest
from tests.support.scans import NOW
from tests.support.scans import RECENT_START as START
from tests.support.scans import recent_scan as at
from tests.support.servers import random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.browser


async def roster(admin: httpx.AsyncClient, enterprise_id: str) -> dict[str, Any]:
    response = await admin.get(f"/v1/enterprises/{enterprise_id}/roster")
    return response.json() if response.status_code == 200 else {}


async def test_the_enterprise_row_trips_and_alerts_show_and_refresh_live(
    page: Page, admin: httpx.AsyncClient, system: RunningSystem
) -> None:
    tag = unique("UI")
    enterprise_id, trip_id = f"{tag}-E", f"{tag}-BUS"
    ids = {name: random_id_number() for name in ("on_post", "fever", "on_the_bus")}
    manifest = {
        "enterprises": [{"enterprise_id": enterprise_id, "name": "瓯海服装厂", "shortage": 12}],
        "trips": [
            {
                "trip_id": trip_id,
                "mode": "bus",
                "origin": "贵州毕节",
                "destination": "温州瓯海",
                "departs_at": START.isoformat(),
                "eta": (NOW + timedelta(days=1)).isoformat(),
            }
        ],
        "workers": [
            {"id_number": id_number, "name": name, "enterprise_id": enterprise_id}
            | {"trip_id": trip_id}
            for name, id_number in ids.items()
        ],
    }
    await post_manifest(admin, manifest)
    await post_accepted_scans(
        admin,
        at(0, "departure_check", ids["on_post"]),
        at(1, "boarding", ids["on_post"], trip_id=trip_id),
        at(2, "arrival_check", ids["on_post"]),
        at(3, "checkin", ids["on_post"], enterprise_id=enterprise_id),
        at(0, "departure_check", ids["fever"], temperature_c=38.4),
        at(0, "departure_check", ids["on_the_bus"]),
        at(1, "boarding", ids["on_the_bus"], trip_id=trip_id),
    )
    await eventually(
        lambda: roster(admin, enterprise_id),
        lambda r: r.get("checked_in") == 1 and r.get("held") == 1 and r.get("in_transit") == 1,
        what="the scans applied",
    )

    await sign_in(page, "/ui/supervisor", system.admin_token)
    await page.fill("#filter", tag)
    row = page.locator(f'#enterprises tr[data-enterprise-id="{enterprise_id}"]')
    # The first load reads every enterprise, district and held worker: after the city
    # wave (29,400 workers) that takes longer than an assertion's default 5 s.
    await expect(row).to_be_visible(timeout=60_000)
    expected = {"expected": "3", "departed": "2", "in_transit": "1", "arrived": "1"}
    expected |= {"checked_in": "1", "held": "1", "broken": "0", "shortage": "12"}
    for field, count in expected.items():
        await expect(row.locator(f'[data-field="{field}"]')).to_have_text(count)
    await expect(row.locator('[data-field="on_post_ratio"]')).to_have_text("33%")
    await expect(row).to_contain_text("瓯海服装厂")

    trip = page.locator(f'#trips tr[data-trip-id="{trip_id}"]')
    await expect(trip.locator('[data-field="missing_count"]')).to_have_text("1")
    await trip.click()
    on_the_bus = await admin.post("/v1/workers/lookup", json={"id_number": ids["on_the_bus"]})
    await expect(page.locator("#trips tr.detail")).to_contain_text(on_the_bus.json()["worker_ref"])

    alert = page.locator(
        f'#alerts tr[data-kind="fever_at_departure"][data-enterprise-id="{enterprise_id}"]'
    )
    await expect(alert).to_be_visible()
    await expect(alert).to_contain_text("出发时发热")
    await expect(page.locator("#live")).to_contain_text("Live")
    await screenshot(page, "supervisor-1-enterprise-trip-alert")

    # The bus arrives: the page follows without a reload.
    await post_accepted_scans(admin, at(2, "arrival_check", ids["on_the_bus"]))
    await expect(row.locator('[data-field="in_transit"]')).to_have_text("0", timeout=20_000)
    await expect(row.locator('[data-field="arrived"]')).to_have_text("2")
    await expect(trip).to_have_count(0)
    await screenshot(page, "supervisor-2-after-arrival")


async def test_a_refused_token_brings_back_the_sign_in_form(page: Page) -> None:
    await sign_in(page, "/ui/supervisor", "rl_not-a-token")
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("#signin-message")).to_contain_text("令牌无效")
    await screenshot(page, "supervisor-0-token-refused")
