"""Response headers by what a response is: the API's answers, which carry personal data, are
never cached; the pages may load nothing from anywhere but this API.

Plain ASGI middleware, like ``observe.py``: a prefix check per request and a few headers
added to the response's start, so ``POST /v1/scans`` does not pay for a task or a copy.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Same origin only, and nothing inline: the pages' scripts and styles are files in
# services/api/static (tests/unit/test_security_headers.py holds them to that). Camera
# frames are blobs; forms are handled by the scripts, never submitted (a sign-in form
# posted without its script would put the token in a URL).
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data: blob:; media-src 'self' blob:; form-action 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)

Headers = list[tuple[bytes, bytes]]

_EVERY_RESPONSE: Headers = [(b"x-content-type-options", b"nosniff")]
_API: Headers = [*_EVERY_RESPONSE, (b"cache-control", b"no-store")]
_PAGES: Headers = [
    *_EVERY_RESPONSE,
    (b"content-security-policy", PAGE_POLICY.encode()),
    (b"referrer-policy", b"no-referrer"),
    # A new deployment's scripts are fetched again rather than mixed with old pages.
    (b"cache-control", b"no-cache"),
]


def _with_names(headers: Headers) -> tuple[Headers, frozenset[bytes]]:
    # The names are worked out once, not per response.
    return headers, frozenset(name for name, _ in headers)


_FOR_EVERY_RESPONSE, _FOR_API, _FOR_PAGES = map(_with_names, (_EVERY_RESPONSE, _API, _PAGES))


def _headers_and_names(path: str) -> tuple[Headers, frozenset[bytes]]:
    if path.startswith("/v1/"):
        return _FOR_API
    if path == "/ui" or path.startswith("/ui/"):
        return _FOR_PAGES
    return _FOR_EVERY_RESPONSE


def headers_for(path: str) -> Headers:
    """The headers a response to ``path`` carries: every /v1 answer (JSON, CSV, XLSX,
    errors alike) ``no-store``; the pages their policy; everything ``nosniff``."""
    return _headers_and_names(path)[0]


class SecurityHeaders:
    """ASGI middleware adding :func:`headers_for` to each HTTP response (replacing any
    value a route set for the same header)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra, replaced = _headers_and_names(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [pair for pair in message.get("headers", ()) if pair[0] not in replaced]
                message["headers"] = kept + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)
