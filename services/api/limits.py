"""Request limits: a rate limit per token, one per client address for requests with no
valid token, and a cap on request bodies; each a clear 4xx."""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.errors import ApiError, error_body


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """An in-process token bucket per caller (``Principal.actor``, or a client address).

    Each API process keeps its own buckets, so N processes allow up to N times
    the rate; enough to stop a runaway client, not a quota. At most about
    ``max_callers`` buckets are kept, whoever makes up the callers.
    """

    def __init__(
        self,
        per_minute: int,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_callers: int = 100_000,
        caller: Literal["token", "address"] = "token",
    ) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(burst or per_minute)
        self.clock = clock
        self.max_callers = max_callers
        self.caller = caller
        self._buckets: dict[str, _Bucket] = {}

    def check(self, caller: str) -> None:
        """Take one request from ``caller``'s bucket; ApiError 429 when it is empty."""
        if self.rate <= 0:
            return
        now = self.clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= self.max_callers:
                self._forget_full(now)
            bucket = self._buckets[caller] = _Bucket(self.capacity, now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < 1:
            retry_after = max(1, math.ceil((1 - bucket.tokens) / self.rate))
            raise RateLimited(retry_after, self.caller)
        bucket.tokens -= 1

    def _forget_full(self, now: float) -> None:
        # A full bucket holds no information: dropping it changes nothing for its caller.
        for caller, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self.rate >= self.capacity:
                del self._buckets[caller]
        # Callers an attacker makes up (addresses) may all be busy: then the oldest go,
        # a tenth at once, so that the scan above runs once per that many new callers.
        if len(self._buckets) >= self.max_callers:
            for caller in list(self._buckets)[: max(1, self.max_callers // 10)]:
                del self._buckets[caller]


def client_address(client: tuple[str, int] | None) -> str:
    """The caller an address rate limit counts: the IPv4 address, or the IPv6 /64 (one
    host usually holds a whole /64, and would otherwise have 2^64 fresh buckets)."""
    if client is None:
        return "unknown"
    host = client[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network((address, 64), strict=False))
    return str(address)


class RateLimited(ApiError):
    def __init__(self, retry_after: int, caller: str = "token") -> None:
        whose = "for this token" if caller == "token" else "without a valid token from here"
        super().__init__(
            429, "rate_limited", f"too many requests {whose}; retry in {retry_after} s"
        )
        self.headers = {"Retry-After": str(retry_after)}


class BodySizeLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, before the route reads it.

    A declared Content-Length over the cap is refused unread; a body sent without
    one is counted as it streams in and refused once it passes the cap.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = orjson.dumps(
            error_body("body_too_large", f"the request body must be at most {self.max_bytes} bytes")
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    """Raised inside the app's receive when a streamed body passes the cap.

    An HTTPException, so the framework passes it on (other errors reading a body
    become a 400) and the error handlers render it as a 413.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body must be at most {max_bytes} bytes")
