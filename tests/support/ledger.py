"""Funding wallets in tests through the ledger's one crediting path.

`fund` records what really happened: a successful deposit (a `deposits` row with status `success`) and its
one credit journal, written by `LedgerService.credit_deposit` and committed together, so `wallet ledger
check` stays green however many wallets a test funds.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db import models as m
from app.domain.wallets.ledger import LedgerService
from app.lib.db import session_maker

if TYPE_CHECKING:
    from uuid import UUID


async def record_successful_deposit(session: AsyncSession, wallet_id: UUID, amount: int, reference: str) -> None:
    """Insert the `deposits` row of a successful deposit (no commit): what a credit journal must match."""
    await session.execute(
        insert(m.Deposit).values(
            reference=reference,
            wallet_id=wallet_id,
            amount=amount,
            currency="NGN",
            status=m.DepositStatus.SUCCESS.value,
            paid_at=datetime.now(UTC),
        )
    )


async def _fund_in(session: AsyncSession, wallet_id: UUID, amount: int, reference: str) -> None:
    credited = await LedgerService(session).credit_deposit(
        actor="test:paystack", wallet_id=wallet_id, amount=amount, reference=reference
    )
    if not credited:
        msg = f"reference {reference} was credited before"
        raise AssertionError(msg)
    await record_successful_deposit(session, wallet_id, amount, reference)
    await session.commit()


async def fund(engine_or_session: AsyncEngine | AsyncSession, wallet_id: UUID, amount: int) -> str:
    """Credit `amount` to a wallet as a successful deposit with a fresh reference; commits. Returns the reference."""
    reference = f"fund_{uuid.uuid4().hex}"
    if isinstance(engine_or_session, AsyncSession):
        await _fund_in(engine_or_session, wallet_id, amount, reference)
    else:
        async with session_maker(engine_or_session)() as session:
            await _fund_in(session, wallet_id, amount, reference)
    return reference
