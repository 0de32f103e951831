from __future__ import annotations

from datetime import datetime
from uuid import UUID

from advanced_alchemy.base import IdentityBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column


class RevokedToken(IdentityBase):
    """A logged-out access token, kept until it would have expired anyway.

    The durable half of the deny-list: Redis answers the per-request question and is refilled from this
    table when it has lost its keys (restarted or flushed), so a logout survives a Redis outage.
    """

    __tablename__ = "revoked_tokens"
    __table_args__ = (Index("ix_revoked_tokens_expires_at", "expires_at"),)

    jti: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    revoked_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), server_default=func.now())
