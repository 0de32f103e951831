"""Paying a withdrawal out (the worker side): one step forward each time `advance` runs, safe to run any
number of times, concurrently, after any crash.

A `pending` withdrawal gets its Paystack transfer recipient (created once per user, bank and account, then
reused) and its transfer, initiated with OUR reference. Before `POST /transfer` the attempt is counted in its
own commit (`initiations`): from then on Paystack may hold the transfer even if its answer never arrives (a
timeout, a 5xx, this worker killed), so every later run first asks Paystack for that reference, and only a
transfer Paystack does not know (404) is initiated again, or refunded. A refusal is checked the same way before
the money goes back: nothing is ever refunded on a guess. A `processing` withdrawal (accepted, no outcome yet) is
verified by reference. Every answer is applied through `withdrawal_states.WithdrawalStates`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app.db import models as m
from app.domain.payments.paystack import PaystackError, PaystackNotFound, TransferReport
from app.domain.withdrawals.withdrawal_states import WithdrawalEvent, WithdrawalStates
from app.lib.tasks import TaskName, enqueue

if TYPE_CHECKING:
    from uuid import UUID

    from redis.asyncio import Redis

    from app.config import MoneySettings
    from app.domain.payments.paystack import PaystackClient
    from app.lib.uow import UnitOfWork

logger = logging.getLogger(__name__)

STALE_BATCH_SIZE: Final = 100


@dataclass(frozen=True)
class _Payout:
    reference: str
    user_id: UUID
    amount: int
    currency: str
    bank_code: str
    account_number: str
    account_name: str
    narration: str | None
    status: m.WithdrawalStatus
    initiations: int


class Payouts:
    """Moves withdrawals forward with Paystack, in the transactions of `uow`."""

    def __init__(self, uow: UnitOfWork, paystack: PaystackClient) -> None:
        self.uow = uow
        self.paystack = paystack

    async def advance(self, reference: str) -> str:
        """Take the withdrawal one step forward; its status afterwards (`missing` for an unknown reference).

        Raises:
            PaystackError: Paystack failed or did not answer, so the step's outcome is unknown: run again later
                (the next run asks Paystack first).
        """
        payout = await self.uow.read(lambda: self._load(reference))
        if payout is None:
            logger.error("payout of unknown withdrawal %s", reference)
            return "missing"
        if payout.status is m.WithdrawalStatus.PROCESSING:
            await self._verify_accepted(payout)
        elif payout.status is m.WithdrawalStatus.PENDING:
            await self._initiate(payout)
        return await self._status(reference)

    async def _initiate(self, payout: _Payout) -> None:
        if payout.initiations > 0 and await self._adopt_known_transfer(payout):
            return
        recipient_code = await self._recipient(payout)
        if recipient_code is None:
            return
        if not await self.uow.run(lambda: self._count_initiation(payout, recipient_code)):
            logger.info("withdrawal %s: another worker is initiating it", payout.reference)
            return
        try:
            report = await self.paystack.initiate_transfer(
                amount=payout.amount,
                recipient_code=recipient_code,
                reference=payout.reference,
                currency=payout.currency,
                reason=payout.narration,
            )
        except PaystackError as exc:
            if not exc.refused:
                logger.warning(
                    "withdrawal %s: initiation's outcome unknown (%s); Paystack is asked first next",
                    payout.reference,
                    exc,
                )
                raise
            # Refused, but a refusal can be "reference already used" by an attempt whose answer was lost.
            if await self._adopt_known_transfer(payout):
                return
            await self._fail(payout, f"Paystack refused the transfer: {exc.message}")
            return
        await self._apply(report)

    async def _adopt_known_transfer(self, payout: _Payout) -> bool:
        """Apply what Paystack knows of this reference; False when it knows no such transfer (404)."""
        try:
            report = await self.paystack.verify_transfer(payout.reference)
        except PaystackNotFound:
            return False
        logger.info("withdrawal %s: Paystack holds its transfer (%s)", payout.reference, report.status)
        await self._apply(report)
        return True

    async def _verify_accepted(self, payout: _Payout) -> None:
        try:
            report = await self.paystack.verify_transfer(payout.reference)
        except PaystackNotFound:
            await self.uow.run(
                lambda: WithdrawalStates(self.uow.session).flag_unknown(payout.reference, "verification")
            )
            return
        await self._apply(report)

    async def _recipient(self, payout: _Payout) -> str | None:
        """The recipient's code, created at Paystack on first use; None when Paystack refused the account (the
        withdrawal is failed and its money returned: no transfer exists, Paystack said so or was never asked)."""
        known = await self.uow.read(lambda: self._known_recipient(payout))
        if known is not None:
            return known
        try:
            code = await self.paystack.create_recipient(
                name=payout.account_name,
                account_number=payout.account_number,
                bank_code=payout.bank_code,
                currency=payout.currency,
            )
        except PaystackError as exc:
            if not exc.refused:
                raise
            await self._fail(payout, f"Paystack refused the bank account as a transfer recipient: {exc.message}")
            return None
        return await self.uow.run(lambda: self._remember_recipient(payout, code))

    async def _known_recipient(self, payout: _Payout) -> str | None:
        code: str | None = await self.uow.session.scalar(
            select(m.TransferRecipient.recipient_code).where(
                m.TransferRecipient.user_id == payout.user_id,
                m.TransferRecipient.bank_code == payout.bank_code,
                m.TransferRecipient.account_number == payout.account_number,
            )
        )
        return code

    async def _remember_recipient(self, payout: _Payout, code: str) -> str:
        await self.uow.session.execute(
            pg_insert(m.TransferRecipient)
            .values(
                user_id=payout.user_id,
                bank_code=payout.bank_code,
                account_number=payout.account_number,
                recipient_code=code,
            )
            .on_conflict_do_nothing(index_elements=["user_id", "bank_code", "account_number"])
        )
        return await self._known_recipient(payout) or code

    async def _count_initiation(self, payout: _Payout, recipient_code: str) -> bool:
        """Count the attempt before sending it; False when another run did so since this one looked."""
        counted = await self.uow.session.scalar(
            update(m.Withdrawal)
            .where(
                m.Withdrawal.reference == payout.reference,
                m.Withdrawal.status == m.WithdrawalStatus.PENDING.value,
                m.Withdrawal.initiations == payout.initiations,
            )
            .values(
                initiations=m.Withdrawal.initiations + 1,
                recipient_code=recipient_code,
                updated_at=datetime.now(UTC),
            )
            .returning(m.Withdrawal.id)
            .execution_options(synchronize_session=False)
        )
        return counted is not None

    async def _apply(self, report: TransferReport) -> None:
        await self.uow.run(lambda: WithdrawalStates(self.uow.session).apply_report(report))

    async def _fail(self, payout: _Payout, reason: str) -> None:
        logger.warning("withdrawal %s failed: %s", payout.reference, reason)
        await self.uow.run(
            lambda: WithdrawalStates(self.uow.session).apply_event(
                payout.reference, WithdrawalEvent.FAILED, reason=reason
            )
        )

    async def _load(self, reference: str) -> _Payout | None:
        row = (
            await self.uow.session.execute(
                select(m.Withdrawal, m.Wallet.user_id)
                .join(m.Wallet, m.Wallet.id == m.Withdrawal.wallet_id)
                .where(m.Withdrawal.reference == reference)
            )
        ).one_or_none()
        if row is None:
            return None
        withdrawal, user_id = row
        return _Payout(
            reference=withdrawal.reference,
            user_id=user_id,
            amount=withdrawal.amount,
            currency=withdrawal.currency,
            bank_code=withdrawal.bank_code,
            account_number=withdrawal.account_number,
            account_name=withdrawal.account_name,
            narration=withdrawal.narration,
            status=m.WithdrawalStatus(withdrawal.status),
            initiations=withdrawal.initiations,
        )

    async def _status(self, reference: str) -> str:
        status: str | None = await self.uow.read(
            lambda: self.uow.session.scalar(select(m.Withdrawal.status).where(m.Withdrawal.reference == reference))
        )
        return status or "missing"


async def claim_stale_withdrawals(uow: UnitOfWork, money: MoneySettings) -> list[str]:
    """Withdrawals with no outcome, untouched for `WITHDRAWAL_CHECK_AFTER_SECONDS`, oldest first.

    Each is touched as it is claimed, so the next sweep leaves it to the task about to be sent for as long again;
    `SKIP LOCKED` leaves the ones a worker is applying news to right now alone.
    """
    now = datetime.now(UTC)
    cutoff = now - timedelta(seconds=money.withdrawal_check_after_seconds)

    async def claim() -> list[str]:
        rows = (
            await uow.session.execute(
                select(m.Withdrawal.id, m.Withdrawal.reference)
                .where(
                    m.Withdrawal.status.in_([m.WithdrawalStatus.PENDING.value, m.WithdrawalStatus.PROCESSING.value]),
                    m.Withdrawal.updated_at < cutoff,
                )
                .order_by(m.Withdrawal.updated_at)
                .limit(STALE_BATCH_SIZE)
                .with_for_update(skip_locked=True)
            )
        ).all()
        if rows:
            await uow.session.execute(
                update(m.Withdrawal)
                .where(m.Withdrawal.id.in_([row.id for row in rows]))
                .values(updated_at=now)
                .execution_options(synchronize_session=False)
            )
        return [row.reference for row in rows]

    return await uow.run(claim)


async def request_stale_payouts(uow: UnitOfWork, money: MoneySettings, redis: Redis) -> int:
    """Beat: send the payout task again for every withdrawal with no outcome after a while (a lost task, a
    crash, a webhook that never came); the task asks Paystack before doing anything twice."""
    references = await claim_stale_withdrawals(uow, money)
    for reference in references:
        await enqueue(redis, TaskName.PAY_OUT, reference)
    if references:
        logger.warning("looking again at %d withdrawals with no outcome", len(references))
    return len(references)
