"""Users: found or created by their identity, each with exactly one wallet."""

from __future__ import annotations

from dataclasses import dataclass

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app.db import models as m
from app.domain.wallets.opening import open_wallet
from app.lib.errors import OAuthFailed


@dataclass(frozen=True)
class Identity:
    """Who the identity provider (or `wallet token`) says the person is."""

    email: str
    name: str | None = None
    picture: str | None = None
    subject: str | None = None
    """The provider's `sub`; None for local users."""
    email_verified: bool = False


class UserService(SQLAlchemyAsyncRepositoryService[m.User]):
    class Repo(SQLAlchemyAsyncRepository[m.User]):
        model_type = m.User

    repository_type = Repo

    async def sign_in(self, identity: Identity, currency: str) -> tuple[m.User, m.Wallet]:
        """The user and wallet for an identity, created on first sign-in, exactly once even under races.

        The caller commits. The user is matched by provider subject first, then by e-mail (a local user who later
        signs in with Google keeps their wallet).
        """
        session = self.repository.session
        email = identity.email.strip().lower()
        user = None
        if identity.subject:
            user = await session.scalar(select(m.User).where(m.User.provider_subject == identity.subject))
        if user is None:
            user_id = await session.scalar(
                pg_insert(m.User)
                .values(
                    email=email,
                    name=identity.name,
                    picture=identity.picture,
                    provider_subject=identity.subject,
                    email_verified=identity.email_verified,
                )
                .on_conflict_do_nothing()
                .returning(m.User.id)
            )
            if user_id is None:
                user = await session.scalar(select(m.User).where(m.User.email == email).with_for_update())
                if user is None:
                    # The conflict was on the provider subject, claimed by a concurrent first sign-in.
                    user = await session.scalar(select(m.User).where(m.User.provider_subject == identity.subject))
            else:
                user = await session.get_one(m.User, user_id)
        if user is None:
            msg = "user vanished during sign-in"
            raise RuntimeError(msg)
        if identity.subject and user.provider_subject not in (None, identity.subject):
            # Another identity already owns this address: an e-mail a provider reassigned (or another
            # provider's) must not open someone else's wallet. Raising rolls the transaction back.
            raise OAuthFailed("This e-mail address is already linked to another sign-in identity.")
        if identity.subject and (
            user.provider_subject is None or user.name != identity.name or user.picture != identity.picture
        ):
            await session.execute(
                update(m.User)
                .where(m.User.id == user.id)
                .values(
                    provider_subject=user.provider_subject or identity.subject,
                    name=identity.name or user.name,
                    picture=identity.picture or user.picture,
                    email_verified=identity.email_verified or user.email_verified,
                )
            )
            await session.refresh(user)
        wallet = await open_wallet(session, user.id, currency)
        return user, wallet
