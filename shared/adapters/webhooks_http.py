"""Webhook deliveries POSTed with httpx: one shared client, a timeout per delivery."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from shared.service_layer.webhooks import SendResult

_MAX_ERROR_CHARS = 300


class HttpWebhookSender:
    """POSTs a delivery; a refused connection, a timeout or a non-2xx answer is a result.

    Redirects are not followed: the registered URL is the one that was validated.
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> SendResult:
        try:
            response = await self.client.post(
                url,
                content=body,
                headers=dict(headers),
                timeout=timeout_s,
                follow_redirects=False,
            )
        except httpx.TimeoutException:
            return SendResult(None, f"timed out after {timeout_s:g} s")
        except httpx.HTTPError as error:
            detail = f"{type(error).__name__}: {error}"[:_MAX_ERROR_CHARS]
            return SendResult(None, detail)
        return SendResult(response.status_code)
