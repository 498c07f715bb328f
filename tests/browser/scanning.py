"""Driving the scanner page as its operators do: the shift once, then scan, decide, record."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import Page, Request, expect

from tests.browser.conftest import sign_in

# How long the tracker may take to apply a scan (its first batch waits for its consumer group).
APPLIED = 20_000


def masked(id_number: str) -> str:
    return f"{id_number[:6]}********{id_number[-4:]}"


async def loop_view(admin: httpx.AsyncClient, id_number: str) -> dict[str, Any]:
    response = await admin.post("/v1/workers/lookup", json={"id_number": id_number})
    return response.json() if response.status_code == 200 else {}


def checkpoint(view: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = view.get("checkpoints", {}).get(kind, {})
    return found


def departure_cleared(view: dict[str, Any]) -> bool:
    return bool(checkpoint(view, "departure_check").get("passed"))


async def open_scanner(
    page: Page,
    token: str,
    kind: str,
    station: str,
    *,
    trip_id: str | None = None,
    enterprise_id: str | None = None,
) -> None:
    """Sign in and set up the shift: checkpoint, station (and trip or enterprise)."""
    await sign_in(page, "/ui/scanner", token)
    await page.check(f'input[name="kind"][value="{kind}"]')
    await page.fill("#station", station)
    if trip_id is not None:
        await page.fill("#trip", trip_id)
    if enterprise_id is not None:
        await page.fill("#enterprise", enterprise_id)
    await page.click("#shift-start")
    await expect(page.locator("#shift-summary")).to_be_visible()
    await expect(page.locator("#shift-text")).to_contain_text(station)


async def scan(page: Page, code: str) -> None:
    """What a keyboard-wedge scanner does: type the code, then Enter."""
    await page.locator("#code").press_sequentially(code)
    await page.press("#code", "Enter")


async def record(
    page: Page,
    *,
    temperature: str | None = None,
    colour: str | None = None,
    reason: str | None = None,
) -> None:
    """Fill in what the operator gives for this worker and press 登记 Record."""
    if temperature is not None:
        await page.fill("#temperature", temperature)
    if colour is not None:
        await page.check(f'input[name="health_code"][value="{colour}"]')
    if reason is not None:
        await page.fill("#override", reason)
    await page.click("#record-button")


def scan_requests(page: Page) -> list[dict[str, Any]]:
    """The body of every POST /v1/scans the page makes from now on (one scan or a batch)."""
    bodies: list[dict[str, Any]] = []

    def seen(request: Request) -> None:
        body = request.post_data_json if request.method == "POST" else None
        if request.url.endswith("/v1/scans") and isinstance(body, dict):
            bodies.append(body)

    page.on("request", seen)
    return bodies


def scans_in(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The scans those bodies carried, in order."""
    return [scan for body in bodies for scan in body.get("scans", [body])]
