from __future__ import annotations

import enum
from datetime import datetime
from typing import Any
from uuid import UUID

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models._base import Base


class WithdrawalStatus(enum.StrEnum):
    """A withdrawal's state; its transitions are one table, `app.domain.withdrawals.withdrawal_states`."""

    PENDING = "pending"
    """Reserved (wallet -> `withdrawals_in_flight`); Paystack has not accepted a transfer yet."""
    PROCESSING = "processing"
    """Paystack accepted the transfer; its outcome has not arrived."""
    SUCCESS = "success"
    """Paid out: the money left (in flight -> `paystack`)."""
    FAILED = "failed"
    """Not paid out: the money went back to the wallet."""
    REVERSED = "reversed"
    """Paystack reversed the transfer (before or after a success): the money went back to the wallet."""


WITHDRAWAL_STATUSES_SQL = ", ".join(f"'{status.value}'" for status in WithdrawalStatus)


class Withdrawal(Base):
    """Money leaving a wallet for a bank account through a Paystack transfer with our `reference`."""

    __tablename__ = "withdrawals"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(f"status IN ({WITHDRAWAL_STATUSES_SQL})", name="status_known"),
        Index("ix_withdrawals_wallet_history", "wallet_id", "created_at", "id"),
        Index("ix_withdrawals_unfinished", "updated_at", postgresql_where=text("status IN ('pending', 'processing')")),
    )

    reference: Mapped[str] = mapped_column(String(64), unique=True)
    """Ours, and Paystack's transfer `reference`: a retried initiation can never pay twice."""
    wallet_id: Mapped[UUID] = mapped_column(ForeignKey("wallets.id", ondelete="RESTRICT"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    bank_code: Mapped[str] = mapped_column(String(32))
    bank_name: Mapped[str] = mapped_column(String(200))
    account_number: Mapped[str] = mapped_column(String(10))
    account_name: Mapped[str] = mapped_column(String(200))
    narration: Mapped[str | None] = mapped_column(String(100), default=None)
    status: Mapped[str] = mapped_column(String(16), default=WithdrawalStatus.PENDING.value)
    failure_reason: Mapped[str | None] = mapped_column(Text, default=None)
    recipient_code: Mapped[str | None] = mapped_column(String(64), default=None)
    transfer_code: Mapped[str | None] = mapped_column(String(64), default=None)
    initiations: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Times a worker was about to send `POST /transfer`: above 0, Paystack may hold the transfer, so it is
    asked (verify by reference) before any other attempt."""
    provider_data: Mapped[dict[str, Any] | None] = mapped_column(JSONB, default=None)
    """The last transfer object Paystack sent (initiation answer, webhook or verification)."""
    completed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class TransferRecipient(Base):
    """A Paystack transfer recipient, created once per user, bank and account and reused."""

    __tablename__ = "transfer_recipients"
    __table_args__ = (
        UniqueConstraint("user_id", "bank_code", "account_number", name="uq_transfer_recipients_account"),
    )

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    bank_code: Mapped[str] = mapped_column(String(32))
    account_number: Mapped[str] = mapped_column(String(10))
    recipient_code: Mapped[str] = mapped_column(String(64))
