"""A deposit's state machine: its transitions written once, `(status, event) -> (new status, credit?, review?)`,
and the ONE code that applies them (`DepositStates`), so the only code that credits a deposit.

Every path that learns something about a payment (a webhook, a verification, a failed initialisation) goes
through `DepositStates.apply_report` or `apply_event`, under the deposit's row lock. A pair that is not in the
table moves nothing: stale or repeated news about a deposit that has moved on.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from app.db import models as m
from app.db.models import DepositStatus, ReviewKind
from app.domain.payments.paystack import NotFoundReport, PaymentReport, ReportSource, TransactionStatus
from app.domain.review.service import flag_for_review
from app.domain.wallets.ledger import LedgerService

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.config import MoneySettings
    from app.db.models import Deposit

logger = logging.getLogger(__name__)


class DepositEvent(enum.StrEnum):
    PAID = "paid"
    """Paystack took exactly the amount and currency that were initialised."""
    PAID_OTHER_AMOUNT = "paid_other_amount"
    """Paystack reports a success of another amount or currency."""
    DECLINED = "declined"
    """Paystack reports the payment failed."""
    REVERSED = "reversed"
    """Paystack took the payment back."""
    ABANDONED = "abandoned"
    """The customer walked away, and `DEPOSIT_ABANDONED_FINAL_HOURS` have passed."""
    UNKNOWN_TO_PAYSTACK = "unknown_to_paystack"
    """Paystack has no transaction with our reference, and no initialisation can still be under way."""
    NOT_STARTED = "not_started"
    """Paystack refused or failed the initialisation: the customer never got a checkout page."""
    REFUNDED_IN_FULL = "refunded_in_full"
    """Paystack's refunds of the deposit, taken back out of the wallet, now add up to its whole amount."""


@dataclass(frozen=True)
class Transition:
    status: DepositStatus
    credit: bool = False
    """The wallet is credited (exactly once: the ledger's deposit journal is unique per reference)."""
    review: ReviewKind | None = None
    """The deposit is held and flagged for an operator."""


_S = DepositStatus
_E = DepositEvent
TRANSITIONS: dict[tuple[DepositStatus, DepositEvent], Transition] = {
    (_S.PENDING, _E.PAID): Transition(_S.SUCCESS, credit=True),
    (_S.PENDING, _E.PAID_OTHER_AMOUNT): Transition(_S.PENDING, review=ReviewKind.PAYMENT_MISMATCH),
    (_S.PENDING, _E.DECLINED): Transition(_S.FAILED),
    (_S.PENDING, _E.REVERSED): Transition(_S.REVERSED),
    (_S.PENDING, _E.ABANDONED): Transition(_S.ABANDONED),
    (_S.PENDING, _E.UNKNOWN_TO_PAYSTACK): Transition(_S.FAILED),
    (_S.PENDING, _E.NOT_STARTED): Transition(_S.FAILED),
    # The customer paid after we gave up on them: it is their money and the amount matches.
    (_S.FAILED, _E.PAID): Transition(_S.SUCCESS, credit=True),
    (_S.ABANDONED, _E.PAID): Transition(_S.SUCCESS, credit=True),
    # Paystack retries webhooks for days: a success after a reversal is stale news about money that went back.
    (_S.REVERSED, _E.PAID): Transition(_S.REVERSED, review=ReviewKind.SUCCESS_AFTER_REVERSAL),
    (_S.FAILED, _E.PAID_OTHER_AMOUNT): Transition(_S.FAILED, review=ReviewKind.PAYMENT_MISMATCH),
    (_S.ABANDONED, _E.PAID_OTHER_AMOUNT): Transition(_S.ABANDONED, review=ReviewKind.PAYMENT_MISMATCH),
    (_S.REVERSED, _E.PAID_OTHER_AMOUNT): Transition(_S.REVERSED, review=ReviewKind.PAYMENT_MISMATCH),
    # The refunds themselves move money in `refunds.py` (each once); this is only the status they lead to.
    (_S.SUCCESS, _E.REFUNDED_IN_FULL): Transition(_S.REFUNDED),
}


def event_of(
    deposit: Deposit, report: PaymentReport | NotFoundReport, money: MoneySettings, now: datetime
) -> DepositEvent | None:
    """What Paystack's report means for this deposit; None when it is no news (still in progress)."""
    age = now - deposit.created_at
    if isinstance(report, NotFoundReport):
        # Final only once no initialisation can still be under way: no checkout URL and older than the verify
        # delay (its request died), or any deposit past the abandonment age.
        final = age >= timedelta(hours=money.deposit_abandoned_final_hours) or (
            deposit.access_code is None and age >= timedelta(seconds=money.deposit_verify_after_seconds)
        )
        return DepositEvent.UNKNOWN_TO_PAYSTACK if final else None
    match report.status:
        case TransactionStatus.SUCCESS:
            same = report.amount == deposit.amount and report.currency.upper() == deposit.currency.upper()
            return DepositEvent.PAID if same else DepositEvent.PAID_OTHER_AMOUNT
        case TransactionStatus.FAILED:
            return DepositEvent.DECLINED
        case TransactionStatus.REVERSED:
            return DepositEvent.REVERSED
        case TransactionStatus.ABANDONED if age >= timedelta(hours=money.deposit_abandoned_final_hours):
            # Until then the customer may still pay on the same checkout page.
            return DepositEvent.ABANDONED
        case _:
            return None


class DepositOutcome(enum.StrEnum):
    """What applying a report did."""

    CREDITED = "credited"
    MOVED = "moved"
    """The status changed; nothing was credited."""
    UNCHANGED = "unchanged"
    """No news, or news about a deposit that has moved on (an already credited one included)."""
    REVIEW = "review"
    UNKNOWN_REFERENCE = "unknown_reference"


class DepositStates:
    """Applies Paystack's reports to deposits, in the caller's transaction (the caller commits)."""

    def __init__(self, session: AsyncSession, money: MoneySettings) -> None:
        self.session = session
        self.money = money

    async def apply_report(self, report: PaymentReport | NotFoundReport) -> DepositOutcome:
        """Apply Paystack's word about a deposit, under the deposit's row lock. The caller commits.

        The deposit row is locked first (then the ledger locks the wallet), so a webhook and a verification
        racing on one reference serialise here and the second finds the deposit moved on.
        """
        deposit = await self._lock(report.reference)
        if deposit is None:
            logger.info("Paystack %s about unknown reference %s, ignored", report.source, report.reference)
            return DepositOutcome.UNKNOWN_REFERENCE
        now = datetime.now(UTC)
        changes: dict[str, Any] = {"updated_at": now}
        if isinstance(report, PaymentReport):
            changes["provider_data"] = report.data
        if report.source is ReportSource.VERIFICATION:
            changes["last_verified_at"] = now
        event = event_of(deposit, report, self.money, now)
        return await self._apply(deposit, event, report, changes)

    async def apply_event(self, reference: str, event: DepositEvent) -> DepositOutcome:
        """Apply an event the service itself observed (Paystack refused the initialisation). The caller commits."""
        deposit = await self._lock(reference)
        if deposit is None:
            return DepositOutcome.UNKNOWN_REFERENCE
        return await self._apply(deposit, event, None, {"updated_at": datetime.now(UTC)})

    async def _apply(
        self,
        deposit: m.Deposit,
        event: DepositEvent | None,
        report: PaymentReport | NotFoundReport | None,
        changes: dict[str, Any],
    ) -> DepositOutcome:
        transition = TRANSITIONS.get((m.DepositStatus(deposit.status), event)) if event is not None else None
        outcome = DepositOutcome.UNCHANGED
        if transition is not None:
            outcome = await self._take(deposit, event, transition, report, changes)  # type: ignore[arg-type]
        await self.session.execute(
            update(m.Deposit)
            .where(m.Deposit.id == deposit.id)
            .values(**changes)
            .execution_options(synchronize_session=False)
        )
        return outcome

    async def _take(
        self,
        deposit: m.Deposit,
        event: DepositEvent,
        transition: Transition,
        report: PaymentReport | NotFoundReport | None,
        changes: dict[str, Any],
    ) -> DepositOutcome:
        source = report.source.value if report is not None else "service"
        if transition.review is not None:
            reason = _review_reason(deposit, event, report)
            changes |= {"needs_review": True, "review_reason": reason}
            details = (
                {"reported_amount": report.amount, "reported_currency": report.currency}
                if isinstance(report, PaymentReport)
                else None
            )
            await flag_for_review(
                self.session, kind=transition.review, reference=deposit.reference, reason=reason, details=details
            )
        if transition.status != deposit.status:
            changes["status"] = transition.status
            logger.info(
                "deposit %s: %s -> %s (%s, %s)", deposit.reference, deposit.status, transition.status, event, source
            )
        if transition.credit:
            if deposit.status != m.DepositStatus.PENDING or deposit.needs_review:
                logger.warning(
                    "deposit %s (%s) succeeded late at Paystack; crediting it", deposit.reference, deposit.status
                )
            credited = await LedgerService(self.session).credit_deposit(
                wallet_id=deposit.wallet_id,
                amount=deposit.amount,
                reference=deposit.reference,
                actor=f"paystack:{source}",
            )
            if not credited:
                logger.error("deposit %s was %s but its credit journal exists", deposit.reference, deposit.status)
            paid_at = report.paid_at if isinstance(report, PaymentReport) else None
            changes["paid_at"] = paid_at or datetime.now(UTC)
            return DepositOutcome.CREDITED if credited else DepositOutcome.UNCHANGED
        if transition.review is not None:
            return DepositOutcome.REVIEW
        return DepositOutcome.MOVED if transition.status != deposit.status else DepositOutcome.UNCHANGED

    async def _lock(self, reference: str) -> m.Deposit | None:
        deposit: m.Deposit | None = await self.session.scalar(
            select(m.Deposit).where(m.Deposit.reference == reference).with_for_update()
        )
        return deposit


def _review_reason(deposit: m.Deposit, event: DepositEvent, report: PaymentReport | NotFoundReport | None) -> str:
    source = report.source.value if report is not None else "service"
    if event is DepositEvent.PAID_OTHER_AMOUNT and isinstance(report, PaymentReport):
        return (
            f"Paystack ({source}) reported {report.amount} {report.currency} paid, but the deposit was initialised "
            f"for {deposit.amount} {deposit.currency}; nothing was credited"
        )
    return f"Paystack ({source}) reported {event.value} after the deposit became {deposit.status}; nothing was credited"
