"""Users for tests: made through the same sign-in path as Google's, each with a wallet, a JWT and keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from app.db import models as m
from app.domain.auth.tokens import issue_token
from app.domain.auth.users import Identity, UserService
from app.domain.keys.secrets import display_prefix, generate_secret, hash_secret
from app.lib.db import session_maker
from app.lib.uow import UnitOfWork

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from app.config import Settings


@dataclass
class TestUser:
    __test__ = False

    user_id: uuid.UUID
    email: str
    wallet_id: uuid.UUID
    wallet_number: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def make_user(engine: AsyncEngine, settings: Settings, email: str | None = None, **identity: Any) -> TestUser:
    """A new user and wallet (`UserService.sign_in`, as Google sign-in does), and a JWT for them."""
    email = email or f"user-{uuid.uuid4().hex[:12]}@example.com"
    async with session_maker(engine)() as session:
        uow = UnitOfWork(session)
        user, wallet = await uow.run(
            lambda: UserService(session=session).sign_in(Identity(email=email, **identity), settings.money.currency)
        )
    token = issue_token(settings, user_id=user.id, email=user.email)
    return TestUser(user.id, user.email, wallet.id, wallet.number, token.access_token)


async def add_api_key(db: AsyncSession, user_id: uuid.UUID, permissions: list[str]) -> dict[str, str]:
    """A live API key for the user with these permissions; returns its request headers."""
    secret = generate_secret()
    db.add(
        m.ApiKey(
            user_id=user_id,
            name="wallet-tests",
            key_hash=hash_secret(secret),
            prefix=display_prefix(secret),
            permissions=permissions,
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
    )
    await db.commit()
    return {"x-api-key": secret}
