"""The running API's headers: pages that load nothing from elsewhere, answers never cached.

Every /v1 row of the role matrix checks ``Cache-Control: no-store`` too
(``tests/e2e/test_role_matrix.py``); here the pages, and answers no row covers.
"""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.e2e

PAGES = ("/ui/supervisor", "/ui/scanner", "/ui/static/common.js", "/ui/static/style.css")


@pytest.mark.parametrize("path", PAGES)
async def test_a_page_and_its_files_carry_a_strict_policy(
    anonymous: httpx.AsyncClient, path: str
) -> None:
    response = await anonymous.get(path)

    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().partition(" ")[::2] for part in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert "unsafe" not in policy and "http" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_a_page_not_found_is_under_the_same_policy(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/ui/elsewhere")

    assert response.status_code == 404
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/alerts"), ("POST", "/v1/workers/lookup"), ("GET", "/v1/no-such-thing")],
)
async def test_an_answer_under_v1_is_never_stored_even_an_error(
    anonymous: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await anonymous.request(method, path)

    assert response.status_code in (401, 404)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_an_export_and_a_list_are_never_stored(admin: httpx.AsyncClient) -> None:
    for path, params in (("/v1/alerts", {"format": "csv"}), ("/v1/enterprises", {})):
        response = await admin.get(path, params=params)

        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"


async def test_health_and_metrics_are_only_nosniff(
    anonymous: httpx.AsyncClient,
) -> None:
    for path in ("/healthz", "/metrics"):
        response = await anonymous.get(path)

        assert response.status_code == 200
        assert "no-store" not in response.headers.get("cache-control", "")
        assert response.headers["x-content-type-options"] == "nosniff"
