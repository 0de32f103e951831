from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.models._base import Base

if TYPE_CHECKING:
    from app.db.models._wallet import Wallet


class User(Base):
    """A person who signed in with Google (or was minted locally by `wallet token`)."""

    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    """Lower-cased e-mail address; the identity of local users."""
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    picture: Mapped[str | None] = mapped_column(String(2048), default=None)
    provider_subject: Mapped[str | None] = mapped_column(String(255), unique=True, default=None)
    """The OpenID Connect `sub` of the user at the identity provider."""
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)

    wallet: Mapped[Wallet | None] = relationship(back_populates="user", lazy="noload", uselist=False)
