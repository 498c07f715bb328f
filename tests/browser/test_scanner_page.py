"""The scanner page: keyboard-wedge input, decide then record, the offline queue, the gate."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, expect

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
)
from tests.support.api import issue_token, post_manifest, post_scans
from tests.support.scans import NOW, scan_body
from tests.support.servers import random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.browser


async def on_a_manifest(admin: httpx.AsyncClient, *id_numbers: str) -> str:
    """Put the workers on a new enterprise's manifest (no trip); its enterprise_id."""
    enterprise_id = unique("UI-E")
    manifest = {
        "enterprises": [{"enterprise_id": enterprise_id, "name": "龙湾电气", "shortage": 0}],
        "workers": [
            {"id_number": number, "name": "工人", "enterprise_id": enterprise_id, "trip_id": None}
            for number in id_numbers
        ],
    }
    await post_manifest(admin, manifest)
    return enterprise_id


async def test_a_recruiter_scans_an_id_and_sees_green_then_a_bad_id_and_sees_red(
    page: Page, admin: httpx.AsyncClient
) -> None:
    id_number = random_id_number()
    await on_a_manifest(admin, id_number)
    await open_scanner(page, await issue_token(admin, "recruiter"), "departure_check", "瓯海招工队")

    await scan(page, id_number)
    result = page.locator("#result")
    await expect(result).to_have_attribute("data-state", "allow")
    await record(page, temperature="36.6", colour="green")
    await expect(result).to_have_attribute("data-state", "accepted")
    await expect(result).to_contain_text("已登记 RECORDED")
    await expect(result).to_contain_text(masked(id_number))
    await expect(result).not_to_contain_text(id_number)
    # Once the tracker applied it, the banner says how the loop stands.
    await expect(result.locator("[data-loop]")).to_contain_text(
        "departure_cleared", timeout=APPLIED
    )
    await screenshot(page, "scanner-1-accepted")
    assert departure_cleared(await loop_view(admin, id_number))

    bad = id_number[:17] + ("1" if id_number[17] != "1" else "2")
    await scan(page, bad)
    await expect(result).to_have_attribute("data-state", "rejected")
    await expect(result).to_contain_text("拒绝 REJECTED")
    await expect(result).to_contain_text("证件号校验位错误")
    await expect(result).to_contain_text("id_number_checksum")
    await expect(page.locator("#record-panel")).to_be_hidden()
    await screenshot(page, "scanner-2-rejected")


async def test_a_fever_at_departure_turns_the_banner_red_once_applied(
    page: Page, admin: httpx.AsyncClient
) -> None:
    id_number = random_id_number()
    await on_a_manifest(admin, id_number)
    await open_scanner(page, await issue_token(admin, "recruiter"), "departure_check", "招工队")
    await scan(page, id_number)
    await expect(page.locator("#result")).to_have_attribute("data-state", "allow")
    await record(page, temperature="38.2", colour="green")
    result = page.locator("#result")
    await expect(result).to_have_attribute("data-state", "held", timeout=APPLIED)
    await expect(result).to_contain_text("扣留 HELD")
    await expect(result).to_contain_text("fever_at_departure")
    await expect(page.locator("#recent li.held")).to_contain_text("出发时发热")
    await screenshot(page, "scanner-3-held")


async def test_scans_made_offline_wait_in_the_queue_and_go_as_one_batch(
    page: Page, context: BrowserContext, admin: httpx.AsyncClient
) -> None:
    id_numbers = [random_id_number(), random_id_number()]
    await on_a_manifest(admin, *id_numbers)
    await open_scanner(page, await issue_token(admin, "recruiter"), "departure_check", "离线测试点")
    await expect(page.locator("#network")).to_contain_text("Online")
    requests = scan_requests(page)

    await context.set_offline(True)
    await expect(page.locator("#network")).to_contain_text("Offline")
    result = page.locator("#result")
    for id_number in id_numbers:
        await scan(page, id_number)
        # No decision without the network: the page says so and asks for a reason.
        await expect(result).to_have_attribute("data-state", "offline")
        await expect(result).to_contain_text("无法判定")
        await expect(page.locator("#override-box")).to_be_visible()
        await page.fill("#temperature", "36.5")
        await page.check('input[name="health_code"][value="green"]')
        if id_number == id_numbers[0]:
            await screenshot(page, "scanner-4-offline-no-decision")
        await page.click("#override-offline")
        await page.click("#record-button")
        await expect(result).to_have_attribute("data-state", "queued")
    await expect(page.locator("#queue-count")).to_have_text("2")
    await expect(page.locator("#recent li.queued")).to_have_count(2)
    await screenshot(page, "scanner-5-offline-queue")

    await context.set_offline(False)
    await expect(page.locator("#queue-count")).to_have_text("0", timeout=15_000)
    await expect(page.locator("#recent li.accepted")).to_have_count(2)
    await expect(page.locator("#sync")).to_contain_text("2 accepted")
    await expect(result).to_have_attribute("data-state", "sent")
    await screenshot(page, "scanner-6-queue-sent")
    assert [len(body["scans"]) for body in requests] == [2]
    for id_number in id_numbers:
        view = await eventually(
            partial(loop_view, admin, id_number),
            departure_cleared,
            what="the queued scan applied",
        )
        assert "offline" in checkpoint(view, "departure_check")["override_reason"]


async def test_a_gate_sees_red_with_reasons_then_lets_a_rechecked_worker_in_by_their_card(
    page: Page, admin: httpx.AsyncClient
) -> None:
    not_rechecked, rechecked = random_id_number(), random_id_number()
    enterprise_id = await on_a_manifest(admin, not_rechecked, rechecked)
    card = unique("C").replace("-", "").upper()
    response = await admin.post(
        "/v1/links",
        json={"id_number": rechecked, "health_code_id": unique("HC"), "ssc_card_no": card},
    )
    assert response.status_code == 201, response.text
    start = NOW - timedelta(hours=3)
    scans = [
        scan_body(kind, number, hours=0, trip_id="UI-GATE-BUS")
        | {"occurred_at": (start + timedelta(hours=hours)).isoformat()}
        for number in (not_rechecked, rechecked)
        for kind, hours in (("departure_check", 0), ("boarding", 1))
    ]
    scans.append(
        scan_body("arrival_check", rechecked, hours=0)
        | {"occurred_at": (start + timedelta(hours=2)).isoformat()}
    )
    await post_scans(admin, *scans)
    await eventually(
        lambda: loop_view(admin, rechecked),
        lambda view: view.get("stage") == "arrival_cleared",
        what="the arrival recheck applied",
    )

    gate = await issue_token(admin, "gate", enterprise_id=enterprise_id)
    await open_scanner(page, gate, "checkin", "龙湾电气北门", enterprise_id=enterprise_id)
    result = page.locator("#result")

    await scan(page, not_rechecked)
    await expect(result).to_have_attribute("data-state", "deny")
    await expect(result).to_contain_text("禁止 DENY")
    await expect(result.locator("ul.reasons")).to_contain_text("无抵达复检记录")
    await expect(result.locator("ul.reasons")).to_contain_text(
        "arrival_check_missing: no arrival recheck on record"
    )
    await screenshot(page, "scanner-7-gate-deny")
    # The guard does not let them in: nothing is recorded.
    await page.click("#record-cancel")
    await expect(page.locator("#record-panel")).to_be_hidden()

    await scan(page, card)
    await expect(result).to_have_attribute("data-state", "allow")
    await expect(result).to_contain_text("放行 ALLOW")
    await expect(result).to_contain_text(masked(rechecked))
    await expect(result).not_to_contain_text(card)
    await screenshot(page, "scanner-8-gate-allow")
    # An Enter alone (no code typed) records the worker on the banner.
    await page.press("#code", "Enter")
    await expect(result).to_have_attribute("data-state", "accepted")
    await eventually(
        lambda: loop_view(admin, rechecked),
        lambda view: view.get("stage") == "checked_in",
        what="the check-in recorded",
    )
    assert "checkin" not in (await loop_view(admin, not_rechecked))["checkpoints"]
