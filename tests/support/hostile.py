"""What a user owns, read straight from PostgreSQL, to prove a refused request changed nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select

from app.db import models as m
from app.lib.db import session_maker

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from tests.support.users import TestUser


@dataclass(frozen=True)
class Footprint:
    """Everything a request could have changed for one user."""

    balance: int
    ledger_entries: int
    transfers: int
    deposits: tuple[tuple[str, str], ...]
    api_keys: tuple[tuple[str, str], ...]
    idempotency_records: int


async def footprint_of(engine: AsyncEngine, user: TestUser) -> Footprint:
    async with session_maker(engine)() as session:
        wallet = (await session.execute(select(m.Wallet).where(m.Wallet.id == user.wallet_id))).scalar_one()

        async def count(statement: Any) -> int:
            return int(await session.scalar(statement) or 0)

        deposits = await session.execute(
            select(m.Deposit.reference, m.Deposit.status).where(m.Deposit.wallet_id == wallet.id).order_by("reference")
        )
        keys = await session.execute(
            select(m.ApiKey.id, m.ApiKey.status).where(m.ApiKey.user_id == user.user_id).order_by("id")
        )
        return Footprint(
            balance=wallet.balance,
            ledger_entries=await count(
                select(func.count())
                .select_from(m.LedgerEntry)
                .where(m.LedgerEntry.account_id == wallet.ledger_account_id)
            ),
            transfers=await count(
                select(func.count())
                .select_from(m.Transfer)
                .where(or_(m.Transfer.sender_wallet_id == wallet.id, m.Transfer.recipient_wallet_id == wallet.id))
            ),
            deposits=tuple((reference, status) for reference, status in deposits),
            api_keys=tuple((str(key_id), status) for key_id, status in keys),
            idempotency_records=await count(
                select(func.count()).select_from(m.IdempotencyRecord).where(m.IdempotencyRecord.user_id == user.user_id)
            ),
        )
