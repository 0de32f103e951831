from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.models._base import Base

if TYPE_CHECKING:
    from app.db.models._user import User


class Wallet(Base):
    """A user's wallet. `balance` is a cache of the wallet's ledger entries, kept in the same transaction."""

    __tablename__ = "wallets"
    __table_args__ = (
        CheckConstraint("balance >= 0", name="balance_not_negative"),
        CheckConstraint("number ~ '^[0-9]{13}$'", name="number_is_13_digits"),
    )

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), unique=True)
    number: Mapped[str] = mapped_column(String(13), unique=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    currency: Mapped[str] = mapped_column(String(3), default="NGN", server_default="NGN")
    ledger_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), unique=True)

    user: Mapped[User] = relationship(back_populates="wallet", lazy="noload")
