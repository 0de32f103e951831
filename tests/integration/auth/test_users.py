"""`UserService.sign_in`: one user and one wallet per person, however many sign-ins race."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select

from app.db import models as m
from app.domain.auth.users import Identity
from app.lib.db import session_maker
from app.lib.errors import OAuthFailed
from tests.support import factories

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from app.config import Settings


async def sign_in(engine: AsyncEngine, settings: Settings, identity: Identity) -> tuple[uuid.UUID, str]:
    user, wallet = await factories.sign_in(engine, identity, settings.money.currency)
    return user.id, wallet.number


async def counts(engine: AsyncEngine, email: str) -> tuple[int, int]:
    async with session_maker(engine)() as session:
        users = await session.scalar(select(func.count()).select_from(m.User).where(m.User.email == email))
        wallets = await session.scalar(
            select(func.count())
            .select_from(m.Wallet)
            .join(m.User, m.User.id == m.Wallet.user_id)
            .where(m.User.email == email)
        )
    return int(users or 0), int(wallets or 0)


async def test_ten_concurrent_first_sign_ins_make_one_user_and_one_wallet(
    engine: AsyncEngine, settings: Settings
) -> None:
    email = f"race-{uuid.uuid4().hex[:10]}@example.com"
    identity = Identity(email=email, subject=f"https://issuer.example|{uuid.uuid4().hex}", email_verified=True)
    results = await asyncio.gather(*(sign_in(engine, settings, identity) for _ in range(10)))
    assert len(set(results)) == 1
    assert await counts(engine, email) == (1, 1)


async def test_a_local_and_a_provider_sign_in_racing_for_one_address_make_one_user(
    engine: AsyncEngine, settings: Settings
) -> None:
    email = f"race-{uuid.uuid4().hex[:10]}@example.com"
    subject = f"https://issuer.example|{uuid.uuid4().hex}"
    identities = [Identity(email=email), Identity(email=email.upper(), subject=subject, email_verified=True)] * 4
    results = await asyncio.gather(*(sign_in(engine, settings, identity) for identity in identities))
    assert len(set(results)) == 1
    assert await counts(engine, email) == (1, 1)
    async with session_maker(engine)() as session:
        user = await session.scalar(select(m.User).where(m.User.email == email))
    assert user is not None
    assert user.provider_subject == subject


async def test_the_provider_subject_finds_the_user_after_their_email_changed(
    engine: AsyncEngine, settings: Settings
) -> None:
    subject = f"https://issuer.example|{uuid.uuid4().hex}"
    old_email = f"old-{uuid.uuid4().hex[:10]}@example.com"
    first = await sign_in(engine, settings, Identity(email=old_email, subject=subject, email_verified=True))
    second = await sign_in(
        engine,
        settings,
        Identity(email=f"new-{uuid.uuid4().hex[:10]}@example.com", subject=subject, email_verified=True),
    )
    assert first == second


async def test_another_identity_with_the_same_email_cannot_open_the_wallet(
    engine: AsyncEngine, settings: Settings
) -> None:
    email = f"owner-{uuid.uuid4().hex[:10]}@example.com"
    owner = Identity(email=email, subject=f"https://issuer.example|{uuid.uuid4().hex}", email_verified=True)
    await sign_in(engine, settings, owner)
    impostor = Identity(email=email, subject=f"https://other.example|{uuid.uuid4().hex}", email_verified=True)
    with pytest.raises(OAuthFailed):
        await sign_in(engine, settings, impostor)
    assert await counts(engine, email) == (1, 1)
    # The owner still signs in, and a local sign-in (`wallet token`, no subject) still finds them.
    await sign_in(engine, settings, owner)
    await sign_in(engine, settings, Identity(email=email))
