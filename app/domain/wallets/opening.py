"""Opening a wallet: a 13-digit number and its own ledger account, created with the user."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app.db import models as m

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

WALLET_NUMBER_DIGITS = 13
MAX_NUMBER_ATTEMPTS = 8


def new_wallet_number() -> str:
    """A random 13-digit number that does not start with 0 (so it survives being read as an integer)."""
    return str(secrets.randbelow(9 * 10 ** (WALLET_NUMBER_DIGITS - 1)) + 10 ** (WALLET_NUMBER_DIGITS - 1))


async def open_wallet(session: AsyncSession, user_id: UUID, currency: str) -> m.Wallet:
    """The user's wallet, created (with its ledger account) if it does not exist yet.

    Safe under races: the unique `user_id` makes a concurrent second opening a no-op. Does not commit.
    """
    existing = await session.scalar(select(m.Wallet).where(m.Wallet.user_id == user_id))
    if existing is not None:
        return existing
    for _ in range(MAX_NUMBER_ATTEMPTS):
        number = new_wallet_number()
        account_id = await session.scalar(
            pg_insert(m.LedgerAccount)
            .values(code=f"wallet:{number}")
            .on_conflict_do_nothing(index_elements=["code"])
            .returning(m.LedgerAccount.id)
        )
        if account_id is None:
            continue
        wallet_id = await session.scalar(
            pg_insert(m.Wallet)
            .values(
                user_id=user_id,
                number=number,
                currency=currency,
                ledger_account_id=account_id,
                balance=0,
            )
            .on_conflict_do_nothing()
            .returning(m.Wallet.id)
        )
        if wallet_id is not None:
            return await session.get_one(m.Wallet, wallet_id)
        wallet = await session.scalar(select(m.Wallet).where(m.Wallet.user_id == user_id))
        if wallet is not None:
            # Another request opened it first; the account we made stays unused, which is harmless.
            return wallet
    msg = "could not find a free wallet number"
    raise RuntimeError(msg)
