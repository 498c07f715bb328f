"""One contract for the health-code platform: the fake and the real client's parsing agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
import pytest

from shared.adapters.healthcode import (
    HealthCodePlatform,
    InMemoryHealthCodePlatform,
    PlatformError,
    ProvincialHealthCodeClient,
)
from shared.identity import InvalidIdNumber, check_digit

FIRST17 = "52050219900307123"
ID_NUMBER = FIRST17 + check_digit(FIRST17)
UNKNOWN = "43050219851111456"
UNKNOWN_ID = UNKNOWN + check_digit(UNKNOWN)
BEIJING = timezone(timedelta(hours=8))
MOMENT = datetime(2020, 3, 1, 9, 30, tzinfo=BEIJING)


class PlatformContract:
    """Every platform adapter answers colours the same way."""

    def platform_with(self, colours: dict[str, tuple[str, datetime]]) -> HealthCodePlatform:
        raise NotImplementedError

    async def test_a_known_worker_has_their_colour_and_its_time(self) -> None:
        platform = self.platform_with({ID_NUMBER: ("red", MOMENT)})
        update = await platform.colour_of(ID_NUMBER)
        assert update is not None
        assert (update.id_number, update.health_code) == (ID_NUMBER, "red")
        assert update.as_of == MOMENT and update.as_of.utcoffset() is not None

    async def test_every_colour_comes_through(self) -> None:
        for colour in ("green", "yellow", "red"):
            platform = self.platform_with({ID_NUMBER: (colour, MOMENT)})
            update = await platform.colour_of(ID_NUMBER)
            assert update is not None and update.health_code == colour

    async def test_a_worker_without_a_code_is_none(self) -> None:
        platform = self.platform_with({ID_NUMBER: ("green", MOMENT)})
        assert await platform.colour_of(UNKNOWN_ID) is None

    async def test_an_invalid_id_number_is_refused_before_asking(self) -> None:
        platform = self.platform_with({})
        with pytest.raises(InvalidIdNumber):
            await platform.colour_of(ID_NUMBER[:-1] + ("0" if ID_NUMBER[-1] != "0" else "1"))


class TestInMemoryPlatform(PlatformContract):
    def platform_with(self, colours: dict[str, tuple[str, datetime]]) -> HealthCodePlatform:
        platform = InMemoryHealthCodePlatform()
        for id_number, (colour, as_of) in colours.items():
            platform.set_colour(id_number, colour, as_of)
        return platform


CHINESE = {"green": "绿码", "yellow": "黄码", "red": "红码"}


def platform_server(
    colours: dict[str, tuple[str, datetime]], *, fail: str | None = None
) -> httpx.MockTransport:
    """The provincial platform's HTTP answers, served in-process."""

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-App-Key"] == "test-key"
        if fail == "500":
            return httpx.Response(503, text="maintenance")
        if fail == "not-json":
            return httpx.Response(200, text="<html>")
        id_number = orjson.loads(request.content)["idCard"]
        if id_number not in colours:
            return httpx.Response(200, json={"code": 404, "msg": "no code"})
        colour, as_of = colours[id_number]
        body: dict[str, Any] = {
            "code": 0,
            "data": {
                "idCard": id_number,
                "color": CHINESE[colour],
                "colorTime": as_of.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
            },
        }
        return httpx.Response(200, json=body)

    return httpx.MockTransport(answer)


class TestProvincialClient(PlatformContract):
    def platform_with(self, colours: dict[str, tuple[str, datetime]]) -> HealthCodePlatform:
        http = httpx.AsyncClient(
            base_url="https://platform.test", transport=platform_server(colours)
        )
        return ProvincialHealthCodeClient(http, app_key="test-key")

    async def test_a_platform_outage_is_a_platform_error(self) -> None:
        http = httpx.AsyncClient(
            base_url="https://platform.test", transport=platform_server({}, fail="500")
        )
        with pytest.raises(PlatformError):
            await ProvincialHealthCodeClient(http, app_key="test-key").colour_of(ID_NUMBER)

    async def test_an_answer_that_is_not_json_is_a_platform_error(self) -> None:
        http = httpx.AsyncClient(
            base_url="https://platform.test", transport=platform_server({}, fail="not-json")
        )
        with pytest.raises(PlatformError):
            await ProvincialHealthCodeClient(http, app_key="test-key").colour_of(ID_NUMBER)

    async def test_beijing_time_without_an_offset_is_read_as_utc_plus_eight(self) -> None:
        platform = self.platform_with({ID_NUMBER: ("green", MOMENT)})
        update = await platform.colour_of(ID_NUMBER)
        assert update is not None
        assert update.as_of.astimezone(UTC) == datetime(2020, 3, 1, 1, 30, tzinfo=UTC)
