"""What Paystack reports after a deposit was credited: refunds take the money back once each, disputes are
flagged. Both under the deposit's row lock, in the caller's transaction (the caller commits).

A refund is identified by Paystack's `refund_reference`: its `deposit_refunds` row (unique) records what it
did, so a redelivery, or the same event applied twice at once, finds the row and moves nothing. The money
goes back only if the wallet still holds it and the refunds stay within what the deposit credited; otherwise
nothing moves and an operator decides (`wallet review`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app.db import models as m
from app.domain.payments.deposit_states import DepositEvent, DepositOutcome, DepositStates
from app.domain.review.service import flag_for_review
from app.domain.wallets.ledger import LedgerService
from app.domain.webhooks.outbox import record_selected, transaction_item_sql

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.config import MoneySettings
    from app.domain.payments.paystack import RefundReport

logger = logging.getLogger(__name__)


_DEPOSIT_REFUNDED = (
    "SELECT w.user_id, 'deposit.refunded', CAST(:refund AS text), "  # noqa: S608 - constant fragments only
    + transaction_item_sql(
        reference="d.reference",
        kind="'deposit'",
        amount="d.amount",
        status="d.status",
        counterparty="NULL",
        created_at="d.created_at",
    )
    + " || jsonb_build_object('refund', jsonb_build_object('reference', CAST(:refund AS text), "
    "'amount', CAST(:amount AS bigint))) FROM deposits d JOIN wallets w ON w.id = d.wallet_id "
    "WHERE d.reference = :reference"
)
"""The deposit as `GET /wallet/transactions` now shows it (`refunded` once refunded in full), and the refund."""


class DepositRefunds:
    def __init__(self, session: AsyncSession, money: MoneySettings) -> None:
        self.session = session
        self.money = money

    async def apply_refund(self, report: RefundReport) -> DepositOutcome:
        """Take a processed refund back out of the deposit's wallet, exactly once per refund reference."""
        deposit = await self.session.scalar(
            select(m.Deposit).where(m.Deposit.reference == report.deposit_reference).with_for_update()
        )
        if deposit is None:
            logger.info(
                "Paystack refund %s of unknown reference %s, ignored", report.refund_reference, report.deposit_reference
            )
            return DepositOutcome.UNKNOWN_REFERENCE
        known = await self.session.scalar(
            select(m.DepositRefund.id).where(m.DepositRefund.refund_reference == report.refund_reference)
        )
        if known is not None:
            return DepositOutcome.UNCHANGED
        refunded_before = await self._debited(deposit)
        problem = self._cannot_take_back(deposit, report, refunded_before)
        journal_id = None
        if problem is None:
            journal_id = await LedgerService(self.session).debit_refund(
                wallet_id=deposit.wallet_id,
                amount=report.amount,
                refund_reference=report.refund_reference,
                actor="paystack:webhook",
            )
            if journal_id is None:
                problem = "the wallet no longer holds that much"
        await self.session.execute(
            pg_insert(m.DepositRefund).values(
                deposit_id=deposit.id,
                refund_reference=report.refund_reference,
                amount=report.amount,
                currency=report.currency,
                outcome=(m.RefundOutcome.DEBITED if journal_id is not None else m.RefundOutcome.UNCOVERED).value,
                journal_id=journal_id,
            )
        )
        if problem is not None:
            await flag_for_review(
                self.session,
                kind=m.ReviewKind.REFUND_UNCOVERED,
                reference=deposit.reference,
                source=report.refund_reference,
                reason=(
                    f"Paystack refunded {report.amount} {report.currency} of deposit {deposit.reference} "
                    f"(refund {report.refund_reference}), but {problem}: nothing was taken back"
                ),
                details={"refund_reference": report.refund_reference, "amount": report.amount},
            )
            return DepositOutcome.REVIEW
        logger.info(
            "deposit %s: refund %s of %d taken back from the wallet",
            deposit.reference,
            report.refund_reference,
            report.amount,
        )
        if refunded_before + report.amount >= deposit.amount:
            await DepositStates(self.session, self.money).apply_event(deposit.reference, DepositEvent.REFUNDED_IN_FULL)
        await record_selected(
            self.session,
            _DEPOSIT_REFUNDED,
            {"reference": deposit.reference, "refund": report.refund_reference, "amount": report.amount},
        )
        return DepositOutcome.MOVED

    async def flag_dispute(self, deposit_reference: str, dispute_id: str) -> DepositOutcome:
        """A customer disputes the payment: flag the deposit for an operator, move nothing."""
        deposit = await self.session.scalar(select(m.Deposit).where(m.Deposit.reference == deposit_reference))
        if deposit is None:
            return DepositOutcome.UNKNOWN_REFERENCE
        await flag_for_review(
            self.session,
            kind=m.ReviewKind.DISPUTE,
            reference=deposit.reference,
            source=dispute_id,
            reason=(
                f"a customer disputes deposit {deposit.reference} ({deposit.amount} {deposit.currency}; Paystack "
                f"dispute {dispute_id}): answer it on Paystack's dashboard; nothing moved here"
            ),
        )
        return DepositOutcome.REVIEW

    async def _debited(self, deposit: m.Deposit) -> int:
        total = await self.session.scalar(
            select(func.coalesce(func.sum(m.DepositRefund.amount), 0)).where(
                m.DepositRefund.deposit_id == deposit.id,
                m.DepositRefund.outcome == m.RefundOutcome.DEBITED.value,
            )
        )
        return int(total or 0)

    @staticmethod
    def _cannot_take_back(deposit: m.Deposit, report: RefundReport, refunded_before: int) -> str | None:
        if deposit.status not in {m.DepositStatus.SUCCESS, m.DepositStatus.REFUNDED}:
            return f"the deposit was never credited (it is {deposit.status})"
        if report.currency != deposit.currency.upper():
            return f"the deposit was in {deposit.currency}"
        if refunded_before + report.amount > deposit.amount:
            return f"refunds would exceed the {deposit.amount} credited ({refunded_before} refunded before)"
        return None
