"""Headless Chromium (Debian's, never a downloaded one) over the running system's pages.

Screenshots of every page state go to ``artifacts/screenshots/`` (CI keeps them).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.e2e import conftest as e2e
from tests.e2e.conftest import RunningSystem
from tests.support.api import issue_token  # noqa: F401  (written once there; imported from here too)

# The e2e tier's fixtures: the running system (tracker + API on the test servers)
# and a client with the bootstrap admin token.
system = e2e.system
admin = e2e.admin

CHROMIUM = os.environ.get("RETURNLOOP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run deploy/browser/install.sh (apt)")
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def context(browser: Browser, system: RunningSystem) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (its own localStorage) pointed at the running API."""
    fresh = await browser.new_context(
        base_url=system.url, viewport={"width": 1360, "height": 900}, locale="zh-CN"
    )
    try:
        yield fresh
    finally:
        await fresh.close()


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    opened = await context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text}")
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )
    yield opened
    # A script error or a refused policy shows in the console; the pages must have none.
    assert problems == []


async def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as ``artifacts/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def sign_in(page: Page, path: str, token: str) -> None:
    """Open a page and give it a bearer token through its sign-in form."""
    await page.goto(path)
    await page.fill("#token-input", token)
    await page.press("#token-input", "Enter")
