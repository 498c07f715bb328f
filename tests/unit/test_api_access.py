"""Access without servers: default token lifetimes, the limit on requests with no valid
token, and stored tokens whose scope their role cannot use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from services.api.auth import Principal, Role, TokenAuthority, expiry, hash_token
from services.api.deps import PrincipalDep
from services.api.errors import ApiError, install_error_handlers
from services.api.limits import RateLimited, RateLimiter, client_address
from shared.adapters.postgres.tokens import TokenRecord, TokenStore
from shared.settings import Settings

NOW = datetime(2020, 3, 2, 8, 0, tzinfo=UTC)
STATIC = Path(__file__).resolve().parents[2] / "services" / "api" / "static"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- tokens expire by default ---------------------------------------------------------


def test_a_token_issued_without_a_lifetime_expires_after_the_default() -> None:
    assert expiry(NOW, None, default_hours=12) == NOW + timedelta(hours=12)


def test_a_lifetime_asked_for_wins_over_the_default() -> None:
    assert expiry(NOW, 0.5, default_hours=12) == NOW + timedelta(minutes=30)
    assert expiry(NOW, 24 * 30, default_hours=12) == NOW + timedelta(days=30)


def test_the_default_lifetime_is_a_shift_and_configurable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().token_default_hours == 12

    monkeypatch.setenv("RETURNLOOP_TOKEN_DEFAULT_HOURS", "8")

    assert Settings().token_default_hours == 8


@pytest.mark.parametrize("hours", ["0", "-1", str(24 * 367)])
def test_a_default_lifetime_of_never_or_over_a_year_is_refused(
    monkeypatch: pytest.MonkeyPatch, hours: str
) -> None:
    monkeypatch.setenv("RETURNLOOP_TOKEN_DEFAULT_HOURS", hours)

    with pytest.raises(ValueError, match="token_default_hours"):
        Settings()


# --- requests with no valid token, per client address ---------------------------------


def test_the_unauthenticated_rate_is_120_a_minute_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().unauthenticated_rate_per_minute == 120

    monkeypatch.setenv("RETURNLOOP_UNAUTHENTICATED_RATE_PER_MINUTE", "30")

    assert Settings().unauthenticated_rate_per_minute == 30


@pytest.mark.parametrize(
    ("client", "caller"),
    [
        (("203.0.113.7", 50000), "203.0.113.7"),
        (("2001:db8:1:2:aaaa::1", 50000), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:bbbb::9", 443), "2001:db8:1:2::/64"),
        (("::ffff:203.0.113.7", 50000), "203.0.113.7"),
        (None, "unknown"),
    ],
    ids=["IPv4", "IPv6", "IPv6 same /64", "IPv4-mapped IPv6", "no address"],
)
def test_an_address_is_counted_as_its_host_or_its_ipv6_64(
    client: tuple[str, int] | None, caller: str
) -> None:
    assert client_address(client) == caller


def test_an_address_past_its_rate_is_told_it_has_no_valid_token() -> None:
    limiter = RateLimiter(per_minute=60, burst=1, clock=FakeClock(), caller="address")
    limiter.check("203.0.113.7")

    with pytest.raises(RateLimited) as limited:
        limiter.check("203.0.113.7")

    assert limited.value.status == 429
    assert "without a valid token" in limited.value.message
    assert limited.value.headers == {"Retry-After": "1"}


def test_made_up_callers_never_hold_more_than_about_max_callers_buckets() -> None:
    limiter = RateLimiter(per_minute=60, burst=5, clock=FakeClock(), max_callers=100)

    for caller in range(1000):  # every bucket busy: none is full, so none is forgotten as such
        limiter.check(f"198.51.100.{caller}")

    assert len(limiter._buckets) <= 100


class FakeAuthority(TokenAuthority):
    """Knows one issued token; refuses everything else as the real one does."""

    def __init__(self, valid: str) -> None:
        self.valid = valid

    async def authenticate(self, authorization: str | None) -> Principal:
        if authorization != f"Bearer {self.valid}":
            raise ApiError(401, "unauthorized", "the token is unknown, expired or revoked")
        return Principal(Role.SUPERVISOR, actor="supervisor:fake")


def _guarded_app(unauthenticated_per_minute: int) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.state.context = SimpleNamespace(
        authority=FakeAuthority("good"),
        rate_limiter=RateLimiter(per_minute=0),
        unauthenticated_limiter=RateLimiter(
            per_minute=unauthenticated_per_minute, clock=FakeClock(), caller="address"
        ),
    )

    @app.get("/v1/guarded")
    async def guarded(principal: PrincipalDep) -> dict[str, str]:
        return {"actor": principal.actor}

    return app


async def test_requests_without_a_valid_token_from_one_address_are_limited_but_tokens_are_not() -> (
    None
):
    transport = httpx.ASGITransport(app=_guarded_app(3), client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        refused = [
            (await client.get("/v1/guarded", headers=headers)).status_code
            for headers in ({}, {"Authorization": "Bearer wrong"}, {}, {})
        ]
        limited = await client.get("/v1/guarded", headers={"Authorization": "Bearer wrong"})
        valid = [
            (await client.get("/v1/guarded", headers={"Authorization": "Bearer good"})).status_code
            for _ in range(10)
        ]

    assert refused == [401, 401, 401, 429]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    assert valid == [200] * 10


async def test_another_address_is_not_limited_by_its_neighbour() -> None:
    app = _guarded_app(1)
    noisy = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    quiet = httpx.ASGITransport(app=app, client=("198.51.100.1", 50000))
    async with httpx.AsyncClient(transport=noisy, base_url="http://api") as client:
        assert [(await client.get("/v1/guarded")).status_code for _ in range(2)] == [401, 429]
    async with httpx.AsyncClient(transport=quiet, base_url="http://api") as client:
        assert (await client.get("/v1/guarded")).status_code == 401


# --- a scope a role cannot use is never ignored ----------------------------------------


class FakeTokenStore(TokenStore):
    """Holds issued tokens in a dict, as the table would (expiry and revocation aside)."""

    def __init__(self, records: dict[str, TokenRecord]) -> None:
        self.records = {hash_token(token): record for token, record in records.items()}

    async def find_token(self, token_hash: str, now: datetime) -> TokenRecord | None:
        return self.records.get(token_hash)


@pytest.mark.parametrize(
    ("role", "enterprise_id", "district"),
    [
        ("supervisor", "E1", None),
        ("health_station", "E1", None),
        ("admin", None, "鹿城区"),
        ("gate", None, None),
        ("gate", "E1", "鹿城区"),
    ],
    ids=["enterprise on a supervisor", "enterprise on a health station", "district on an admin",
         "gate with no enterprise", "district on a gate"],
)  # fmt: skip
async def test_a_stored_token_whose_scope_its_role_cannot_use_is_refused(
    role: str, enterprise_id: str | None, district: str | None
) -> None:
    # Tokens issued before scopes were checked may still be in the table.
    record = TokenRecord(role, enterprise_id, None, "tok_0123456789abcdef", district)
    authority = TokenAuthority(FakeTokenStore({"old": record}), None, default_hours=12)

    with pytest.raises(ApiError) as refused:
        await authority.authenticate("Bearer old")

    assert refused.value.status == 401


@pytest.mark.parametrize(
    ("role", "enterprise_id", "district"),
    [("gate", "E1", None), ("supervisor", None, "鹿城区"), ("supervisor", None, None),
     ("recruiter", None, None)],
)  # fmt: skip
async def test_a_stored_token_with_a_fitting_scope_is_honoured(
    role: str, enterprise_id: str | None, district: str | None
) -> None:
    record = TokenRecord(role, enterprise_id, None, "tok_0123456789abcdef", district)
    authority = TokenAuthority(FakeTokenStore({"fine": record}), None, default_hours=12)

    principal = await authority.authenticate("Bearer fine")

    assert (principal.role, principal.enterprise_id, principal.district) == (
        Role(role),
        enterprise_id,
        district,
    )
