"""`RATE_LIMIT_PER_MINUTE` per user, API key or client address: 429 `RATE_LIMITED` with `Retry-After`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar import get
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from app.config import Settings
from app.domain.auth.guards import Permission, requires
from app.main import create_app

LIMIT = 3


@get("/test/protected", guards=[requires(Permission.READ)], sync_to_thread=False)
def _protected() -> dict[str, str]:
    return {"ok": "yes"}


@pytest.fixture
async def limited(settings: Settings, redis: Redis) -> AsyncIterator[AsyncTestClient]:
    async for key in redis.scan_iter("ratelimit:*"):
        await redis.delete(key)
    app = create_app(settings.replaced(rate_limit_per_minute=LIMIT))
    async with AsyncTestClient(app=app) as client:
        yield client
    async for key in redis.scan_iter("ratelimit:*"):
        await redis.delete(key)


async def test_a_client_address_over_the_limit_gets_429_with_retry_after(limited: AsyncTestClient) -> None:
    statuses = [(await limited.get("/")).status_code for _ in range(LIMIT)]
    assert statuses == [200] * LIMIT
    refused = await limited.get("/")
    assert refused.status_code == 429
    assert refused.json()["error_code"] == "RATE_LIMITED"
    assert 1 <= int(refused.headers["retry-after"]) <= 60


async def test_each_user_has_a_budget_of_their_own(limited: AsyncTestClient, make_user) -> None:
    alice, bob = await make_user(), await make_user()
    for _ in range(LIMIT):
        assert (await limited.get("/", headers=alice.headers)).status_code == 200
    assert (await limited.get("/", headers=alice.headers)).status_code == 429
    assert (await limited.get("/", headers=bob.headers)).status_code == 200


async def test_guessing_api_keys_from_one_address_is_stopped(settings: Settings, redis: Redis) -> None:
    async for key in redis.scan_iter("ratelimit:*"):
        await redis.delete(key)
    app = create_app(settings.replaced(rate_limit_per_minute=LIMIT), extra_route_handlers=[_protected])
    async with AsyncTestClient(app=app) as client:
        for attempt in range(LIMIT):
            guess = await client.get("/test/protected", headers={"x-api-key": f"sk_live_guess{attempt}"})
            assert guess.status_code == 401
        # Each guess used a fresh key, so only failures counted per address can stop the next one.
        stopped = await client.get("/test/protected", headers={"x-api-key": "sk_live_guess-next"})
    assert stopped.status_code == 429
    assert stopped.json()["error_code"] == "RATE_LIMITED"


async def test_the_paystack_webhook_is_never_rate_limited(limited: AsyncTestClient) -> None:
    statuses = {(await limited.post("/wallet/paystack/webhook", content=b"{}")).status_code for _ in range(LIMIT * 3)}
    assert 429 not in statuses


async def test_zero_turns_rate_limiting_off(settings: Settings) -> None:
    app = create_app(settings.replaced(rate_limit_per_minute=0))
    async with AsyncTestClient(app=app) as client:
        statuses = {(await client.get("/")).status_code for _ in range(20)}
    assert statuses == {200}


async def test_a_tokens_signature_is_checked_once_per_process_however_many_requests_and_checks_use_it(
    settings: Settings, redis: Redis, make_user, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jwt

    decoded: list[str] = []
    real_decode = jwt.decode

    def counting_decode(token: str, *args: object, **kwargs: object) -> object:
        decoded.append(token)
        return real_decode(token, *args, **kwargs)  # type: ignore[arg-type]

    # PyJWT itself, whoever calls it: the limiter and the guard both need the claims, and a token's signature
    # does not change between requests.
    monkeypatch.setattr(jwt, "decode", counting_decode)
    user = await make_user()
    app = create_app(settings.replaced(rate_limit_per_minute=100), extra_route_handlers=[_protected])
    async with AsyncTestClient(app=app) as client:
        assert (await client.get("/test/protected", headers=user.headers)).status_code == 200
        assert decoded == [user.token]
        assert (await client.get("/test/protected", headers=user.headers)).status_code == 200
        assert decoded == [user.token]
    async for key in redis.scan_iter("ratelimit:*"):
        await redis.delete(key)
