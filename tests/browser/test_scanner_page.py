"""The scanner page: keyboard-wedge input, green and red decisions, the offline queue, the gate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.browser.conftest import issue_token, screenshot, sign_in
from tests.support.scans import scan_body
from tests.support.servers import random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.browser

NOW = datetime.now(UTC).replace(microsecond=0)
# How long the tracker may take to apply a scan (its first batch waits for its consumer group).
APPLIED = 20_000


async def loop_view(admin: httpx.AsyncClient, id_number: str) -> dict[str, Any]:
    response = await admin.post("/v1/workers/lookup", json={"id_number": id_number})
    return response.json() if response.status_code == 200 else {}


def departure_cleared(view: dict[str, Any]) -> bool:
    return bool(view.get("checkpoints", {}).get("departure_check", {}).get("passed"))


async def scan(page: Page, code: str) -> None:
    """What a keyboard-wedge scanner does: type the code, then Enter."""
    await page.locator("#code").press_sequentially(code)
    await page.press("#code", "Enter")


async def open_scanner(page: Page, token: str, kind: str, station: str) -> None:
    await sign_in(page, "/ui/scanner", token)
    await page.check(f'input[name="kind"][value="{kind}"]')
    await page.fill("#station", station)


async def test_a_recruiter_scans_an_id_and_sees_green_then_a_bad_id_and_sees_red(
    page: Page, admin: httpx.AsyncClient
) -> None:
    await open_scanner(page, await issue_token(admin, "recruiter"), "departure_check", "瓯海招工队")
    await page.fill("#temperature", "36.6")
    id_number = random_id_number()

    await scan(page, id_number)
    result = page.locator("#result")
    await expect(result).to_have_attribute("data-state", "accepted")
    await expect(result).to_contain_text("通过 ACCEPTED")
    await expect(result).to_contain_text(f"{id_number[:6]}********{id_number[-4:]}")
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
    await screenshot(page, "scanner-2-rejected")


async def test_a_fever_at_departure_turns_the_banner_red_once_applied(
    page: Page, admin: httpx.AsyncClient
) -> None:
    await open_scanner(page, await issue_token(admin, "recruiter"), "departure_check", "招工队")
    await page.fill("#temperature", "38.2")
    await scan(page, random_id_number())
    result = page.locator("#result")
    await expect(result).to_have_attribute("data-state", "held", timeout=APPLIED)
    await expect(result).to_contain_text("扣留 HELD")
    await expect(result).to_contain_text("fever_at_departure")
    await expect(page.locator("#recent li.held")).to_contain_text("出发时发热")
    await screenshot(page, "scanner-3-held")


async def test_scans_made_offline_wait_in_the_queue_and_go_as_one_batch(
    page: Page, context: BrowserContext, admin: httpx.AsyncClient
) -> None:
    await open_scanner(page, await issue_token(admin, "recruiter"), "departure_check", "离线测试点")
    await expect(page.locator("#network")).to_contain_text("Online")
    batches: list[int] = []
    page.on(
        "request",
        lambda request: (
            batches.append(len(request.post_data_json["scans"]))
            if request.url.endswith("/v1/scans") and "scans" in (request.post_data_json or {})
            else None
        ),
    )

    await context.set_offline(True)
    await expect(page.locator("#network")).to_contain_text("Offline")
    id_numbers = [random_id_number(), random_id_number()]
    for id_number in id_numbers:
        await scan(page, id_number)
        await expect(page.locator("#result")).to_have_attribute("data-state", "queued")
    await expect(page.locator("#queue-count")).to_have_text("2")
    await expect(page.locator("#recent li.queued")).to_have_count(2)
    await screenshot(page, "scanner-4-offline-queue")

    await context.set_offline(False)
    await expect(page.locator("#queue-count")).to_have_text("0", timeout=15_000)
    await expect(page.locator("#recent li.accepted")).to_have_count(2)
    await expect(page.locator("#sync")).to_contain_text("2 accepted")
    await expect(page.locator("#result")).to_have_attribute("data-state", "sent")
    await screenshot(page, "scanner-5-queue-sent")
    assert batches == [2]
    for id_number in id_numbers:
        await eventually(
            lambda id_number=id_number: loop_view(admin, id_number),
            departure_cleared,
            what="the queued scan applied",
        )


async def test_a_gate_sees_red_with_reasons_for_a_worker_without_an_arrival_recheck(
    page: Page, admin: httpx.AsyncClient
) -> None:
    enterprise_id = unique("UI-GATE")
    not_rechecked, rechecked = random_id_number(), random_id_number()
    manifest = {
        "enterprises": [{"enterprise_id": enterprise_id, "name": "龙湾电气", "shortage": 0}],
        "workers": [
            {"id_number": number, "name": "工人", "enterprise_id": enterprise_id, "trip_id": None}
            for number in (not_rechecked, rechecked)
        ],
    }
    response = await admin.post("/v1/manifests", json=manifest)
    assert response.status_code == 200, response.text
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
    response = await admin.post("/v1/scans", json={"scans": scans})
    assert response.status_code == 202, response.text
    await eventually(
        lambda: loop_view(admin, rechecked),
        lambda view: view.get("stage") == "arrival_cleared",
        what="the arrival recheck applied",
    )

    gate = await issue_token(admin, "gate", enterprise_id=enterprise_id)
    await open_scanner(page, gate, "checkin", "龙湾电气北门")
    await page.fill("#enterprise", enterprise_id)
    result = page.locator("#result")

    await scan(page, not_rechecked)
    await expect(result).to_have_attribute("data-state", "deny")
    await expect(result).to_contain_text("禁止入厂 DENY")
    await expect(result.locator("ul.reasons")).to_contain_text("无抵达复检记录")
    await expect(result.locator("ul.reasons")).to_contain_text("no arrival health recheck")
    await screenshot(page, "scanner-6-gate-deny")

    await scan(page, rechecked)
    await expect(result).to_have_attribute("data-state", "allow")
    await expect(result).to_contain_text("放行 ALLOW")
    await screenshot(page, "scanner-7-gate-allow")
    await eventually(
        lambda: loop_view(admin, rechecked),
        lambda view: view.get("stage") == "checked_in",
        what="the check-in recorded",
    )
    assert "checkin" not in (await loop_view(admin, not_rechecked))["checkpoints"]


async def test_a_linked_health_code_resolves_to_the_worker(
    page: Page, admin: httpx.AsyncClient
) -> None:
    id_number = random_id_number()
    health_code_id = unique("HC").replace("-", "")
    card = unique("C").replace("-", "").upper()
    response = await admin.post(
        "/v1/links",
        json={"id_number": id_number, "health_code_id": health_code_id, "ssc_card_no": card},
    )
    assert response.status_code == 201, response.text

    await open_scanner(page, await issue_token(admin, "recruiter"), "departure_check", "招工队")
    await scan(page, health_code_id)
    result = page.locator("#result")
    await expect(result).to_have_attribute("data-state", "resolved")
    await expect(result).to_contain_text(f"{id_number[:6]}********{id_number[-4:]}")
    await expect(result).to_contain_text("请扫描身份证")
    await screenshot(page, "scanner-8-code-resolved")
