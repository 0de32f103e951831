from __future__ import annotations

import enum
from datetime import datetime
from uuid import UUID

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ARRAY, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models._base import Base


class ApiKeyStatus(enum.StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


class ApiKey(Base):
    """A service's key to act on its owner's wallet. Only the SHA-256 of the secret is stored."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("cardinality(permissions) > 0", name="permissions_not_empty"),
        CheckConstraint("status IN ('active', 'expired', 'revoked')", name="status_known"),
        Index("ix_api_keys_user_id", "user_id"),
    )

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """Hex SHA-256 of the secret; the unique index is how a key is found."""
    prefix: Mapped[str] = mapped_column(String(32))
    """The first characters of the secret, to tell keys apart in listings."""
    permissions: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default=ApiKeyStatus.ACTIVE.value)
    """Stored status; a key past `expires_at` is expired even before the sweep marks it."""
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    rolled_over_to_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), unique=True, default=None
    )
    """The key that replaced this expired one; set once, which is what makes a rollover happen once."""
