"""Property: any sequence of deposits, transfers, withdrawals, payout outcomes and refunds keeps every invariant.

Hypothesis draws operation sequences over fresh wallets and drives the services directly (the code the API, the
webhook worker and the payout worker run): deposits, transfers and their settlement, withdrawals reserved, Paystack's
outcomes for them in any order and any number of times (the same failure also delivered several times at once), and
refunds of deposits with refund references that repeat. After every step the ledger check must pass, no balance may
be negative, each wallet must hold exactly what a simple model of the contract says, and each withdrawal and deposit
must be in the status that model says (a deposit refunded in full is `refunded`). The model is written from the
contract (API.md: Withdrawals, Refunds), not from the service's transition table.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import models as m
from app.domain.payments.paystack import RefundReport, TransferReport, TransferStatus
from app.domain.payments.refunds import DepositRefunds
from app.domain.wallets.checks import check_ledger
from app.domain.withdrawals.schemas import Bank
from app.domain.withdrawals.service import PayoutOrder, new_withdrawal_reference, reserve_withdrawal
from app.domain.withdrawals.withdrawal_states import WithdrawalStates
from app.lib.db import session_maker
from app.lib.errors import InsufficientBalance, SelfTransfer
from tests.support.factories import accept_transfer, fund, settle_pending

WALLETS = 3
BANK = Bank(name="Guaranty Trust Bank", code="058", currency="NGN")
REFUND_POOL = 4
"""Refund references are drawn from a few per example, so the same refund arrives again (for any deposit)."""

wallet_index = st.integers(min_value=0, max_value=WALLETS - 1)
amount = st.integers(min_value=1, max_value=3_000)
pick = st.integers(min_value=0, max_value=11)
"""Which withdrawal or deposit a step is about: taken modulo how many there are so far."""
outcome = st.sampled_from(
    [TransferStatus.SUCCESS, TransferStatus.FAILED, TransferStatus.REVERSED, TransferStatus.PENDING]
)

withdraw_step = st.tuples(st.just("withdraw"), wallet_index, amount)
payout_step = st.tuples(st.just("payout"), wallet_index, amount, st.lists(outcome, min_size=1, max_size=4))
"""A withdrawal and then Paystack's answers about it, one after another, in the order drawn."""
outcome_step = st.tuples(st.just("outcome"), pick, outcome, st.integers(min_value=1, max_value=3))
outcome_at_once_step = st.tuples(
    st.just("outcome_at_once"),
    pick,
    st.sampled_from([TransferStatus.FAILED, TransferStatus.REVERSED]),
    st.integers(min_value=2, max_value=5),
)
# None: refund the whole deposit.
refund_step = st.tuples(
    st.just("refund"), pick, st.none() | amount, st.integers(min_value=0, max_value=REFUND_POOL - 1)
)
operations = st.one_of(
    st.tuples(st.just("fund"), wallet_index, amount),
    st.tuples(st.just("transfer"), wallet_index, wallet_index, amount),
    st.tuples(st.just("settle")),
    # Money out drawn more often than the rest: most sequences then pay out, answer and refund something.
    withdraw_step,
    payout_step,
    payout_step,
    outcome_step,
    outcome_step,
    outcome_at_once_step,
    refund_step,
    refund_step,
)
opening = st.lists(st.integers(min_value=1, max_value=6_000), min_size=WALLETS, max_size=WALLETS)
"""What each wallet is funded with first (deposits that can be refunded later), so money out has money."""


def _unfold(steps: list[tuple]) -> list[tuple]:
    """The steps one at a time: a `payout` is its withdrawal, then each answer about the latest withdrawal."""
    unfolded: list[tuple] = []
    for step in steps:
        if step[0] == "payout":
            _, who, value, statuses = step
            unfolded += [("withdraw", who, value), *(("outcome", -1, status, 1) for status in statuses)]
        else:
            unfolded.append(step)
    return unfolded


@dataclass
class ModelWithdrawal:
    wallet: int
    amount: int
    reference: str
    status: str = "pending"


@dataclass
class ModelDeposit:
    wallet: int
    amount: int
    reference: str
    refunded: int = 0


@dataclass
class Model:
    """What each wallet must hold and each withdrawal must be, by the contract alone."""

    balances: list[int] = field(default_factory=lambda: [0] * WALLETS)
    pending: dict[str, tuple[int, int]] = field(default_factory=dict)
    """reference → (recipient index, amount) of transfers not yet known to be settled."""
    withdrawals: list[ModelWithdrawal] = field(default_factory=list)
    deposits: list[ModelDeposit] = field(default_factory=list)
    refunds_seen: set[str] = field(default_factory=set)
    refund_prefix: str = field(default_factory=lambda: f"rfnd-{uuid.uuid4().hex[:12]}-")

    def report(self, withdrawal: ModelWithdrawal, status: TransferStatus) -> None:
        """Paystack's word about a withdrawal, as the contract says it lands."""
        current = withdrawal.status
        back = False
        if current in {"pending", "processing"}:
            if status is TransferStatus.SUCCESS:
                withdrawal.status = "success"
            elif status is TransferStatus.FAILED:
                withdrawal.status, back = "failed", True
            elif status is TransferStatus.REVERSED:
                withdrawal.status, back = "reversed", True
            elif current == "pending":
                withdrawal.status = "processing"
        elif current == "success" and status is TransferStatus.REVERSED:
            withdrawal.status, back = "reversed", True
        # Anything else is a repeat or a contradiction: nothing moves.
        if back:
            self.balances[withdrawal.wallet] += withdrawal.amount
        event(f"withdrawal {current} + {status.value} -> {withdrawal.status}{' (money back)' if back else ''}")

    def refund(self, deposit: ModelDeposit, value: int, refund_reference: str) -> None:
        if refund_reference in self.refunds_seen:
            event("refund repeated: nothing moves")
            return
        self.refunds_seen.add(refund_reference)
        if deposit.refunded + value > deposit.amount or self.balances[deposit.wallet] < value:
            event("refund uncovered or over the deposit: nothing moves")
            return
        deposit.refunded += value
        self.balances[deposit.wallet] -= value
        event("refund taken back" + (" in full" if deposit.refunded == deposit.amount else ""))


@dataclass
class Observed:
    balances: list[int]
    settled: set[str]
    withdrawal_statuses: dict[str, str]
    deposit_statuses: dict[str, str]


async def _accept(engine: AsyncEngine, sender, recipient, value: int) -> str | None:
    async with session_maker(engine)() as session:
        try:
            accepted = await accept_transfer(
                session,
                actor="test:sender",
                sender_user_id=sender.user_id,
                recipient_wallet_number=recipient.wallet_number,
                amount=value,
            )
        except (InsufficientBalance, SelfTransfer):
            return None
    return accepted.reference


async def _withdraw(engine: AsyncEngine, wallet_id, value: int) -> str | None:
    reference = new_withdrawal_reference()
    order = PayoutOrder(
        amount=value, bank=BANK, account_number=f"{uuid.uuid4().int % 10**10:010d}", account_name="ADA LOVELACE"
    )
    async with session_maker(engine)() as session:
        try:
            await reserve_withdrawal(
                session, wallet_id=wallet_id, order=order, reference=reference, actor="test:user", daily_limit=0
            )
        except InsufficientBalance:
            return None
        await session.commit()
    return reference


async def _report(engine: AsyncEngine, withdrawal: ModelWithdrawal, status: TransferStatus) -> None:
    report = TransferReport(
        reference=withdrawal.reference,
        status=status,
        amount=withdrawal.amount,
        currency="NGN",
        transfer_code=None,
        reason=None,
        data={},
        source="webhook",
    )
    async with session_maker(engine)() as session:
        await WithdrawalStates(session).apply_report(report)
        await session.commit()


async def _refund(engine: AsyncEngine, app_settings: Settings, deposit: ModelDeposit, value: int, ref: str) -> None:
    async with session_maker(engine)() as session:
        await DepositRefunds(session, app_settings.money).apply_refund(
            RefundReport(deposit_reference=deposit.reference, refund_reference=ref, amount=value, currency="NGN")
        )
        await session.commit()


async def _observe(engine: AsyncEngine, users, model: Model) -> Observed:
    """Balances, settled transfers, withdrawal and deposit statuses, read on one snapshot."""
    async with session_maker(engine)() as session:
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        rows = dict((await session.execute(select(m.Wallet.id, m.Wallet.balance))).tuples().all())
        settled = set(
            (
                await session.scalars(
                    select(m.Transfer.reference).where(
                        m.Transfer.reference.in_(list(model.pending)), m.Transfer.status == "success"
                    )
                )
            ).all()
        )
        withdrawals = dict(
            (
                await session.execute(
                    select(m.Withdrawal.reference, m.Withdrawal.status).where(
                        m.Withdrawal.reference.in_([w.reference for w in model.withdrawals])
                    )
                )
            )
            .tuples()
            .all()
        )
        deposits = dict(
            (
                await session.execute(
                    select(m.Deposit.reference, m.Deposit.status).where(
                        m.Deposit.reference.in_([d.reference for d in model.deposits])
                    )
                )
            )
            .tuples()
            .all()
        )
    return Observed(
        balances=[int(rows[user.wallet_id]) for user in users],
        settled=settled,
        withdrawal_statuses={reference: str(status) for reference, status in withdrawals.items()},
        deposit_statuses={reference: str(status) for reference, status in deposits.items()},
    )


async def _apply(engine: AsyncEngine, app_settings: Settings, users, model: Model, operation: tuple) -> None:
    kind = operation[0]
    if kind == "fund":
        _, who, value = operation
        reference = await fund(engine, users[who].wallet_id, value)
        model.balances[who] += value
        model.deposits.append(ModelDeposit(wallet=who, amount=value, reference=reference))
    elif kind == "transfer":
        _, sender, recipient, value = operation
        before = model.balances[sender]
        reference = await _accept(engine, users[sender], users[recipient], value)
        if sender == recipient or value > before:
            assert reference is None, "a self-transfer or an overdraft was accepted"
        else:
            assert reference is not None, "an affordable transfer was refused"
            model.balances[sender] -= value
            model.pending[reference] = (recipient, value)
    elif kind == "settle":
        async with session_maker(engine)() as session:
            await settle_pending(session, batch_size=7)
    elif kind == "withdraw":
        _, who, value = operation
        before = model.balances[who]
        reference = await _withdraw(engine, users[who].wallet_id, value)
        if value > before:
            assert reference is None, f"a withdrawal of {value} from a wallet holding {before} was reserved"
        else:
            assert reference is not None, f"an affordable withdrawal of {value} (wallet holds {before}) was refused"
            model.balances[who] -= value
            model.withdrawals.append(ModelWithdrawal(wallet=who, amount=value, reference=reference))
    elif kind == "outcome":
        _, index, status, times = operation
        if not model.withdrawals:
            return
        withdrawal = model.withdrawals[index % len(model.withdrawals)]
        for _ in range(times):
            await _report(engine, withdrawal, status)
            model.report(withdrawal, status)
    elif kind == "outcome_at_once":
        _, index, status, copies = operation
        if not model.withdrawals:
            return
        withdrawal = model.withdrawals[index % len(model.withdrawals)]
        await asyncio.gather(*(_report(engine, withdrawal, status) for _ in range(copies)))
        model.report(withdrawal, status)
    else:
        _, index, value, ref_index = operation
        if not model.deposits:
            return
        deposit = model.deposits[index % len(model.deposits)]
        value = deposit.amount if value is None else value
        refund_reference = f"{model.refund_prefix}{ref_index}"
        await _refund(engine, app_settings, deposit, value, refund_reference)
        model.refund(deposit, value, refund_reference)


@hypothesis_settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(
    # Every contradiction and the return after a payout, every run: a payout succeeds, a failure contradicts it,
    # a reversal returns it; a failure is contradicted by a success and a reversal; a reversal by a success and a
    # failure; the same failure five times at once; a full refund twice; a partial one twice; one past the
    # deposit (the wallet holds it); one the wallet cannot cover; an overdrawing withdrawal.
    opening=[5_000, 3_000, 1_000],
    steps=[
        (
            "payout",
            0,
            1_000,
            [TransferStatus.PENDING, TransferStatus.SUCCESS, TransferStatus.FAILED, TransferStatus.REVERSED],
        ),
        (
            "payout",
            1,
            2_000,
            [TransferStatus.FAILED, TransferStatus.SUCCESS, TransferStatus.REVERSED, TransferStatus.FAILED],
        ),
        ("withdraw", 2, 1_000),
        ("outcome_at_once", 2, TransferStatus.FAILED, 5),
        ("payout", 0, 4_000, [TransferStatus.REVERSED, TransferStatus.SUCCESS, TransferStatus.FAILED]),
        ("transfer", 2, 1, 500),
        ("settle",),
        ("refund", 0, None, 0),
        ("refund", 0, None, 0),
        ("refund", 1, 500, 1),
        ("refund", 1, 500, 1),
        ("refund", 1, 2_600, 2),
        ("refund", 2, 800, 3),
        ("withdraw", 2, 5_000),
    ],
)
@given(opening=opening, steps=st.lists(operations, min_size=1, max_size=12))
async def test_money_out_in_any_order_and_any_number_of_times_keeps_every_ledger_invariant_and_moves_money_once(
    engine: AsyncEngine, make_user, settings: Settings, opening: list[int], steps: list[tuple]
) -> None:
    users = [await make_user() for _ in range(WALLETS)]
    model = Model()
    funding = [("fund", who, value) for who, value in enumerate(opening)]
    for operation in [*funding, *_unfold(steps), ("settle",)]:
        await _apply(engine, settings, users, model, operation)
        observed = await _observe(engine, users, model)
        # Settlement may also come from the shared worker at any moment: credit what has settled.
        for reference in observed.settled:
            recipient, value = model.pending.pop(reference)
            model.balances[recipient] += value
        assert all(balance >= 0 for balance in observed.balances), f"after {operation}: {observed.balances}"
        assert observed.balances == model.balances, f"after {operation}: {observed.balances} != {model.balances}"
        expected_withdrawals = {w.reference: w.status for w in model.withdrawals}
        assert observed.withdrawal_statuses == expected_withdrawals, f"after {operation}"
        expected_deposits = {d.reference: "refunded" if d.refunded == d.amount else "success" for d in model.deposits}
        assert observed.deposit_statuses == expected_deposits, f"after {operation}"
        async with session_maker(engine)() as session:
            report = await check_ledger(session)
        assert report.violations == [], f"after {operation}"
    assert not model.pending, "the final settlement left transfers pending"
