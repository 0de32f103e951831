from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import CheckConstraint, Index, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models._base import Base


class ReviewKind(enum.StrEnum):
    """Why something waits for an operator: what the system must not guess."""

    PAYMENT_MISMATCH = "payment_mismatch"
    """Paystack reported a payment whose amount or currency differs from the deposit: nothing was credited."""
    SUCCESS_AFTER_REVERSAL = "success_after_reversal"
    """A success reported after Paystack reported the payment reversed: nothing was credited."""
    EVENT_FAILING = "event_failing"
    """A stored Paystack event keeps failing to apply: its effect (a credit, say) has not happened yet."""
    REFUND_UNCOVERED = "refund_uncovered"
    """Paystack refunded a deposit the wallet can no longer give back (or never received): nothing moved."""
    DISPUTE = "dispute"
    """A customer disputes a deposit's payment (`charge.dispute.create`): nothing moved; answer it on Paystack."""
    PAYOUT_CONTRADICTION = "payout_contradiction"
    """Paystack reported an outcome of a withdrawal that contradicts the one already applied (a success after a
    failure, a failure after a reversal): nothing moved; check the transfer on Paystack's dashboard."""
    PAYOUT_UNKNOWN = "payout_unknown"
    """Paystack accepted a withdrawal's transfer and later says it knows no such transfer: nothing moved."""


class ReviewStatus(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class ReviewItem(Base):
    """One item of the operator review queue (`wallet review list`): flagged by the system, resolved by a person.

    Resolving records who, when and why; it moves no money. `(kind, reference, source)` is unique, so the
    same finding reported again (an event redelivered, a verification repeated) is one item.
    """

    __tablename__ = "review_items"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'resolved')", name="status_known"),
        UniqueConstraint("kind", "reference", "source", name="uq_review_items_kind_reference_source"),
        Index("ix_review_items_open", "created_at", postgresql_where=text("status = 'open'")),
        Index("ix_review_items_reference", "reference"),
    )

    reference: Mapped[str] = mapped_column(String(100))
    """What to look at: a deposit's or withdrawal's reference, or a webhook event's id when it names neither."""
    kind: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(128), default="", server_default="")
    """What reported it (a webhook event id, `verification`), so one finding is flagged once."""
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONB, default=None)
    status: Mapped[str] = mapped_column(String(16), default=ReviewStatus.OPEN.value)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    resolved_by: Mapped[str | None] = mapped_column(String(120), default=None)
    resolution_note: Mapped[str | None] = mapped_column(Text, default=None)
