from __future__ import annotations

import enum
from datetime import datetime

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import CheckConstraint, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models._base import Base


class WebhookEventStatus(enum.StrEnum):
    RECEIVED = "received"
    """Stored and acknowledged; waiting for a worker."""
    PROCESSED = "processed"
    IGNORED = "ignored"
    """Another event type, or an unknown reference: recorded and left alone."""
    REVIEW = "review"
    """Amount or currency differs from the deposit: credited nothing."""
    FAILED = "failed"
    """Kept failing after retries; stays visible for an operator (beat retries it too)."""


class WebhookEvent(Base):
    """A webhook as Paystack sent it, stored before we answer 200."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        CheckConstraint(
            "status IN ('received', 'processed', 'ignored', 'review', 'failed')",
            name="status_known",
        ),
        Index("ix_webhook_events_unfinished", "created_at", postgresql_where=text("status IN ('received', 'failed')")),
    )

    event_key: Mapped[str] = mapped_column(String(128), unique=True)
    """What makes a redelivery a duplicate: the SHA-256 of the raw body."""
    event_type: Mapped[str] = mapped_column(String(100))
    reference: Mapped[str | None] = mapped_column(String(100), default=None, index=True)
    raw_body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default=WebhookEventStatus.RECEIVED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    processed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
