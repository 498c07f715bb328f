"""The headers each answer carries, without servers: API answers never stored, pages under
a policy that loads nothing from elsewhere, and pages with nothing inline to allow."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from services.api.headers import SecurityHeaders, headers_for

STATIC = Path(__file__).resolve().parents[2] / "services" / "api" / "static"


@pytest.mark.parametrize(
    "path",
    ["/v1/scans", "/v1/workers/w_0123", "/v1/enterprises/E1/not_back", "/v1/audit", "/v1/held"],
)
def test_every_api_answer_is_not_to_be_stored(path: str) -> None:
    assert (b"cache-control", b"no-store") in headers_for(path)
    assert (b"x-content-type-options", b"nosniff") in headers_for(path)


@pytest.mark.parametrize("path", ["/ui", "/ui/supervisor", "/ui/scanner", "/ui/static/common.js"])
def test_the_pages_carry_a_policy_that_loads_nothing_from_elsewhere(path: str) -> None:
    headers = dict(headers_for(path))

    policy = headers[b"content-security-policy"].decode()
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert not re.search(r"https?:|\*", policy), policy
    assert headers[b"referrer-policy"] == b"no-referrer"
    assert headers[b"x-content-type-options"] == b"nosniff"


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/v1x", "/uix"])
def test_other_answers_are_only_nosniff(path: str) -> None:
    assert headers_for(path) == [(b"x-content-type-options", b"nosniff")]


async def test_the_middleware_replaces_a_routes_own_cache_header_under_v1() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"cache-control", b"max-age=60"), (b"content-type", b"text/csv")],
            }
        )
        await send({"type": "http.response.body", "body": b"a,b\n"})

    transport = httpx.ASGITransport(app=SecurityHeaders(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        export = await client.get("/v1/alerts?format=csv")
        elsewhere = await client.get("/metrics")

    assert export.headers.get_list("cache-control") == ["no-store"]
    assert export.headers["content-type"] == "text/csv"
    assert elsewhere.headers.get_list("cache-control") == ["max-age=60"]


@pytest.mark.parametrize("page", sorted(STATIC.glob("*.html")), ids=lambda path: path.name)
def test_a_page_has_no_inline_script_style_or_handler(page: Path) -> None:
    html = page.read_text(encoding="utf-8")

    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline <script>"
    assert "<style" not in html
    assert not re.search(r"\sstyle\s*=", html), "a style attribute"
    assert not re.search(r"\son[a-z]+\s*=", html), "an inline event handler"
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", html), "an outside URL"
