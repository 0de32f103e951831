from __future__ import annotations

import enum
from datetime import datetime
from uuid import UUID

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models._base import Base


class TransferStatus(enum.StrEnum):
    PENDING = "pending"
    """Accepted: the sender's funds are reserved in the in-flight account."""
    SUCCESS = "success"
    """Settled: the recipient has been credited."""


class Transfer(Base):
    """A wallet-to-wallet transfer, accepted in the request and settled by a worker."""

    __tablename__ = "transfers"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("sender_wallet_id <> recipient_wallet_id", name="not_to_self"),
        CheckConstraint("status IN ('pending', 'success')", name="status_known"),
        Index("ix_transfers_sender_history", "sender_wallet_id", "created_at", "id"),
        Index("ix_transfers_recipient_history", "recipient_wallet_id", "created_at", "id"),
        Index("ix_transfers_pending", "created_at", postgresql_where=text("status = 'pending'")),
    )

    reference: Mapped[str] = mapped_column(String(64), unique=True)
    sender_wallet_id: Mapped[UUID] = mapped_column(ForeignKey("wallets.id", ondelete="RESTRICT"))
    recipient_wallet_id: Mapped[UUID] = mapped_column(ForeignKey("wallets.id", ondelete="RESTRICT"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="NGN")
    status: Mapped[str] = mapped_column(String(16), default=TransferStatus.PENDING.value)
    settled_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    settlement_journal_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_journals.id"), default=None)
    """The settlement batch that credited the recipient."""
