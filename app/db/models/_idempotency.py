from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models._base import Base


class IdempotencyRecord(Base):
    """The first response to a request carrying an `Idempotency-Key`, replayed to its retries."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_records_user_key"),)

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    """SHA-256 of method, path and body: a retry must match it."""
    response_status: Mapped[int | None] = mapped_column(Integer, default=None)
    """None while the first request is still running."""
    response_body: Mapped[Any | None] = mapped_column(JSONB, default=None)
