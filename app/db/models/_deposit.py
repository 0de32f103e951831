from __future__ import annotations

import enum
from datetime import datetime
from typing import Any
from uuid import UUID

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models._base import Base


class DepositStatus(enum.StrEnum):
    """A deposit's state; its transitions are one table, `app.domain.payments.deposit_states`."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILED = "failed"
    REVERSED = "reversed"
    """Paystack took the payment back before we credited it; clients see `failed`."""
    ABANDONED = "abandoned"
    REFUNDED = "refunded"
    """Paystack refunded the whole amount and the wallet gave it back."""

    @property
    def public(self) -> str:
        """The status the contract shows clients (`reversed` is a kind of `failed` to them)."""
        return DepositStatus.FAILED.value if self is DepositStatus.REVERSED else self.value


DEPOSIT_STATUSES_SQL = ", ".join(f"'{status.value}'" for status in DepositStatus)


class Deposit(Base):
    """A Paystack payment into a wallet, identified by our own reference."""

    __tablename__ = "deposits"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(f"status IN ({DEPOSIT_STATUSES_SQL})", name="status_known"),
        Index("ix_deposits_wallet_history", "wallet_id", "created_at", "id"),
        Index("ix_deposits_pending", "created_at", postgresql_where=text("status = 'pending'")),
    )

    reference: Mapped[str] = mapped_column(String(64), unique=True)
    wallet_id: Mapped[UUID] = mapped_column(ForeignKey("wallets.id", ondelete="RESTRICT"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="NGN")
    status: Mapped[str] = mapped_column(String(16), default=DepositStatus.PENDING.value)
    access_code: Mapped[str | None] = mapped_column(String(255), default=None)
    authorization_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    paid_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    """Paystack reported a payment that differs from what was initialised: credited nothing, a person must look."""
    review_reason: Mapped[str | None] = mapped_column(Text, default=None)
    provider_data: Mapped[dict[str, Any] | None] = mapped_column(JSONB, default=None)
    """The last transaction object Paystack sent (webhook or verification)."""
    last_verified_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class RefundOutcome(enum.StrEnum):
    DEBITED = "debited"
    """The refunded amount went back out of the wallet (its `refund` journal)."""
    UNCOVERED = "uncovered"
    """The wallet no longer held it (or it exceeded what was credited): nothing moved, a review item says so."""


class DepositRefund(Base):
    """One refund Paystack processed for a deposit, applied once (`refund_reference` is unique)."""

    __tablename__ = "deposit_refunds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("outcome IN ('debited', 'uncovered')", name="outcome_known"),
        CheckConstraint("(outcome = 'debited') = (journal_id IS NOT NULL)", name="debited_has_journal"),
        Index("ix_deposit_refunds_deposit_id", "deposit_id"),
    )

    deposit_id: Mapped[UUID] = mapped_column(ForeignKey("deposits.id", ondelete="RESTRICT"))
    refund_reference: Mapped[str] = mapped_column(String(100), unique=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    outcome: Mapped[str] = mapped_column(String(16))
    journal_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_journals.id", ondelete="RESTRICT"), default=None)
