"""One scan, one decision: the scanner identifies the worker by the code they show, asks
POST /v1/decisions, shows 放行 / 禁止 with every reason, then records what the operator gives."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.scanning import (
    APPLIED,
    checkpoint,
    departure_cleared,
    loop_view,
    masked,
    open_scanner,
    record,
    scan,
    scan_requests,
    scans_in,
)
from tests.support.api import issue_token, post_accepted_scans, post_manifest
from tests.support.scans import NOW, scan_body
from tests.support.servers import random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.browser


async def manifest(admin: httpx.AsyncClient, trip_id: str, workers: dict[str, str]) -> str:
    """An enterprise and a bus leaving in an hour, with ``workers`` (name → ID number)."""
    enterprise_id = unique("UI-DEC")
    await post_manifest(
        admin,
        {
            "enterprises": [{"enterprise_id": enterprise_id, "name": "瓯海鞋业", "shortage": 0}],
            "trips": [
                {
                    "trip_id": trip_id,
                    "mode": "bus",
                    "origin": "贵州毕节",
                    "destination": "温州瓯海",
                    "departs_at": (NOW + timedelta(hours=1)).isoformat(),
                    "eta": (NOW + timedelta(hours=20)).isoformat(),
                }
            ],
            "workers": [
                {
                    "id_number": id_number,
                    "name": name,
                    "enterprise_id": enterprise_id,
                    "trip_id": trip_id,
                }
                for name, id_number in workers.items()
            ],
        },
    )
    return enterprise_id


async def linked_green(admin: httpx.AsyncClient, id_number: str) -> str:
    """Link a health code (a URL, as many regions' QR codes are) and a card to the worker,
    and have the platform say green; the health code's content."""
    health_code = f"https://hc.example.gov.cn/q?c={unique('hc')}&r=52"
    response = await admin.post(
        "/v1/links",
        json={
            "id_number": id_number,
            "health_code_id": health_code,
            "ssc_card_no": unique("C").replace("-", "").upper(),
        },
    )
    assert response.status_code == 201, response.text
    as_of = (NOW - timedelta(minutes=5)).isoformat()
    response = await admin.post(
        "/v1/healthcode/updates",
        json={"updates": [{"code": health_code, "health_code": "green", "as_of": as_of}]},
    )
    assert response.status_code == 202, response.text
    assert response.json()["results"][0]["status"] == "accepted", response.text
    await eventually(
        lambda: loop_view(admin, id_number),
        lambda view: view.get("health_code") == "green",
        what="the platform's colour applied",
    )
    return health_code


async def test_a_linked_health_code_at_departure_is_allowed_and_recorded_with_the_platform_colour(
    page: Page, admin: httpx.AsyncClient
) -> None:
    id_number = random_id_number()
    trip_id = unique("UI-BUS")
    await manifest(admin, trip_id, {"张三": id_number})
    health_code = await linked_green(admin, id_number)
    requests = scan_requests(page)

    await open_scanner(page, await issue_token(admin, "recruiter"), "departure_check", "毕节招工队")
    await scan(page, health_code)
    result = page.locator("#result")
    await expect(result).to_have_attribute("data-state", "allow")
    await expect(result.locator(".headline")).to_contain_text("放行 ALLOW")
    await expect(result).to_contain_text(f"张三 · {masked(id_number)}")
    await expect(result).not_to_contain_text(id_number)
    # Identified by the code: no second read of the ID card, and the colour comes from the
    # platform unless the operator says what the code showed.
    await expect(page.locator("#record-panel")).to_be_visible()
    await expect(page.locator('input[name="health_code"][value="platform"]')).to_be_checked()
    await expect(page.locator("#platform-colour")).to_contain_text("绿码")
    await expect(page.locator("#temperature")).to_be_focused()
    await expect(page.locator("#temperature")).to_have_value("")
    assert requests == []
    await screenshot(page, "scanner-decision-1-allow")

    await record(page, temperature="36.4")
    await expect(result).to_have_attribute("data-state", "accepted")
    await expect(result).to_contain_text("已登记 RECORDED")
    await expect(result.locator("[data-loop]")).to_contain_text(
        "departure_cleared", timeout=APPLIED
    )
    await expect(page.locator("#record-panel")).to_be_hidden()
    await screenshot(page, "scanner-decision-2-recorded")
    posted = scans_in(requests)
    assert len(posted) == 1
    assert posted[0]["code"] == health_code and "id_number" not in posted[0]
    assert "health_code" not in posted[0] and posted[0]["temperature_c"] == 36.4

    view = await eventually(
        lambda: loop_view(admin, id_number), departure_cleared, what="the check applied"
    )
    check = checkpoint(view, "departure_check")
    assert check["passed"] is True
    assert check["health_code"] == "green"
    assert check["health_code_source"] == "platform"
    assert check["temperature_c"] == 36.4
    assert check["station"] == "毕节招工队"
    assert "override_reason" not in check

    # A code no link knows names nobody: nothing to decide, nothing to record.
    await scan(page, "UNLINKED-" + unique("qr"))
    await expect(result).to_have_attribute("data-state", "unknown")
    await expect(result).to_contain_text("该码未关联任何人员")
    await expect(page.locator("#record-panel")).to_be_hidden()


async def test_a_held_worker_is_denied_at_the_bus_door_and_boards_only_with_an_override_reason(
    page: Page, admin: httpx.AsyncClient
) -> None:
    id_number = random_id_number()
    trip_id = unique("UI-BUS")
    await manifest(admin, trip_id, {"李四": id_number})
    health_code = await linked_green(admin, id_number)
    fever = scan_body("departure_check", id_number, hours=0, temperature_c=38.5)
    fever["occurred_at"] = (NOW - timedelta(minutes=2)).isoformat()
    await post_accepted_scans(admin, fever)
    await eventually(
        lambda: loop_view(admin, id_number),
        lambda view: view.get("status") == "held",
        what="the failed departure check applied",
    )

    await open_scanner(
        page, await issue_token(admin, "recruiter"), "boarding", "毕节客运站 3号门", trip_id=trip_id
    )
    requests = scan_requests(page)
    await scan(page, health_code)
    result = page.locator("#result")
    await expect(result).to_have_attribute("data-state", "deny")
    await expect(result.locator(".headline")).to_contain_text("禁止 DENY")
    await expect(result).to_contain_text(f"李四 · {masked(id_number)}")
    reason = result.locator('li[data-reason="departure_check_failed"]')
    await expect(reason).to_contain_text("出发体检未通过")
    await expect(reason).to_contain_text("the latest departure health check did not pass")
    await expect(result.locator("[data-loop]")).to_contain_text("held")
    await expect(page.locator("#override-box")).to_be_hidden()
    await screenshot(page, "scanner-decision-3-deny")

    # Recording against the denial asks why; without a reason nothing is recorded.
    await record(page)
    await expect(page.locator("#override-box")).to_be_visible()
    await expect(page.locator("#override")).to_be_focused()
    await expect(page.locator("#record-message")).to_contain_text("请填写放行理由")
    await expect(page.locator("#record-message")).to_contain_text("override reason is required")
    await expect(result).to_have_attribute("data-state", "deny")
    await screenshot(page, "scanner-decision-4-override-asked")
    assert requests == []

    why = "复测体温36.8，防疫组长王敏同意上车"
    await record(page, reason=why)
    await expect(result).to_have_attribute("data-state", "accepted")
    await expect(result).to_contain_text(why)
    await screenshot(page, "scanner-decision-5-override-recorded")
    assert [(scan["kind"], scan["override_reason"]) for scan in scans_in(requests)] == [
        ("boarding", why)
    ]

    view = await eventually(
        lambda: loop_view(admin, id_number),
        lambda view: "boarding" in view.get("checkpoints", {}),
        what="the boarding applied",
    )
    boarding = checkpoint(view, "boarding")
    assert boarding["override_reason"] == why
    assert boarding["trip_id"] == trip_id


async def test_the_temperature_is_this_workers_own_never_the_previous_ones(
    page: Page, admin: httpx.AsyncClient
) -> None:
    first, second = random_id_number(), random_id_number()
    trip_id = unique("UI-BUS")
    await manifest(admin, trip_id, {"王五": first, "赵六": second})
    requests = scan_requests(page)

    await open_scanner(page, await issue_token(admin, "recruiter"), "departure_check", "毕节招工队")
    result = page.locator("#result")
    await scan(page, first)
    await expect(result).to_have_attribute("data-state", "allow")
    # Typed by ID number, the worker may have no linked code: no colour is chosen for them.
    for colour in ("platform", "green", "yellow", "red"):
        await expect(
            page.locator(f'input[name="health_code"][value="{colour}"]')
        ).not_to_be_checked()
    await record(page, temperature="36.7", colour="green")
    await expect(result).to_have_attribute("data-state", "accepted")

    await scan(page, second)
    await expect(result).to_have_attribute("data-state", "allow")
    await expect(result).to_contain_text(f"赵六 · {masked(second)}")
    await expect(page.locator("#temperature")).to_have_value("")
    await expect(page.locator('input[name="health_code"][value="green"]')).not_to_be_checked()
    await page.check('input[name="health_code"][value="green"]')
    await page.click("#record-button")
    await expect(page.locator("#record-message")).to_contain_text("请填写该工人的体温")
    await expect(page.locator("#record-message")).to_contain_text("enter this worker's temperature")
    await expect(result).to_have_attribute("data-state", "allow")
    await screenshot(page, "scanner-decision-6-temperature-required")
    assert [scan["temperature_c"] for scan in scans_in(requests)] == [36.7]

    await record(page, temperature="36.5")
    await expect(result).to_have_attribute("data-state", "accepted")
    assert [scan["temperature_c"] for scan in scans_in(requests)] == [36.7, 36.5]
    for id_number, degrees in ((first, 36.7), (second, 36.5)):
        view = await eventually(
            partial(loop_view, admin, id_number),
            departure_cleared,
            what="the check applied",
        )
        assert checkpoint(view, "departure_check")["temperature_c"] == degrees
        assert checkpoint(view, "departure_check")["health_code_source"] == "scanned"

    # The shift outlives a reload: the station is not asked for again.
    await page.reload()
    await expect(page.locator("#shift-summary")).to_be_visible()
    await expect(page.locator("#shift-text")).to_contain_text("毕节招工队")
    await expect(page.locator('input[name="kind"][value="departure_check"]')).to_be_checked()
    await expect(page.locator("#record-panel")).to_be_hidden()


async def test_a_health_station_rechecks_on_arrival_whatever_the_reasons_say(
    page: Page, admin: httpx.AsyncClient
) -> None:
    id_number = random_id_number()
    trip_id = unique("UI-BUS")
    await manifest(admin, trip_id, {"孙七": id_number})
    health_code = await linked_green(admin, id_number)
    departed = scan_body("departure_check", id_number, hours=0)
    departed["occurred_at"] = (NOW - timedelta(hours=3)).isoformat()
    await post_accepted_scans(admin, departed)
    await eventually(partial(loop_view, admin, id_number), departure_cleared, what="departed")

    await open_scanner(
        page, await issue_token(admin, "health_station"), "arrival_check", "温州南站健康站"
    )
    await scan(page, health_code)
    result = page.locator("#result")
    # The recheck is always allowed: it is how a problem gets found. The reasons inform.
    await expect(result).to_have_attribute("data-state", "allow")
    reason = result.locator('li[data-reason="not_boarded"]')
    await expect(reason).to_contain_text("无上车记录")
    await expect(reason).to_contain_text("no boarding on record")
    await expect(page.locator('input[name="health_code"][value="platform"]')).to_be_checked()
    await screenshot(page, "scanner-decision-7-arrival-allow-with-reasons")
    await record(page, temperature="36.6")
    await expect(result).to_have_attribute("data-state", "accepted")
    view = await eventually(
        partial(loop_view, admin, id_number),
        lambda view: "arrival_check" in view.get("checkpoints", {}),
        what="the recheck applied",
    )
    assert checkpoint(view, "arrival_check")["health_code_source"] == "platform"
    assert checkpoint(view, "arrival_check")["temperature_c"] == 36.6

    # A health station may not clear departures: the page says so and records nothing.
    await page.check('input[name="kind"][value="departure_check"]')
    await expect(page.locator("#shift-text")).to_contain_text("Departure check")
    await scan(page, health_code)
    await expect(result).to_have_attribute("data-state", "rejected")
    await expect(result).to_contain_text("无权限")
    await expect(page.locator("#record-panel")).to_be_hidden()
