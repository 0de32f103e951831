"""The rate limit counts verified identities only: junk credentials are counted as their address, and a key
padded with Unicode blanks is the same key. A real API process with `RATE_LIMIT_PER_MINUTE` set."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from tests.support.processes import service_env, start_api
from tests.support.users import add_api_key

pytestmark = pytest.mark.e2e

LIMIT = 20


@pytest.fixture(scope="module")
def limited_api() -> Iterator[str]:
    api, base_url = start_api(service_env(RATE_LIMIT_PER_MINUTE=str(LIMIT)))
    yield base_url
    api.stop()


@pytest.fixture
async def client(limited_api: str, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    async def forget_windows() -> None:
        async for key in redis.scan_iter("ratelimit:*"):
            await redis.delete(key)

    # The windows are calendar minutes: start early in one, so the whole test counts against one window.
    seconds_into_minute = time.time() % 60
    if seconds_into_minute > 40:
        await asyncio.sleep(60 - seconds_into_minute + 0.2)
    await forget_windows()
    async with httpx.AsyncClient(base_url=limited_api, timeout=30) as http:
        yield http
    await forget_windows()


async def test_a_thousand_different_junk_keys_from_one_address_are_limited_like_anonymous_requests(
    client: httpx.AsyncClient,
) -> None:
    statuses = [
        (await client.get("/", headers={"x-api-key": f"sk_live_junk{attempt:04d}"})).status_code
        for attempt in range(1_000)
    ]
    assert statuses[:LIMIT] == [200] * LIMIT
    assert set(statuses[LIMIT:]) == {429}
    # Every junk key drew on the address's one budget, not on a fresh one of its own.
    assert (await client.get("/docs/openapi.json")).status_code == 429


async def test_a_real_key_padded_with_unicode_blanks_shares_its_keys_bucket(
    client: httpx.AsyncClient, db: AsyncSession, make_user
) -> None:
    user = await make_user()
    key = (await add_api_key(db, user.user_id, ["read"]))["x-api-key"]
    half = LIMIT // 2
    for _ in range(half):
        assert (await client.get("/wallet/balance", headers={"x-api-key": key})).status_code == 200
    for padding in (b"\xa0", b"\x85", b" \xa0"):
        padded = [(b"x-api-key", key.encode() + padding)]
        for _ in range(half // 3):
            assert (await client.get("/wallet/balance", headers=padded)).status_code == 200
    used = half + 3 * (half // 3)
    remaining = [
        (await client.get("/wallet/balance", headers=[(b"x-api-key", b"\xa0" + key.encode())])).status_code
        for _ in range(LIMIT - used + 1)
    ]
    assert remaining[:-1] == [200] * (LIMIT - used)
    assert remaining[-1] == 429
    # The key's bucket, not the address's: an anonymous request from the same address still passes.
    assert (await client.get("/")).status_code == 200
