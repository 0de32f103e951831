"""A withdrawal's state machine: its transitions written once, `(status, event) -> (new status, movement,
review?)`, and the ONE code that applies them (`WithdrawalStates`), so the only code that completes a
withdrawal or gives its money back.

Everything the service learns about a payout (the initiation's answer, a verification, a `transfer.*` webhook,
a refusal) goes through `WithdrawalStates.apply_report` or `apply_event`, under the withdrawal's row lock. A pair
not in the table moves nothing: repeated news. A contradiction (a success after a failure) moves nothing and
is flagged for an operator. Each movement's journal is unique per withdrawal, so even a bug in this table could
not complete or return one twice. Each movement writes its event (`withdrawal.succeeded`, `withdrawal.failed`)
in the same transaction.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import select, update

from app.db import models as m
from app.db.models import EventType, ReviewKind, WithdrawalStatus
from app.domain.payments.paystack import TransferReport, TransferStatus
from app.domain.review.service import flag_for_review
from app.domain.wallets.ledger import LedgerService
from app.domain.webhooks.outbox import record_selected, withdrawal_item_sql
from app.lib.storable import storable_text

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

logger = logging.getLogger(__name__)

OTP_REASON: Final = (
    "Paystack asks for an OTP to finalise transfers on this account, so payouts cannot be automated: disable "
    "transfer OTP (Paystack dashboard: Settings > Preferences > Transfers, or POST /transfer/disable_otp), then "
    "withdraw again. The money is back in the wallet."
)
MAX_REASON_LENGTH: Final = 500


class WithdrawalEvent(enum.StrEnum):
    ACCEPTED = "accepted"
    """Paystack accepted the transfer (`pending`, `received`, `queued`, `processing`): no outcome yet."""
    PAID = "paid"
    """Paystack paid the bank account (`transfer.success`)."""
    FAILED = "failed"
    """The transfer failed, or Paystack refused it (its balance, the recipient, OTP): nothing left."""
    REVERSED = "reversed"
    """Paystack took the transfer back (`transfer.reversed`), before or after a success."""


class Movement(enum.StrEnum):
    COMPLETE = "complete"
    """`withdrawals_in_flight` -> `paystack`: the money left."""
    RETURN = "return"
    """`withdrawals_in_flight` -> wallet: it never left."""
    RETURN_AFTER_PAYOUT = "return_after_payout"
    """`paystack` -> wallet: it had left, and came back."""


@dataclass(frozen=True)
class Transition:
    status: WithdrawalStatus
    movement: Movement | None = None
    review: ReviewKind | None = None
    """The news contradicts what was applied: nothing moves, an operator looks."""


_S = WithdrawalStatus
_E = WithdrawalEvent
_CONTRADICTION = ReviewKind.PAYOUT_CONTRADICTION
TRANSITIONS: Final[dict[tuple[WithdrawalStatus, WithdrawalEvent], Transition]] = {
    (_S.PENDING, _E.ACCEPTED): Transition(_S.PROCESSING),
    (_S.PENDING, _E.PAID): Transition(_S.SUCCESS, Movement.COMPLETE),
    (_S.PENDING, _E.FAILED): Transition(_S.FAILED, Movement.RETURN),
    (_S.PENDING, _E.REVERSED): Transition(_S.REVERSED, Movement.RETURN),
    (_S.PROCESSING, _E.PAID): Transition(_S.SUCCESS, Movement.COMPLETE),
    (_S.PROCESSING, _E.FAILED): Transition(_S.FAILED, Movement.RETURN),
    (_S.PROCESSING, _E.REVERSED): Transition(_S.REVERSED, Movement.RETURN),
    # The bank sent the money back after Paystack reported it paid.
    (_S.SUCCESS, _E.REVERSED): Transition(_S.REVERSED, Movement.RETURN_AFTER_PAYOUT),
    # Contradictions: the money already moved one way; guessing the other could pay twice or lose it.
    (_S.SUCCESS, _E.FAILED): Transition(_S.SUCCESS, review=_CONTRADICTION),
    (_S.FAILED, _E.PAID): Transition(_S.FAILED, review=_CONTRADICTION),
    (_S.FAILED, _E.REVERSED): Transition(_S.FAILED, review=_CONTRADICTION),
    (_S.REVERSED, _E.PAID): Transition(_S.REVERSED, review=_CONTRADICTION),
    (_S.REVERSED, _E.FAILED): Transition(_S.REVERSED, review=_CONTRADICTION),
}
"""Every other pair (an outcome repeated, an acceptance after the outcome) is no news and moves nothing."""

_EVENT_OF_STATUS: Final = {
    TransferStatus.PENDING: _E.ACCEPTED,
    TransferStatus.RECEIVED: _E.ACCEPTED,
    TransferStatus.QUEUED: _E.ACCEPTED,
    TransferStatus.PROCESSING: _E.ACCEPTED,
    TransferStatus.SUCCESS: _E.PAID,
    TransferStatus.FAILED: _E.FAILED,
    TransferStatus.OTP: _E.FAILED,
    TransferStatus.ABANDONED: _E.FAILED,
    TransferStatus.BLOCKED: _E.FAILED,
    TransferStatus.REJECTED: _E.FAILED,
    TransferStatus.REVERSED: _E.REVERSED,
}


def event_of(report: TransferReport) -> WithdrawalEvent | None:
    """What Paystack's report means; None for a status it added later (no news)."""
    return _EVENT_OF_STATUS.get(report.status) if report.status is not None else None


def reason_of(report: TransferReport, event: WithdrawalEvent | None) -> str | None:
    """The `failure_reason` clients see for a failed or reversed transfer."""
    if report.status is TransferStatus.OTP:
        return OTP_REASON
    if event is _E.FAILED:
        return report.reason or f"Paystack reported the transfer {report.status}"
    if event is _E.REVERSED:
        return report.reason or "Paystack reversed the transfer"
    return None


_WITHDRAWAL_EVENT: Final = (
    "SELECT w.user_id, CAST(:type AS text), x.reference, "  # noqa: S608 - constant fragments only
    + withdrawal_item_sql("x")
    + " FROM withdrawals x JOIN wallets w ON w.id = x.wallet_id WHERE x.id = :id"
)


class WithdrawalOutcome(enum.StrEnum):
    MOVED = "moved"
    """Money moved (completed or returned), or the status advanced."""
    UNCHANGED = "unchanged"
    REVIEW = "review"
    UNKNOWN_REFERENCE = "unknown_reference"


class WithdrawalStates:
    """Applies Paystack's reports to withdrawals, in the caller's transaction (the caller commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def apply_report(self, report: TransferReport) -> WithdrawalOutcome:
        """Apply Paystack's word about a withdrawal's transfer, under the withdrawal's row lock."""
        withdrawal = await self._lock(report.reference)
        if withdrawal is None:
            logger.info("Paystack transfer %s (%s) is not one of ours, ignored", report.reference, report.source)
            return WithdrawalOutcome.UNKNOWN_REFERENCE
        changes: dict[str, Any] = {"provider_data": report.data}
        if report.transfer_code:
            changes["transfer_code"] = storable_text(report.transfer_code)[:64]
        if report.amount != withdrawal.amount or report.currency != withdrawal.currency.upper():
            reason = (
                f"Paystack ({report.source}) reported transfer {report.reference} {report.status} for "
                f"{report.amount} {report.currency}, but the withdrawal is {withdrawal.amount} {withdrawal.currency}; "
                "nothing moved"
            )
            await self._flag(withdrawal, ReviewKind.PAYOUT_CONTRADICTION, reason, report.source)
            await self._save(withdrawal, {})
            return WithdrawalOutcome.REVIEW
        event = event_of(report)
        if event is WithdrawalEvent.FAILED and report.status is TransferStatus.OTP:
            logger.error("withdrawal %s: %s", withdrawal.reference, OTP_REASON)
        return await self._apply(withdrawal, event, reason_of(report, event), report.source, changes)

    async def apply_event(self, reference: str, event: WithdrawalEvent, *, reason: str) -> WithdrawalOutcome:
        """Apply what the service itself observed (Paystack refused the recipient or the transfer outright)."""
        withdrawal = await self._lock(reference)
        if withdrawal is None:
            return WithdrawalOutcome.UNKNOWN_REFERENCE
        return await self._apply(withdrawal, event, reason, "service", {})

    async def flag_unknown(self, reference: str, source: str) -> None:
        """Paystack accepted this withdrawal's transfer and now knows no such transfer: nothing moves."""
        withdrawal = await self._lock(reference)
        if withdrawal is not None:
            reason = f"Paystack accepted transfer {reference} and now says it knows no such transfer; nothing moved"
            await self._flag(withdrawal, ReviewKind.PAYOUT_UNKNOWN, reason, source)

    async def _apply(
        self,
        withdrawal: m.Withdrawal,
        event: WithdrawalEvent | None,
        reason: str | None,
        source: str,
        changes: dict[str, Any],
    ) -> WithdrawalOutcome:
        status = WithdrawalStatus(withdrawal.status)
        transition = TRANSITIONS.get((status, event)) if event is not None else None
        # Paystack's data is kept from the news that decided the state, not from a repeat or a contradiction.
        if transition is None:
            await self._save(withdrawal, {})
            return WithdrawalOutcome.UNCHANGED
        if transition.review is not None:
            await self._flag(
                withdrawal,
                transition.review,
                f"Paystack ({source}) reported {event} for withdrawal {withdrawal.reference}, which is already "
                f"{status}; nothing moved: check the transfer on Paystack's dashboard",
                f"{source}:{event}",
            )
            await self._save(withdrawal, {})
            return WithdrawalOutcome.REVIEW
        if transition.movement is not None:
            await self._move(withdrawal, transition.movement, source)
            changes["completed_at"] = datetime.now(UTC)
        if transition.status in {_S.FAILED, _S.REVERSED}:
            changes["failure_reason"] = storable_text(reason or "")[:MAX_REASON_LENGTH] or None
        changes["status"] = transition.status.value
        logger.info("withdrawal %s: %s -> %s (%s, %s)", withdrawal.reference, status, transition.status, event, source)
        await self._save(withdrawal, changes)
        if transition.movement is not None:
            # Written after the row took its new state: the event shows what `GET /wallet/withdrawals` now shows.
            kind = (
                EventType.WITHDRAWAL_SUCCEEDED
                if transition.movement is Movement.COMPLETE
                else EventType.WITHDRAWAL_FAILED
            )
            await record_selected(self.session, _WITHDRAWAL_EVENT, {"type": kind.value, "id": withdrawal.id})
        return WithdrawalOutcome.MOVED

    async def _move(self, withdrawal: m.Withdrawal, movement: Movement, source: str) -> None:
        ledger = LedgerService(self.session)
        actor = f"paystack:{source}"
        if movement is Movement.COMPLETE:
            moved = await ledger.complete_withdrawal(
                amount=withdrawal.amount, reference=withdrawal.reference, actor=actor
            )
        else:
            moved = await ledger.return_withdrawal(
                wallet_id=withdrawal.wallet_id,
                amount=withdrawal.amount,
                reference=withdrawal.reference,
                after_payout=movement is Movement.RETURN_AFTER_PAYOUT,
                actor=actor,
            )
        if not moved:
            logger.error(
                "withdrawal %s (%s): its %s journal exists already", withdrawal.reference, withdrawal.status, movement
            )

    async def _flag(self, withdrawal: m.Withdrawal, kind: ReviewKind, reason: str, source: str) -> None:
        await flag_for_review(self.session, kind=kind, reference=withdrawal.reference, reason=reason, source=source)

    async def _save(self, withdrawal: m.Withdrawal, changes: dict[str, Any]) -> None:
        await self.session.execute(
            update(m.Withdrawal)
            .where(m.Withdrawal.id == withdrawal.id)
            .values(**changes, updated_at=datetime.now(UTC))
            .execution_options(synchronize_session=False)
        )

    async def _lock(self, reference: str) -> m.Withdrawal | None:
        withdrawal: m.Withdrawal | None = await self.session.scalar(
            select(m.Withdrawal).where(m.Withdrawal.reference == reference).with_for_update()
        )
        return withdrawal
