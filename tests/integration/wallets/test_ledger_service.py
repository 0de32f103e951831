"""The ledger service against PostgreSQL: deposit credits once, acceptance reserves, settlement batches."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db import models as m
from app.domain.wallets.checks import check_ledger
from app.domain.wallets.ledger import LedgerService
from app.lib.db import session_maker
from app.lib.errors import InsufficientBalance, SelfTransfer, WalletNotFound
from tests.support.factories import accept_transfer, fund, record_successful_deposit, settle_pending, transfer_status


async def _balance(db: AsyncSession, wallet_id: uuid.UUID) -> int:
    await db.rollback()
    return int(await db.scalar(select(m.Wallet.balance).where(m.Wallet.id == wallet_id)) or 0)


async def _entry_sum(db: AsyncSession, wallet_id: uuid.UUID) -> int:
    await db.rollback()
    return int(
        await db.scalar(
            select(func.coalesce(func.sum(m.LedgerEntry.amount), 0))
            .join(m.Wallet, m.Wallet.ledger_account_id == m.LedgerEntry.account_id)
            .where(m.Wallet.id == wallet_id)
        )
        or 0
    )


async def test_a_deposit_reference_credits_its_wallet_exactly_once(db: AsyncSession, make_user) -> None:
    user = await make_user()
    reference = f"dep_{uuid.uuid4().hex}"
    ledger = LedgerService(db)
    assert (
        await ledger.credit_deposit(actor="test:paystack", wallet_id=user.wallet_id, amount=700, reference=reference)
        is True
    )
    await db.commit()
    assert (
        await ledger.credit_deposit(actor="test:paystack", wallet_id=user.wallet_id, amount=700, reference=reference)
        is False
    )
    await db.commit()
    assert await _balance(db, user.wallet_id) == 700
    assert await _entry_sum(db, user.wallet_id) == 700
    await record_successful_deposit(db, user.wallet_id, 700, reference)
    await db.commit()


async def test_concurrent_credits_of_one_reference_credit_once(
    engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    user = await make_user()
    reference = f"dep_{uuid.uuid4().hex}"

    async def credit() -> bool:
        async with session_maker(engine)() as session:
            credited = await LedgerService(session).credit_deposit(
                actor="test:paystack", wallet_id=user.wallet_id, amount=250, reference=reference
            )
            await session.commit()
            return credited

    results = await asyncio.gather(*(credit() for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    assert await _balance(db, user.wallet_id) == 250
    await record_successful_deposit(db, user.wallet_id, 250, reference)
    await db.commit()


async def test_credit_deposit_does_not_commit_for_its_caller(engine: AsyncEngine, db: AsyncSession, make_user) -> None:
    user = await make_user()
    async with session_maker(engine)() as session:
        assert await LedgerService(session).credit_deposit(
            actor="test:paystack", wallet_id=user.wallet_id, amount=100, reference=f"dep_{uuid.uuid4().hex}"
        )
        await session.rollback()
    assert await _balance(db, user.wallet_id) == 0
    assert await _entry_sum(db, user.wallet_id) == 0


async def test_credit_deposit_refuses_an_unknown_wallet(db: AsyncSession) -> None:
    with pytest.raises(WalletNotFound):
        await LedgerService(db).credit_deposit(
            actor="test:paystack", wallet_id=uuid.uuid4(), amount=1, reference="nope"
        )
    await db.rollback()


async def test_acceptance_reserves_the_senders_funds_and_settlement_credits_the_recipient(
    engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    sender, recipient = await make_user(), await make_user()
    await fund(engine, sender.wallet_id, 1_000)
    accepted = await accept_transfer(
        db,
        actor="test:sender",
        sender_user_id=sender.user_id,
        recipient_wallet_number=recipient.wallet_number,
        amount=400,
    )
    assert await _balance(db, sender.wallet_id) == 600
    assert await _balance(db, recipient.wallet_id) == 0
    assert await transfer_status(db, accepted.reference) in {"pending", "success"}
    await settle_pending(db, batch_size=500)
    assert await transfer_status(db, accepted.reference) == "success"
    assert await _balance(db, recipient.wallet_id) == 400
    assert await _entry_sum(db, recipient.wallet_id) == 400
    assert (await check_ledger(db)).violations == []


async def test_acceptance_refusals_move_nothing(engine: AsyncEngine, db: AsyncSession, make_user) -> None:
    sender, recipient = await make_user(), await make_user()
    await fund(engine, sender.wallet_id, 100)
    with pytest.raises(InsufficientBalance):
        await accept_transfer(
            db,
            actor="test:sender",
            sender_user_id=sender.user_id,
            recipient_wallet_number=recipient.wallet_number,
            amount=101,
        )
    with pytest.raises(SelfTransfer):
        await accept_transfer(
            db,
            actor="test:sender",
            sender_user_id=sender.user_id,
            recipient_wallet_number=sender.wallet_number,
            amount=1,
        )
    with pytest.raises(WalletNotFound):
        await accept_transfer(
            db, actor="test:sender", sender_user_id=sender.user_id, recipient_wallet_number="1000000000000", amount=1
        )
    assert await _balance(db, sender.wallet_id) == 100
    count = await db.scalar(
        select(func.count()).select_from(m.Transfer).where(m.Transfer.sender_wallet_id == sender.wallet_id)
    )
    assert count == 0


async def test_a_hot_recipient_is_credited_once_per_batch(engine: AsyncEngine, db: AsyncSession, make_user) -> None:
    merchant = await make_user()
    senders = [await make_user() for _ in range(12)]
    for sender in senders:
        await fund(engine, sender.wallet_id, 300)

    async def pay(sender) -> None:
        async with session_maker(engine)() as session:
            for _ in range(3):
                await accept_transfer(
                    session,
                    actor="test:sender",
                    sender_user_id=sender.user_id,
                    recipient_wallet_number=merchant.wallet_number,
                    amount=100,
                )

    await asyncio.gather(*(pay(sender) for sender in senders))
    await settle_pending(db, batch_size=500)
    assert await _balance(db, merchant.wallet_id) == 3_600
    journals = await db.scalar(
        select(func.count(func.distinct(m.Transfer.settlement_journal_id))).where(
            m.Transfer.recipient_wallet_id == merchant.wallet_id
        )
    )
    credit_entries = await db.scalar(
        select(func.count())
        .select_from(m.LedgerEntry)
        .join(m.LedgerJournal, m.LedgerJournal.id == m.LedgerEntry.journal_id)
        .join(m.Wallet, m.Wallet.ledger_account_id == m.LedgerEntry.account_id)
        .where(m.Wallet.id == merchant.wallet_id, m.LedgerJournal.kind == m.JournalKind.SETTLEMENT.value)
    )
    assert journals is not None
    assert credit_entries == journals
    assert journals < 36
    assert (await check_ledger(db)).violations == []


async def test_settling_twice_moves_nothing_twice(engine: AsyncEngine, db: AsyncSession, make_user) -> None:
    sender, recipient = await make_user(), await make_user()
    await fund(engine, sender.wallet_id, 500)
    await accept_transfer(
        db,
        actor="test:sender",
        sender_user_id=sender.user_id,
        recipient_wallet_number=recipient.wallet_number,
        amount=500,
    )

    async def settle() -> int:
        async with session_maker(engine)() as session:
            return await settle_pending(session, batch_size=500)

    await asyncio.gather(settle(), settle(), settle())
    await settle()
    assert await _balance(db, recipient.wallet_id) == 500
    assert await _balance(db, sender.wallet_id) == 0
    assert (await check_ledger(db)).violations == []
