"""Request limits of the running API: a per-token rate limit, a body cap, page-size caps."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import RunningSystem
from tests.support.processes import free_port, served_api
from tests.support.servers import Servers, server_env

pytestmark = pytest.mark.e2e

BURST = 5
MAX_BODY_BYTES = 64 * 1024
# Requests with no valid token a minute, per client address (here every client is 127.0.0.1).
UNAUTHENTICATED = 4


@pytest.fixture(scope="module")
def limited_api(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API process with small limits, on the shared servers (the tracker is the system's)."""
    port = free_port()
    env = server_env(
        servers,
        RETURNLOOP_API_PORT=str(port),
        RETURNLOOP_RATE_LIMIT_PER_MINUTE="6",
        RETURNLOOP_RATE_LIMIT_BURST=str(BURST),
        RETURNLOOP_MAX_BODY_BYTES=str(MAX_BODY_BYTES),
        RETURNLOOP_UNAUTHENTICATED_RATE_PER_MINUTE=str(UNAUTHENTICATED),
    )
    log: Path = tmp_path_factory.mktemp("limited-api") / "api.log"
    with served_api(env, log) as url:
        yield url


@pytest.fixture
async def client(limited_api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=limited_api, timeout=30) as http:
        yield http


async def issue(admin: httpx.AsyncClient, role: str) -> dict[str, str]:
    response = await admin.post("/v1/tokens", json={"role": role})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def test_a_token_past_its_rate_is_told_to_retry_later(
    client: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    supervisor = await issue(admin, "supervisor")
    answered = [(await client.get("/v1/alerts", headers=supervisor)) for _ in range(BURST + 1)]

    assert [r.status_code for r in answered[:BURST]] == [200] * BURST
    limited = answered[-1]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert limited.json()["error"]["message"]
    assert int(limited.headers["Retry-After"]) >= 1


async def test_the_rate_limit_is_per_token(
    client: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    busy, other = await issue(admin, "supervisor"), await issue(admin, "supervisor")
    for _ in range(BURST + 1):
        await client.get("/v1/alerts", headers=busy)

    assert (await client.get("/v1/alerts", headers=busy)).status_code == 429
    assert (await client.get("/v1/alerts", headers=other)).status_code == 200


async def test_the_bootstrap_admin_token_is_not_rate_limited(
    client: httpx.AsyncClient, system: RunningSystem
) -> None:
    bootstrap = {"Authorization": f"Bearer {system.admin_token}"}

    answered = [(await client.get("/v1/alerts", headers=bootstrap)) for _ in range(BURST * 2)]

    assert [r.status_code for r in answered] == [200] * (BURST * 2)


async def test_requests_without_a_valid_token_are_limited_per_address_and_tokens_are_not(
    client: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    supervisor = await issue(admin, "supervisor")
    wrong = {"Authorization": "Bearer rl_not-a-token"}
    refused = [
        (await client.get("/v1/alerts", headers=headers))
        for headers in [{}, wrong] * UNAUTHENTICATED
    ]

    assert [r.status_code for r in refused[:UNAUTHENTICATED]] == [401] * UNAUTHENTICATED
    assert {r.status_code for r in refused[UNAUTHENTICATED:]} == {429}
    limited = refused[-1]
    assert limited.json()["error"]["code"] == "rate_limited"
    assert "without a valid token" in limited.json()["error"]["message"]
    assert int(limited.headers["Retry-After"]) >= 1
    # The same address with a valid token is served, however busy its neighbours are.
    assert (await client.get("/v1/alerts", headers=supervisor)).status_code == 200
    assert (await client.get("/healthz")).status_code == 200


async def test_health_and_metrics_are_not_rate_limited(client: httpx.AsyncClient) -> None:
    for _ in range(BURST * 3):
        assert (await client.get("/healthz")).status_code == 200


async def test_a_body_over_the_cap_is_refused_before_the_token_is_even_checked(
    client: httpx.AsyncClient,
) -> None:
    too_big = b'{"enterprises": [' + b" " * MAX_BODY_BYTES + b"]}"

    response = await client.post(
        "/v1/manifests", content=too_big, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


async def test_a_body_under_the_cap_goes_through(
    client: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    headers = {**(await issue(admin, "admin")), "Content-Type": "application/json"}
    padded = b'{"enterprises": [' + b" " * (MAX_BODY_BYTES - 100) + b"]}"

    response = await client.post("/v1/manifests", content=padded, headers=headers)

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("path", "limit"),
    [("/v1/alerts", 501), ("/v1/alerts", 0), ("/v1/audit", 501), ("/v1/audit", 0)],
)
async def test_a_page_size_past_the_cap_is_unprocessable(
    admin: httpx.AsyncClient, system: RunningSystem, path: str, limit: int
) -> None:
    response = await admin.get(path, params={"limit": limit})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    assert "limit" in response.json()["error"]["message"]
