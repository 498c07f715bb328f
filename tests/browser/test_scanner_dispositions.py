"""The scanner page's disposition tab: a health-station nurse finds a worker held after a
failed check and records what happened next, with a required note; the page confirms it and,
once the tracker has applied it, shows the worker's new status."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, Request, expect

from tests.browser.conftest import screenshot, sign_in
from tests.browser.scanning import loop_view, masked
from tests.support.api import issue_token, post_accepted_scans, post_manifest
from tests.support.scans import NOW, scan_body
from tests.support.servers import random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.browser

# The tracker applies a disposition asynchronously; the real servers are shared and, under
# load, a scan or a disposition can take longer than 30 s to apply (as in the e2e modules).
APPLIED = 90_000


async def held_for_fever(admin: httpx.AsyncClient, name: str) -> tuple[str, str]:
    """A worker on a bus leaving in an hour, with a linked health code, held for a fever at
    the departure check: their ID number and the code's content."""
    id_number = random_id_number()
    enterprise_id = unique("UI-DSP")
    trip_id = unique("UI-DSP-BUS")
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
            ],
        },
    )
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
    fever = scan_body("departure_check", id_number, hours=0, temperature_c=38.5)
    fever["occurred_at"] = (NOW - timedelta(minutes=10)).isoformat()
    await post_accepted_scans(admin, fever)
    await eventually(
        lambda: loop_view(admin, id_number),
        lambda view: view.get("status") == "held",
        within=APPLIED / 1000,
        what="the failed departure check applied",
    )
    return id_number, health_code


def disposition_requests(page: Page) -> list[dict[str, Any]]:
    """The body of every disposition the page records from now on."""
    bodies: list[dict[str, Any]] = []

    def seen(request: Request) -> None:
        body = request.post_data_json if request.method == "POST" else None
        # The permission question goes to a worker nobody is; it records nothing.
        if request.url.endswith("/dispositions") and "w_000000000000" not in request.url:
            bodies.append(body)

    page.on("request", seen)
    return bodies


async def open_dispositions(page: Page, token: str) -> None:
    """Sign in to the scanner page and open its disposition tab."""
    await sign_in(page, "/ui/scanner", token)
    await page.click("#tab-disposition")
    await expect(page.locator("#tab-disposition")).to_have_attribute("aria-selected", "true")
    await expect(page.locator("#dsp-find-panel")).to_be_visible()
    await expect(page.locator("#shift-panel")).to_be_hidden()


async def find(page: Page, code: str) -> None:
    """A keyboard-wedge scanner into the disposition tab's field: the code, then Enter."""
    await page.locator("#dsp-code").press_sequentially(code)
    await page.press("#dsp-code", "Enter")


async def test_a_nurse_releases_a_worker_held_for_fever_with_a_note_and_the_alert_closes(
    page: Page, admin: httpx.AsyncClient
) -> None:
    id_number, health_code = await held_for_fever(admin, "周八")
    recorded = disposition_requests(page)

    await open_dispositions(page, await issue_token(admin, "health_station"))
    await expect(page.locator("#dsp-permission")).to_be_hidden()
    await expect(page.locator("#dsp-code")).to_be_focused()
    await find(page, health_code)
    worker = page.locator("#dsp-worker")
    await expect(worker).to_be_visible()
    await expect(page.locator("#dsp-name")).to_have_text("周八")
    await expect(page.locator("#dsp-id")).to_have_text(masked(id_number))
    await expect(worker).not_to_contain_text(id_number)
    await expect(page.locator("#dsp-status")).to_have_attribute("data-status", "held")
    await expect(page.locator("#dsp-status")).to_contain_text("扣留")
    fever = page.locator('#dsp-alerts li[data-alert="fever_at_departure"]')
    await expect(fever).to_contain_text("出发时发热")
    await expect(page.locator("#dsp-history")).to_contain_text("无 None")
    await expect(page.locator("#dsp-record-panel")).to_be_visible()
    for zh, en in (
        ("隔离", "Isolation"),
        ("医学观察", "Medical observation"),
        ("解除", "Released"),
        ("申诉成立", "Code appeal upheld"),
        ("放弃返岗", "Withdrawn"),
    ):
        await expect(page.locator("#dsp-kinds")).to_contain_text(zh)
        await expect(page.locator("#dsp-kinds")).to_contain_text(en)
    await screenshot(page, "scanner-disposition-1-held-worker")

    # Without a note (or with blanks only) nothing is recorded, and the page says why.
    await page.click('#dsp-kinds button[data-kind="released"]')
    await expect(page.locator('#dsp-kinds button[data-kind="released"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    await page.fill("#dsp-note", "   ")
    await page.click("#dsp-record")
    message = page.locator("#dsp-message")
    await expect(message).to_contain_text("请填写处置说明（必填）")
    await expect(message).to_contain_text("a note is required")
    await expect(page.locator("#dsp-note")).to_be_focused()
    await expect(page.locator("#dsp-result")).to_be_hidden()
    await screenshot(page, "scanner-disposition-2-note-required")
    assert recorded == []

    note = "复测体温36.6 °C，核酸阴性，医生李华同意解除"
    await page.fill("#dsp-note", note)
    await page.click("#dsp-record")
    result = page.locator("#dsp-result")
    await expect(result).to_have_attribute("data-state", "recorded")
    await expect(result).to_contain_text("已登记 RECORDED")
    await expect(result.locator("dd[data-disposition-id]")).to_contain_text("dsp_")
    await expect(result).to_contain_text(note)
    await expect(page.locator("#dsp-record-panel")).to_be_hidden()
    # After the tracker has applied it: the new status, the alert gone, the disposition listed.
    await expect(result).to_have_attribute("data-state", "applied", timeout=APPLIED)
    await expect(result.locator('[data-applied="applied"]')).to_contain_text("Status")
    await expect(page.locator("#dsp-status")).not_to_have_attribute("data-status", "held")
    await expect(page.locator("#dsp-alerts")).to_contain_text("无 None")
    await expect(page.locator('#dsp-history li[data-kind="released"]')).to_contain_text(note)
    await screenshot(page, "scanner-disposition-3-released-applied")
    assert recorded == [{"kind": "released", "note": note}]

    disposition_id = await result.locator("dd[data-disposition-id]").inner_text()
    view = await loop_view(admin, id_number)
    assert [(d["disposition_id"], d["kind"], d["note"]) for d in view["dispositions"]] == [
        (disposition_id, "released", note)
    ]
    alerts = {alert["kind"]: alert for alert in view["alerts"]}
    assert alerts["fever_at_departure"]["open"] is False
    assert alerts["fever_at_departure"]["closed_at"] is not None
    assert view["status"] != "held"
    shown_status = await page.locator("#dsp-status").get_attribute("data-status")
    assert shown_status == view["status"]


async def test_a_withdrawn_worker_typed_by_id_number_shows_status_withdrawn(
    page: Page, admin: httpx.AsyncClient
) -> None:
    id_number, _ = await held_for_fever(admin, "吴九")
    recorded = disposition_requests(page)

    await open_dispositions(page, await issue_token(admin, "health_station"))
    await find(page, id_number)
    await expect(page.locator("#dsp-status")).to_have_attribute("data-status", "held")
    # A kind must be chosen: a note alone records nothing.
    note = "本人决定留乡务农，本批次不再返岗"
    await page.fill("#dsp-note", note)
    await page.click("#dsp-record")
    await expect(page.locator("#dsp-message")).to_contain_text("请选择处置类型")
    await expect(page.locator("#dsp-message")).to_contain_text("choose the kind")
    assert recorded == []

    await page.click('#dsp-kinds button[data-kind="withdrawn"]')
    await page.click("#dsp-record")
    result = page.locator("#dsp-result")
    await expect(result).to_have_attribute("data-state", "recorded")
    await expect(result).to_contain_text("放弃返岗 Withdrawn")
    await expect(result).to_have_attribute("data-state", "applied", timeout=APPLIED)
    await expect(result.locator('[data-status="withdrawn"]')).to_contain_text("放弃返岗")
    await expect(page.locator("#dsp-status")).to_have_attribute("data-status", "withdrawn")
    await expect(page.locator("#dsp-status")).to_contain_text("withdrawn")
    await screenshot(page, "scanner-disposition-4-withdrawn")
    assert recorded == [{"kind": "withdrawn", "note": note}]

    view = await loop_view(admin, id_number)
    assert view["status"] == "withdrawn"
    assert [d["kind"] for d in view["dispositions"]] == ["withdrawn"]

    # The tab outlives a reload (it is the page's address), and an earlier disposition shows.
    await page.reload()
    await expect(page.locator("#dsp-find-panel")).to_be_visible()
    await find(page, id_number)
    await expect(page.locator('#dsp-history li[data-kind="withdrawn"]')).to_contain_text(note)


async def test_a_recruiter_is_told_it_may_not_record_dispositions(
    page: Page, admin: httpx.AsyncClient
) -> None:
    recorded = disposition_requests(page)
    await open_dispositions(page, await issue_token(admin, "recruiter"))
    notice = page.locator("#dsp-permission")
    await expect(notice).to_be_visible()
    await expect(notice).to_contain_text("无权限")
    await expect(notice).to_contain_text("No permission")
    await expect(page.locator("#dsp-code")).to_be_disabled()
    await expect(page.locator("#tab-disposition")).to_have_class("locked")
    await screenshot(page, "scanner-disposition-5-no-permission")
    assert recorded == []

    # The scan tab is the recruiter's, untouched.
    await page.click("#tab-scan")
    await expect(page.locator("#shift-panel")).to_be_visible()
    await expect(page.locator("#dsp-find-panel")).to_be_hidden()
