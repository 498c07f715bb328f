"""The per-token rate limit, the body-size cap and the ID-number cipher, without servers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI, Request

from services.api.errors import ApiError, install_error_handlers
from services.api.limits import BodySizeLimit, RateLimited, RateLimiter
from shared.id_encryption import IdNumberCipher, IdNumberUnreadable
from shared.settings import Settings, SettingsError

ID_NUMBER = "11010519491231002X"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- rate limit -----------------------------------------------------------------------


def test_a_token_gets_its_burst_then_is_limited_with_a_retry_after() -> None:
    limiter = RateLimiter(per_minute=60, burst=3, clock=FakeClock())
    for _ in range(3):
        limiter.check("supervisor:abc")

    with pytest.raises(RateLimited) as limited:
        limiter.check("supervisor:abc")

    assert limited.value.status == 429
    assert limited.value.code == "rate_limited"
    assert limited.value.headers == {"Retry-After": "1"}


def test_the_bucket_refills_at_the_configured_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=60, burst=1, clock=clock)
    limiter.check("gate:1")
    with pytest.raises(RateLimited):
        limiter.check("gate:1")

    clock.now += 1.0

    limiter.check("gate:1")


def test_each_token_has_its_own_bucket() -> None:
    limiter = RateLimiter(per_minute=60, burst=1, clock=FakeClock())
    limiter.check("recruiter:a")

    limiter.check("recruiter:b")

    with pytest.raises(RateLimited):
        limiter.check("recruiter:a")


def test_a_rate_of_zero_means_no_limit() -> None:
    limiter = RateLimiter(per_minute=0, clock=FakeClock())
    for _ in range(10_000):
        limiter.check("admin:bootstrap-token")


def test_the_burst_defaults_to_a_minutes_worth() -> None:
    limiter = RateLimiter(per_minute=120, clock=FakeClock())
    for _ in range(120):
        limiter.check("supervisor:x")
    with pytest.raises(RateLimited):
        limiter.check("supervisor:x")


def test_many_callers_do_not_grow_the_buckets_without_bound() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=60, burst=1, clock=clock, max_callers=10)
    for caller in range(10):
        limiter.check(f"c{caller}")
    clock.now += 60  # every bucket is full again

    limiter.check("one more")

    assert len(limiter._buckets) == 1


# --- body-size cap --------------------------------------------------------------------


@pytest.fixture
async def capped() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.post("/model")
    async def model(body: dict[str, str]) -> dict[str, int]:
        return {"keys": len(body)}

    app.add_middleware(BodySizeLimit, max_bytes=1024)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_a_body_under_the_cap_passes(capped: httpx.AsyncClient) -> None:
    response = await capped.post("/echo", content=b"x" * 1024)

    assert response.status_code == 200
    assert response.json() == {"size": 1024}


@pytest.mark.parametrize("path", ["/echo", "/model"])
async def test_a_declared_body_over_the_cap_is_refused_unread(
    capped: httpx.AsyncClient, path: str
) -> None:
    response = await capped.post(path, content=b"x" * 1025)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


@pytest.mark.parametrize("path", ["/echo", "/model"])
async def test_a_streamed_body_over_the_cap_is_refused(
    capped: httpx.AsyncClient, path: str
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 200

    response = await capped.post(path, content=chunks())

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


# --- ID-number cipher -----------------------------------------------------------------


def test_an_encrypted_id_number_decrypts_and_does_not_contain_the_number() -> None:
    cipher = IdNumberCipher([Fernet.generate_key()])

    ciphertext = cipher.encrypt(ID_NUMBER)

    assert ID_NUMBER not in ciphertext
    assert cipher.decrypt(ciphertext) == ID_NUMBER


def test_rotation_re_encrypts_with_the_first_key_so_the_old_one_can_go() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    ciphertext = IdNumberCipher([old]).encrypt(ID_NUMBER)

    rotated = IdNumberCipher([new, old]).rotate(ciphertext)

    assert IdNumberCipher([new]).decrypt(rotated) == ID_NUMBER
    with pytest.raises(IdNumberUnreadable):
        IdNumberCipher([old]).decrypt(rotated)


def test_no_key_configured_means_no_cipher() -> None:
    assert IdNumberCipher.from_settings(Settings(id_encryption_keys=None)) is None
    assert IdNumberCipher.from_settings(Settings(id_encryption_keys=" ")) is None


def test_keys_are_read_comma_separated_first_is_current() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    ciphertext = IdNumberCipher([old]).encrypt(ID_NUMBER)

    cipher = IdNumberCipher.from_settings(
        Settings(id_encryption_keys=f"{new.decode()}, {old.decode()}")
    )

    assert cipher is not None
    assert cipher.decrypt(ciphertext) == ID_NUMBER
    assert IdNumberCipher([new]).decrypt(cipher.encrypt(ID_NUMBER)) == ID_NUMBER


def test_a_key_that_is_not_a_fernet_key_fails_at_start_naming_the_setting() -> None:
    with pytest.raises(SettingsError, match="RETURNLOOP_ID_ENCRYPTION_KEYS"):
        IdNumberCipher.from_settings(Settings(id_encryption_keys="not-a-fernet-key"))


def test_an_api_error_carries_no_headers_unless_it_needs_them() -> None:
    assert getattr(ApiError(404, "not_found", "no"), "headers", None) is None
