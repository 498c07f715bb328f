"""Take the README's screenshot: the supervisor page over the small demo wave.

    .venv/bin/python -m tests.browser.readme_screenshot [docs/images/supervisor.png]

Runs `returnloop up --demo small` on embedded servers of its own (a temporary
data directory, a free port), waits for the demo's summary, photographs
/ui/supervisor in headless Chromium and stops everything with Ctrl-C's signal.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.support.processes import free_port

SERVER_VARIABLES = (
    "RETURNLOOP_KAFKA_BOOTSTRAP",
    "RETURNLOOP_DATABASE_URL",
    "RETURNLOOP_WORKER_REF_KEY",
    "RETURNLOOP_ADMIN_TOKEN",
)


async def photograph(url: str, token: str, target: Path) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1360, "height": 900}, locale="zh-CN")
        await page.goto(f"{url}/ui/supervisor")
        await page.fill("#token-input", token)
        await page.press("#token-input", "Enter")
        await page.locator("#enterprises tr[data-enterprise-id]").first.wait_for()
        await page.locator("#alerts tr[data-alert-id]").first.wait_for()
        target.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(target), full_page=True)
        await browser.close()


def main() -> int:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/supervisor.png")
    data_dir = Path(tempfile.mkdtemp(prefix="returnloop-screenshot-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARIABLES}
    env |= {"RETURNLOOP_DATA_DIR": str(data_dir), "RETURNLOOP_API_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--demo", "small"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            if line.startswith(("every loop ended", "MISMATCH")):
                break
        else:
            return 1
        token = (data_dir / "admin.token").read_text().strip()
        asyncio.run(photograph(f"http://127.0.0.1:{port}", token, target))
        print(f"saved {target}")
        return 0
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(120)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
