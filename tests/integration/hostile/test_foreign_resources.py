"""Someone else's things: every transfer, deposit and API key of another user, fetched or changed by id or
reference, with a JWT or with an API key holding every permission, is a 404, exactly as if it did not
exist, and stays as it was. A reference is matched exactly: wildcards and look-alikes find nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import insert, update

from app.db import models as m
from app.domain.payments.verification import VERIFICATIONS
from app.lib.db import session_maker
from app.main import create_app
from tests.support.factories import fund

if TYPE_CHECKING:
    from litestar import Litestar
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine

    from app.config import Settings
    from tests.support.hostile import Footprint
    from tests.support.users import TestUser

ALL_PERMISSIONS = ["deposit", "transfer", "read"]


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The app; transfers answer without waiting for a worker."""
    async with AsyncTestClient(app=create_app(settings.replaced(transfer_wait_ms=0))) as client:
        yield client


async def _key(api: AsyncTestClient[Litestar], user: TestUser, name: str = "service") -> dict[str, Any]:
    created = await api.post(
        "/keys/create", json={"name": name, "permissions": ALL_PERMISSIONS, "expiry": "1D"}, headers=user.headers
    )
    assert created.status_code == 201, created.text
    return dict(created.json())


async def _pending_deposit(engine: AsyncEngine, user: TestUser, amount: int) -> str:
    """A deposit the owner started and has not paid yet (Paystack itself is not needed to read one)."""
    reference = f"dep-{uuid.uuid4().hex}"
    async with session_maker(engine)() as session:
        await session.execute(
            insert(m.Deposit).values(reference=reference, wallet_id=user.wallet_id, amount=amount, currency="NGN")
        )
        await session.commit()
    return reference


@pytest.fixture
async def owner_with_history(
    api: AsyncTestClient[Litestar], make_user: Callable[..., Awaitable[TestUser]], engine: AsyncEngine
) -> tuple[TestUser, dict[str, str]]:
    """A user with a paid deposit, a transfer sent and a deposit not paid yet: kind → reference."""
    owner, friend = await make_user(), await make_user()
    paid = await fund(engine, owner.wallet_id, 10_000)
    sent = await api.post(
        "/wallet/transfer", json={"wallet_number": friend.wallet_number, "amount": 2_500}, headers=owner.headers
    )
    assert sent.status_code in {200, 202}, sent.text
    pending = await _pending_deposit(engine, owner, 7_000)
    return owner, {"paid deposit": paid, "transfer": sent.json()["reference"], "pending deposit": pending}


async def test_another_users_transactions_and_deposits_are_404_to_their_token_and_their_key(
    api: AsyncTestClient[Litestar],
    owner_with_history: tuple[TestUser, dict[str, str]],
    make_user: Callable[..., Awaitable[TestUser]],
    footprint: Callable[[TestUser], Awaitable[Footprint]],
    redis: Redis,
) -> None:
    owner, references = owner_with_history
    stranger = await make_user()
    stranger_key = {"x-api-key": (await _key(api, stranger))["api_key"]}
    before = await footprint(owner)

    for credentials in (stranger.headers, stranger_key):
        for kind, reference in references.items():
            seen = await api.get(f"/wallet/transactions/{reference}", headers=credentials)
            assert seen.status_code == 404, (kind, seen.text)
            assert seen.json()["error_code"] == "TRANSACTION_NOT_FOUND"
            if "deposit" in kind:
                status = await api.get(f"/wallet/deposit/{reference}/status", headers=credentials)
                assert status.status_code == 404, (kind, status.text)
                assert status.json()["error_code"] == "TRANSACTION_NOT_FOUND"
        listed = await api.get("/wallet/transactions", headers=credentials)
        assert listed.status_code == 200
        assert not {item["reference"] for item in listed.json()} & set(references.values())

    # A stranger's poll must not make the service ask Paystack about the owner's deposit.
    assert not await redis.exists(VERIFICATIONS.marker(references["pending deposit"]))
    assert await footprint(owner) == before
    for reference in references.values():
        assert (await api.get(f"/wallet/transactions/{reference}", headers=owner.headers)).status_code == 200


@pytest.mark.parametrize("who", ["owner", "stranger"])
async def test_wildcards_and_look_alikes_of_a_real_reference_find_nothing(
    api: AsyncTestClient[Litestar],
    owner_with_history: tuple[TestUser, dict[str, str]],
    make_user: Callable[..., Awaitable[TestUser]],
    who: str,
) -> None:
    owner, references = owner_with_history
    caller = owner if who == "owner" else await make_user()
    for reference in references.values():
        kind_prefix = reference[:4]
        for look_alike in (
            "%",
            "_",
            f"{kind_prefix}%",
            reference[:-1] + "_",
            reference[:-1],
            reference + "%",
            reference.upper(),
            f" {reference}",
            f"{reference} ",
            f"{reference}' OR '1'='1",
        ):
            for path in (f"/wallet/transactions/{look_alike}", f"/wallet/deposit/{look_alike}/status"):
                response = await api.get(path, headers=caller.headers)
                assert response.status_code == 404, (look_alike, path, response.text)
                assert response.json()["error_code"] == "TRANSACTION_NOT_FOUND", (look_alike, path)


async def test_another_users_keys_cannot_be_revoked_or_rolled_over_and_keep_working(
    api: AsyncTestClient[Litestar],
    make_user: Callable[..., Awaitable[TestUser]],
    engine: AsyncEngine,
    footprint: Callable[[TestUser], Awaitable[Footprint]],
) -> None:
    owner, stranger = await make_user(), await make_user()
    await fund(engine, owner.wallet_id, 1_000)
    active, expired = await _key(api, owner, "active"), await _key(api, owner, "expired")
    async with session_maker(engine)() as session:
        await session.execute(
            update(m.ApiKey)
            .where(m.ApiKey.id == uuid.UUID(expired["id"]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
    before = await footprint(owner), await footprint(stranger)

    for key in (active, expired):
        revoked = await api.post(f"/keys/revoke/{key['id']}", headers=stranger.headers)
        assert revoked.status_code == 404, revoked.text
        assert revoked.json()["error_code"] == "API_KEY_NOT_FOUND"
        rolled = await api.post(
            "/keys/rollover", json={"expired_key_id": key["id"], "expiry": "1Y"}, headers=stranger.headers
        )
        assert rolled.status_code == 404, rolled.text
        assert rolled.json()["error_code"] == "API_KEY_NOT_FOUND"
        assert key["api_key"] not in revoked.text + rolled.text

    assert (await footprint(owner), await footprint(stranger)) == before
    still_usable = await api.get("/wallet/balance", headers={"x-api-key": active["api_key"]})
    assert still_usable.status_code == 200
    assert still_usable.json()["balance"] == 1_000
    # The expired key is still the owner's to roll over: the stranger's attempt did not use it up.
    rolled_by_owner = await api.post(
        "/keys/rollover", json={"expired_key_id": expired["id"], "expiry": "1D"}, headers=owner.headers
    )
    assert rolled_by_owner.status_code == 201, rolled_by_owner.text
