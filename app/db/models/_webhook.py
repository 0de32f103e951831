from __future__ import annotations

import enum
from datetime import datetime
from typing import Any
from uuid import UUID

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models._base import Base


class EventType(enum.StrEnum):
    """What the user's services are told; each written with the movement it reports (the outbox)."""

    DEPOSIT_SUCCEEDED = "deposit.succeeded"
    TRANSFER_SENT = "transfer.sent"
    TRANSFER_RECEIVED = "transfer.received"
    WITHDRAWAL_SUCCEEDED = "withdrawal.succeeded"
    WITHDRAWAL_FAILED = "withdrawal.failed"
    DEPOSIT_REFUNDED = "deposit.refunded"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookEndpoint(Base):
    """A URL of the user's own service that receives their events, signed with the endpoint's secret."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_user", "user_id", postgresql_where=text("deleted_at IS NULL")),)

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(ARRAY(String(32)))
    """Event types, or `["*"]` for all."""
    sealed_secret: Mapped[str] = mapped_column(Text)
    """The signing secret, encrypted (`app.domain.webhooks.signing.SecretBox`)."""
    failing_since: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    """The first failed delivery since the last success; 3 days of that disables the endpoint."""
    disabled_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    """`DELETE /webhooks/{id}`: kept (with its delivery log) but sent nothing more and shown to nobody."""


class WalletEvent(Base):
    """One event of the outbox, written in the transaction of the movement it reports. Never updated."""

    __tablename__ = "wallet_events"
    __table_args__ = (Index("ix_wallet_events_user", "user_id", "created_at"),)

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    """`evt_...`: what receivers dedupe on."""
    type: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(100))
    """The reference of the deposit, transfer or withdrawal it reports."""
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)


class WebhookDelivery(Base):
    """One event sent to one endpoint: retried with backoff until delivered or `WEBHOOK_MAX_ATTEMPTS`."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at"),
    )

    endpoint_id: Mapped[UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="RESTRICT"))
    event_id: Mapped[UUID] = mapped_column(ForeignKey("wallet_events.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    leased_until: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    """While a worker is sending it; a worker killed mid-delivery leaves it to expire, then it is sent again."""
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
