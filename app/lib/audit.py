"""The audit log: one function records who did what, inside the transaction of the change itself.

Actions recorded: `api_key.created`, `api_key.rolled_over`, `api_key.revoked` (by the user) and every
movement of money: `deposit.credited` (by Paystack's webhook or our verification), `transfer.accepted` (by
the user or API key that sent it) and `transfers.settled` (by the settlement worker, one event per batch).
Rows are append-only; they never hold a secret (key ids and references only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import insert

from app.db import models as m

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

SETTLEMENT_ACTOR = "system:settlement"


async def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    subject: str,
    amount: int | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an audit event to the session's transaction (committed, or rolled back, with the change)."""
    await session.execute(
        insert(m.AuditEvent).values(actor=actor, action=action, subject=subject, amount=amount, details=details)
    )
