"""The health-code platform behind one small interface, so a real provincial service plugs in.

``HealthCodePlatform.colour_of`` (the port, in ``shared/service_layer/ports.py``,
which the platform poller of ``shared/service_layer/platform_poll.py`` uses) answers a worker's current colour as a
contract ``HealthCodeUpdateIn`` (what ``healthcode.updates`` carries).
``ProvincialHealthCodeClient`` speaks a provincial platform's JSON over HTTP;
``InMemoryHealthCodePlatform`` is the fake for tests. One contract test class
holds both to the same behaviour (tests/unit/test_healthcode_platform.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from shared.contract import HealthCodeUpdateIn, Rejected, parse_health_update
from shared.identity import normalise_id_number

# The port and its error live in the service layer (which the poller uses); named here too.
from shared.service_layer.ports import HealthCodePlatform, PlatformError

__all__ = [
    "BEIJING",
    "HealthCodePlatform",
    "InMemoryHealthCodePlatform",
    "PlatformError",
    "ProvincialHealthCodeClient",
    "parse_platform_answer",
]

BEIJING = timezone(timedelta(hours=8))

# The platform names colours in Chinese or in upper-case English.
_COLOURS = {
    "绿码": "green",
    "黄码": "yellow",
    "红码": "red",
    "GREEN": "green",
    "YELLOW": "yellow",
    "RED": "red",
}


class InMemoryHealthCodePlatform:
    """A fake platform: colours set by the test."""

    def __init__(self) -> None:
        self._colours: dict[str, tuple[str, datetime]] = {}
        self._failing: set[str] = set()
        self.asked: list[str] = []

    def set_colour(self, id_number: str, colour: str, as_of: datetime) -> None:
        self._colours[normalise_id_number(id_number)] = (colour, as_of)

    def fail_for(self, id_number: str) -> None:
        """From now on asking for this worker raises ``PlatformError`` (as an outage would)."""
        self._failing.add(normalise_id_number(id_number))

    async def colour_of(self, id_number: str) -> HealthCodeUpdateIn | None:
        self.asked.append(normalise_id_number(id_number))
        if normalise_id_number(id_number) in self._failing:
            raise PlatformError("the platform failed (as the test asked)")
        known = self._colours.get(normalise_id_number(id_number))
        if known is None:
            return None
        colour, as_of = known
        return HealthCodeUpdateIn(id_number=id_number, health_code=colour, as_of=as_of)  # type: ignore[arg-type]


def parse_platform_answer(id_number: str, body: Any) -> HealthCodeUpdateIn | None:
    """Turn the platform's answer into a contract update (or None for "no code issued").

    The answer looks like ``{"code": 0, "data": {"idCard", "color", "colorTime"}}``
    with ``colorTime`` in Beijing time without an offset; ``code`` 404 means no code.
    """
    if not isinstance(body, dict) or "code" not in body:
        raise PlatformError("the platform's answer is not an object with a code")
    if body["code"] == 404:
        return None
    data = body.get("data")
    if body["code"] != 0 or not isinstance(data, dict):
        raise PlatformError(f"the platform refused: code {body['code']}")
    raw_colour = str(data.get("color", "")).strip()
    colour = _COLOURS.get(raw_colour) or _COLOURS.get(raw_colour.upper())
    if colour is None:
        raise PlatformError(f"unknown colour {data.get('color')!r}")
    try:
        moment = datetime.strptime(str(data["colorTime"]), "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=BEIJING
        )
        return parse_health_update(
            {"id_number": id_number, "health_code": colour, "as_of": moment.isoformat()}
        )
    except (KeyError, ValueError, Rejected) as error:
        raise PlatformError(f"malformed answer: {error}") from None


class ProvincialHealthCodeClient:
    """A provincial health-code platform over HTTPS (JSON)."""

    def __init__(self, http: httpx.AsyncClient, *, app_key: str) -> None:
        self.http = http
        self.app_key = app_key

    async def colour_of(self, id_number: str) -> HealthCodeUpdateIn | None:
        id_number = normalise_id_number(id_number)
        try:
            response = await self.http.post(
                "/healthcode/v1/query",
                json={"idCard": id_number},
                headers={"X-App-Key": self.app_key},
            )
        except httpx.HTTPError as error:
            raise PlatformError(f"the platform is unreachable: {error}") from None
        if response.status_code >= 500:
            raise PlatformError(f"the platform failed with HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise PlatformError("the platform's answer is not JSON") from None
        return parse_platform_answer(id_number, body)
