"""Calls to the running API that the e2e and browser tests make again and again: tokens,
scans, manifests, a worker's view, and waiting for that view to reach a state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.support.waiting import eventually


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def issue_token(admin: httpx.AsyncClient, role: str, **fields: Any) -> str:
    """A new token of ``role`` (``fields``: its enterprise, expiry, …) from POST /v1/tokens."""
    response = await admin.post("/v1/tokens", json={"role": role, **fields})
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


async def post_scans(client: httpx.AsyncClient, *scans: dict[str, Any]) -> list[dict[str, Any]]:
    """POST /v1/scans as one batch; it must be taken (202). Each scan's result, in order."""
    response = await client.post("/v1/scans", json={"scans": list(scans)})
    assert response.status_code == 202, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


async def post_accepted_scans(client: httpx.AsyncClient, *scans: dict[str, Any]) -> None:
    """POST /v1/scans as one batch, every scan of which must be accepted."""
    results = await post_scans(client, *scans)
    assert {result["status"] for result in results} == {"accepted"}, results


async def post_manifest(client: httpx.AsyncClient, manifest: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/manifests; it must be taken (200). The answer's body."""
    response = await client.post("/v1/manifests", json=manifest)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def lookup(client: httpx.AsyncClient, id_number: str) -> dict[str, Any]:
    """POST /v1/workers/lookup: the answer's body, with its ``status_code`` added."""
    response = await client.post("/v1/workers/lookup", json={"id_number": id_number})
    return {"status_code": response.status_code, **response.json()}


async def worker_ref_of(admin: httpx.AsyncClient, id_number: str) -> str:
    """The worker_ref of a worker the system knows (looked up by ID number)."""
    view = await lookup(admin, id_number)
    assert view["status_code"] == 200, view
    worker_ref: str = view["worker_ref"]
    return worker_ref


async def wait_for_view(
    client: httpx.AsyncClient,
    id_number: str,
    until: Callable[[dict[str, Any]], bool],
    *,
    what: str,
    within: float = 30.0,
) -> dict[str, Any]:
    """The worker's view (as :func:`lookup` gives it) once ``until(view)`` holds."""
    return await eventually(lambda: lookup(client, id_number), until, what=what, within=within)


def is_known(view: dict[str, Any]) -> bool:
    """For :func:`wait_for_view`: the system knows the worker."""
    return view["status_code"] == 200


def assert_error_body(response: httpx.Response) -> None:
    """The API's error shape: ``{"error": {"code": …, "message": …}}``, both non-empty."""
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
