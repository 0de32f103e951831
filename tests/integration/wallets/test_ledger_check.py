"""`wallet ledger check`: green on an honest ledger, red (naming the culprit) on every kind of damage."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.cli import main
from app.config import Settings
from app.db import models as m
from app.domain.auth.users import Identity
from app.domain.wallets.checks import check_ledger
from app.domain.wallets.ledger import LedgerService
from app.domain.withdrawals.schemas import Bank
from app.domain.withdrawals.service import PayoutOrder, reserve_withdrawal
from app.domain.withdrawals.withdrawal_states import WithdrawalEvent, WithdrawalStates
from app.lib.db import session_maker
from app.lib.infra import create_database_if_missing_async, drop_database_async
from app.lib.migrations import upgrade_async
from tests.support.factories import accept_transfer, fund, settle_pending, sign_in
from tests.support.processes import PROJECT_ROOT, service_env


async def _ledger_check(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`wallet ledger check` (the console script's `main`), run as the command runs, on its own loop."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["ledger", "check"])
    return code, capsys.readouterr().out


async def test_wallet_ledger_check_passes_on_the_suites_ledger_and_fails_naming_a_corrupted_wallet(
    engine: AsyncEngine, db: AsyncSession, make_user, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = await _ledger_check(capsys)
    assert code == 0, out
    assert "ledger OK" in out

    victim = await make_user()
    await fund(engine, victim.wallet_id, 1_000)
    # The balance column is a cache the trigger does not protect: corrupt it, then put it back.
    await db.execute(update(m.Wallet).where(m.Wallet.id == victim.wallet_id).values(balance=1_500))
    await db.commit()
    try:
        code, out = await _ledger_check(capsys)
    finally:
        await db.execute(update(m.Wallet).where(m.Wallet.id == victim.wallet_id).values(balance=1_000))
        await db.commit()
    assert code == 1, out
    assert f"VIOLATION: wallet {victim.wallet_number}: cached balance 1500 differs" in out
    assert "FAILED" in out
    assert (await check_ledger(db)).ok


def test_wallet_ledger_check_is_a_command_of_the_wallet_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "ledger", "--help"],
        env=service_env(),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "check" in result.stdout


@pytest.fixture
async def scratch(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """A database of its own, for damage that cannot be undone (ledger rows are immutable)."""
    base, _, rest = settings.database.url.rpartition("/")
    query = "?" + rest.split("?", 1)[1] if "?" in rest else ""
    url = f"{base}/wallet_ledger_{uuid.uuid4().hex[:8]}{query}"
    await create_database_if_missing_async(url)
    await upgrade_async(url)
    scratch_engine = settings.replaced(database_url=url).database.create_engine()
    try:
        yield scratch_engine
    finally:
        await scratch_engine.dispose()
        await drop_database_async(url)


async def test_every_kind_of_damage_is_reported_on_its_own_line(scratch: AsyncEngine) -> None:
    sessions = session_maker(scratch)
    async with sessions() as session:
        alice, alice_wallet = await sign_in(session, Identity(email="alice@example.com"), "NGN")
        _, bob_wallet = await sign_in(session, Identity(email="bob@example.com"), "NGN")
    await fund(scratch, alice_wallet.id, 1_000)
    async with sessions() as session:
        ledger = LedgerService(session)
        await accept_transfer(
            session, actor="test:sender", sender_user_id=alice.id, recipient_wallet_number=bob_wallet.number, amount=300
        )
        await settle_pending(session, batch_size=10)
        assert (await check_ledger(session)).violations == []

        # A credit journal with no successful deposit behind it: money created.
        assert await ledger.credit_deposit(
            actor="test:paystack", wallet_id=bob_wallet.id, amount=50, reference="dep_ghost"
        )
        # A successful deposit that was never credited.
        await session.execute(
            insert(m.Deposit).values(reference="dep_lost", wallet_id=alice_wallet.id, amount=70, status="success")
        )
        # A pending transfer whose money never reached the in-flight account.
        await session.execute(
            insert(m.Transfer).values(
                reference="trf_phantom",
                sender_wallet_id=alice_wallet.id,
                recipient_wallet_id=bob_wallet.id,
                amount=20,
                status="pending",
            )
        )
        # An unbalanced journal (of a kind the service writes, or the database would refuse it), settling nothing.
        journal = await session.scalar(
            insert(m.LedgerJournal).values(kind="settlement", reference="stl_bent").returning(m.LedgerJournal.id)
        )
        await session.execute(insert(m.LedgerEntry).values(journal_id=journal, account_id=1, amount=5))
        await session.execute(text("UPDATE wallets SET balance = balance + 9 WHERE id = :id"), {"id": alice_wallet.id})
        await session.commit()
        report = await check_ledger(session)

    lines = report.violations
    assert not report.ok
    assert any("deposit dep_ghost" in line and "without a successful deposit" in line for line in lines)
    assert any("deposit dep_lost" in line and "never credited" in line for line in lines)
    assert any("transfers_in_flight" in line and "pending transfers add up to" in line for line in lines)
    assert any("transfer trf_phantom" in line and "no acceptance journal" in line for line in lines)
    assert any("journal settlement:stl_bent is unbalanced" in line for line in lines)
    assert any("journal settlement:stl_bent settles no transfer" in line for line in lines)
    assert any("entries do not sum to zero" in line for line in lines)
    assert any(alice_wallet.number in line and "cached balance" in line for line in lines)
    assert report.summary().startswith("ledger check FAILED")


async def test_refund_damage_is_named_a_journal_unrecorded_an_uncovered_refund_unflagged_a_partial_marked_refunded(
    scratch: AsyncEngine,
) -> None:
    sessions = session_maker(scratch)
    async with sessions() as session:
        _, wallet = await sign_in(session, Identity(email="refunds@example.com"), "NGN")
        deposit_id = await session.scalar(
            insert(m.Deposit)
            .values(reference="dep_refunded", wallet_id=wallet.id, amount=1_000, status="success")
            .returning(m.Deposit.id)
        )
        ledger = LedgerService(session)
        await ledger.credit_deposit(actor="test", wallet_id=wallet.id, amount=1_000, reference="dep_refunded")
        # Taken back from the wallet with no refund recorded: money left with nothing to say why.
        assert await ledger.debit_refund(wallet_id=wallet.id, amount=300, refund_reference="rf_unrecorded", actor="t")
        # Recorded as not taken back, with no review item for an operator.
        await session.execute(
            insert(m.DepositRefund).values(
                deposit_id=deposit_id, refund_reference="rf_silent", amount=200, currency="NGN", outcome="uncovered"
            )
        )
        # Marked `refunded` though only 700 of its 1,000 went back.
        journal = await ledger.debit_refund(wallet_id=wallet.id, amount=700, refund_reference="rf_full", actor="t")
        await session.execute(
            insert(m.DepositRefund).values(
                deposit_id=deposit_id,
                refund_reference="rf_full",
                amount=700,
                currency="NGN",
                outcome="debited",
                journal_id=journal,
            )
        )
        await session.execute(text("UPDATE deposits SET status = 'refunded' WHERE id = :id"), {"id": deposit_id})
        await session.commit()
        lines = (await check_ledger(session)).violations

    assert any("refund rf_unrecorded: refund journal without a recorded refund" in line for line in lines), lines
    assert any("refund rf_silent: not taken back and not flagged for review" in line for line in lines), lines
    assert any("deposit dep_refunded (refunded, 1000): 700 refunded" in line for line in lines), lines
    assert any("account paystack holds 0 but its records say -300" in line for line in lines), lines


async def test_withdrawal_damage_is_named_a_success_never_paid_a_pending_one_returned_and_a_payout_of_nothing(
    scratch: AsyncEngine,
) -> None:
    sessions = session_maker(scratch)
    bank = Bank(name="Guaranty Trust Bank", code="058", currency="NGN")
    async with sessions() as session:
        _, wallet = await sign_in(session, Identity(email="payouts@example.com"), "NGN")
        await session.commit()
        await fund(scratch, wallet.id, 10_000)
        for reference in ("wd-unpaid", "wd-returned-early", "wd-honest"):
            order = PayoutOrder(amount=1_000, bank=bank, account_number="0123456789", account_name="ADA")
            await reserve_withdrawal(
                session, wallet_id=wallet.id, order=order, reference=reference, actor="t", daily_limit=0
            )
        ledger = LedgerService(session)
        # Marked paid out, but its money never left the in-flight account.
        await session.execute(text("UPDATE withdrawals SET status = 'success' WHERE reference = 'wd-unpaid'"))
        # Given back while still pending: the wallet has its money and the transfer may still pay.
        await ledger.return_withdrawal(
            wallet_id=wallet.id, amount=1_000, reference="wd-returned-early", after_payout=False, actor="t"
        )
        # Paid out for a withdrawal nobody asked for.
        await ledger.complete_withdrawal(amount=500, reference="wd-ghost", actor="t")
        # An honest failure, through the one path that fails a withdrawal: returned once, reported once.
        await WithdrawalStates(session).apply_event("wd-honest", WithdrawalEvent.FAILED, reason="account closed")
        await session.commit()
        lines = (await check_ledger(session)).violations

    assert any("withdrawal wd-unpaid (success, 1000): no payout journal" in line for line in lines), lines
    assert any("withdrawal wd-returned-early (pending, 1000): a return journal" in line for line in lines), lines
    assert any("journal payout:wd-ghost belongs to no withdrawal" in line for line in lines), lines
    assert any(line.startswith("account withdrawals_in_flight holds") for line in lines), lines
    assert not any("wd-honest" in line for line in lines), lines


async def test_a_balanced_journal_of_an_unknown_kind_that_creates_money_is_refused_and_named_by_the_check(
    scratch: AsyncEngine,
) -> None:
    sessions = session_maker(scratch)
    async with sessions() as session:
        _, wallet = await sign_in(session, Identity(email="mallory@example.com"), "NGN")
    await fund(scratch, wallet.id, 1_000)

    # The database refuses a journal of a kind the service never writes...
    async with sessions() as session:
        with pytest.raises(IntegrityError, match="kind_known"):
            await session.execute(insert(m.LedgerJournal).values(kind="adjustment", reference="adj_refused"))
        await session.rollback()

    # ...and where that guard is gone (an older schema, a superuser's hand), the check still names it: a balanced
    # `adjustment` (paystack -X, the wallet +X, its cached balance raised to match) creates money.
    async with sessions() as session:
        await session.execute(text("ALTER TABLE ledger_journals DROP CONSTRAINT ck_ledger_journals_kind_known"))
        paystack = await session.scalar(select(m.LedgerAccount.id).where(m.LedgerAccount.code == "paystack"))
        journal = await session.scalar(
            insert(m.LedgerJournal).values(kind="adjustment", reference="adj_created").returning(m.LedgerJournal.id)
        )
        await session.execute(
            insert(m.LedgerEntry),
            [
                {"journal_id": journal, "account_id": paystack, "amount": -5_000},
                {"journal_id": journal, "account_id": wallet.ledger_account_id, "amount": 5_000},
            ],
        )
        await session.execute(text("UPDATE wallets SET balance = balance + 5000 WHERE id = :id"), {"id": wallet.id})
        await session.commit()

    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", "ledger", "check"],
        env=service_env(DATABASE_URL=scratch.url.render_as_string(hide_password=False)),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "VIOLATION: journal adjustment:adj_created is of a kind the service never writes" in result.stdout
    assert "VIOLATION: account paystack holds -6000 but its records say -1000" in result.stdout
