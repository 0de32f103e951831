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
    PENDING = "pending"
    SUCCESS = "success"
    FAILED = "failed"
    ABANDONED = "abandoned"


class Deposit(Base):
    """A Paystack payment into a wallet, identified by our own reference."""

    __tablename__ = "deposits"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("status IN ('pending', 'success', 'failed', 'abandoned')", name="status_known"),
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
