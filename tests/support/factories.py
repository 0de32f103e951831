"""Small factories for the states tests start from: funded wallets, pending deposits, stored events.

Each records what really happens in the service: `fund` is a successful deposit and its one credit journal,
written by `LedgerService.credit_deposit` and committed together, so `wallet ledger check` stays green however
many wallets a test funds.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db import models as m
from app.domain.auth.users import Identity, UserService
from app.domain.payments.inbox import ReceivedEvent, store_events
from app.domain.wallets import ledger
from app.domain.wallets.ledger import AcceptedTransfer, LedgerService
from app.lib.db import session_maker
from app.lib.uow import UnitOfWork

if TYPE_CHECKING:
    from uuid import UUID

T = TypeVar("T")


async def record_successful_deposit(session: AsyncSession, wallet_id: UUID, amount: int, reference: str) -> None:
    """Insert the `deposits` row of a successful deposit (no commit): what a credit journal must match."""
    await session.execute(
        insert(m.Deposit).values(
            reference=reference,
            wallet_id=wallet_id,
            amount=amount,
            currency="NGN",
            status=m.DepositStatus.SUCCESS,
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


async def pending_deposit(
    engine: AsyncEngine, wallet_id: UUID, amount: int, *, reference: str | None = None, access_code: str | None = "ac"
) -> str:
    """A deposit initialised and waiting for Paystack's word; returns its reference."""
    reference = reference or f"dep-{uuid.uuid4().hex}"
    async with engine.begin() as connection:
        await connection.execute(
            insert(m.Deposit).values(
                reference=reference,
                wallet_id=wallet_id,
                amount=amount,
                currency="NGN",
                status=m.DepositStatus.PENDING,
                access_code=access_code,
            )
        )
    return reference


async def stored_event(engine: AsyncEngine, body: bytes) -> ReceivedEvent:
    """A verified Paystack event stored in the inbox (once), as the webhook endpoint stores it."""

    async def run(uow: UnitOfWork) -> ReceivedEvent:
        [received] = await uow.run_statement(lambda connection: store_events(connection, [body]))
        return received

    return await _in_unit_of_work(engine, run)


async def _in_unit_of_work(
    engine_or_session: AsyncEngine | AsyncSession, body: Callable[[UnitOfWork], Awaitable[T]]
) -> T:
    if isinstance(engine_or_session, AsyncSession):
        return await body(UnitOfWork(engine_or_session))
    async with session_maker(engine_or_session)() as session:
        return await body(UnitOfWork(session))


async def sign_in(
    engine_or_session: AsyncEngine | AsyncSession, identity: Identity, currency: str = "NGN"
) -> tuple[m.User, m.Wallet]:
    """The user and wallet of an identity, as sign-in makes them (one unit of work)."""

    async def run(uow: UnitOfWork) -> tuple[m.User, m.Wallet]:
        return await uow.run(lambda: UserService(session=uow.session).sign_in(identity, currency))

    return await _in_unit_of_work(engine_or_session, run)


async def accept_transfer(
    engine_or_session: AsyncEngine | AsyncSession,
    *,
    sender_user_id: UUID,
    recipient_wallet_number: str,
    amount: int,
    actor: str = "test:sender",
) -> AcceptedTransfer:
    """A transfer accepted exactly as the API accepts it (one unit of work), without asking for settlement."""

    async def run(uow: UnitOfWork) -> AcceptedTransfer:
        return await uow.run_statement(
            lambda connection: ledger.accept_transfer(
                connection,
                sender_user_id=sender_user_id,
                recipient_wallet_number=recipient_wallet_number,
                amount=amount,
                actor=actor,
                reference=ledger.new_transfer_reference(),
            )
        )

    return await _in_unit_of_work(engine_or_session, run)


async def settle_pending(engine_or_session: AsyncEngine | AsyncSession, *, batch_size: int = 500) -> int:
    """Settle everything pending in the test's own process, batch by batch as a settlement run does."""

    async def run(uow: UnitOfWork) -> int:
        settled = 0
        while batch := await uow.run(lambda: LedgerService(uow.session).settle_batch(batch_size=batch_size)):
            settled += len(batch.references)
        return settled

    return await _in_unit_of_work(engine_or_session, run)


async def transfer_status(engine_or_session: AsyncEngine | AsyncSession, reference: str) -> str | None:
    """A transfer's status as the service reads it."""

    async def run(uow: UnitOfWork) -> str | None:
        return await uow.run_statement(lambda connection: ledger.transfer_status(connection, reference))

    return await _in_unit_of_work(engine_or_session, run)
