"""Property: any sequence of funding, transfers, concurrent transfers and settlement keeps every invariant.

Hypothesis draws operation sequences over three fresh wallets and drives the ledger service directly (the
same code the API and the worker run); after every step the ledger check must pass, no balance may be
negative, and the wallets must hold exactly what a simple model of the operations says.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import models as m
from app.domain.wallets.checks import check_ledger
from app.lib.db import session_maker
from app.lib.errors import InsufficientBalance, SelfTransfer
from tests.support.factories import accept_transfer, fund, settle_pending

WALLETS = 3
wallet_index = st.integers(min_value=0, max_value=WALLETS - 1)
amount = st.integers(min_value=1, max_value=3_000)

operations = st.one_of(
    st.tuples(st.just("fund"), wallet_index, amount),
    st.tuples(st.just("transfer"), wallet_index, wallet_index, amount),
    st.tuples(st.just("burst"), wallet_index, st.lists(st.tuples(wallet_index, amount), min_size=2, max_size=5)),
    st.tuples(st.just("settle")),
)


@dataclass
class Model:
    """What each wallet must hold: settled money, plus what is still in flight towards it."""

    balances: list[int] = field(default_factory=lambda: [0] * WALLETS)
    pending: dict[str, tuple[int, int]] = field(default_factory=dict)
    """reference → (recipient index, amount) of transfers not yet known to be settled."""


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


async def _observe(engine: AsyncEngine, users, references: list[str]) -> tuple[list[int], set[str]]:
    """Balances and which of these transfers have settled, read on one snapshot."""
    async with session_maker(engine)() as session:
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        rows = dict((await session.execute(select(m.Wallet.id, m.Wallet.balance))).tuples().all())
        settled = set(
            (
                await session.scalars(
                    select(m.Transfer.reference).where(
                        m.Transfer.reference.in_(references), m.Transfer.status == "success"
                    )
                )
            ).all()
        )
    return [int(rows[user.wallet_id]) for user in users], settled


async def _apply(engine: AsyncEngine, users, model: Model, operation: tuple) -> None:
    kind = operation[0]
    if kind == "fund":
        _, who, value = operation
        await fund(engine, users[who].wallet_id, value)
        model.balances[who] += value
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
    elif kind == "burst":
        _, sender, orders = operation
        results = await asyncio.gather(
            *(_accept(engine, users[sender], users[recipient], value) for recipient, value in orders)
        )
        for (recipient, value), reference in zip(orders, results, strict=True):
            if reference is not None:
                assert recipient != sender
                model.balances[sender] -= value
                model.pending[reference] = (recipient, value)
        assert model.balances[sender] >= 0, "concurrent transfers overdrew the sender"
        for (recipient, value), reference in zip(orders, results, strict=True):
            if reference is None and recipient != sender:
                # Refused for want of money: even the final balance cannot cover it.
                assert value > model.balances[sender]
    else:
        async with session_maker(engine)() as session:
            await settle_pending(session, batch_size=7)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(operations, min_size=1, max_size=12))
async def test_random_operation_sequences_keep_every_ledger_invariant(engine: AsyncEngine, make_user, steps) -> None:
    users = [await make_user() for _ in range(WALLETS)]
    model = Model()
    for operation in [*steps, ("settle",)]:
        await _apply(engine, users, model, operation)
        actual, settled = await _observe(engine, users, list(model.pending))
        # Settlement may also come from the shared worker at any moment: credit what has settled.
        for reference in settled:
            recipient, value = model.pending.pop(reference)
            model.balances[recipient] += value
        assert all(balance >= 0 for balance in actual)
        assert actual == model.balances, f"after {operation}: {actual} != {model.balances}"
        async with session_maker(engine)() as session:
            report = await check_ledger(session)
        assert report.violations == [], f"after {operation}"
    assert not model.pending, "the final settlement left transfers pending"
