from __future__ import annotations

from datetime import datetime
from typing import Any

from advanced_alchemy.base import IdentityBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, Index, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column


class AuditEvent(IdentityBase):
    """Who did what: key creation, rollover and revocation, and every movement of money. Append-only
    (the ledger's trigger refuses UPDATE and DELETE here too), written in the transaction of the change it
    records, so an event exists exactly when its change was committed."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_actor", "actor", "occurred_at"),
        Index("ix_audit_events_subject", "subject"),
    )

    occurred_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), server_default=func.now())
    actor: Mapped[str] = mapped_column(String(120))
    """`user:<id>`, `api_key:<id>`, `paystack:webhook`, `paystack:verification` or `system:<job>`."""
    action: Mapped[str] = mapped_column(String(64))
    """What happened, e.g. `api_key.created`, `transfer.accepted`, `deposit.credited`."""
    subject: Mapped[str] = mapped_column(String(120))
    """What it happened to: a key id, a transfer or deposit reference, a settlement journal reference."""
    amount: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """Kobo moved, for movements of money."""
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONB, default=None)
