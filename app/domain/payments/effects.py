"""What each Paystack event means for the service, and the outcome it leaves on the stored event.

`charge.success` goes through the deposit's state machine (`deposit_states.py`); `refund.processed` and
`charge.dispute.create` through `refunds.py`; `transfer.success`, `transfer.failed` and `transfer.reversed`
through the withdrawal's (`app.domain.withdrawals.withdrawal_states`); any other type is recorded and ignored.
Runs in the caller's transaction, under the event's row lock (`events.py`).
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING, Any, Final

from app.db import models as m
from app.domain.payments.deposit_states import DepositOutcome, DepositStates
from app.domain.payments.paystack import (
    CHARGE_SUCCESS,
    DISPUTE_CREATED,
    REFUND_PROCESSED,
    TRANSFER_EVENTS,
    ReportSource,
    TransactionStatus,
    decode_event,
    disputed_reference,
    refund_report,
    transaction_report,
    transfer_report,
)
from app.domain.payments.refunds import DepositRefunds
from app.domain.withdrawals.withdrawal_states import WithdrawalOutcome, WithdrawalStates

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.config import MoneySettings

logger = logging.getLogger(__name__)


def _from_deposit(outcome: DepositOutcome) -> tuple[EventOutcome, str | None]:
    error = "no deposit has this reference" if outcome is DepositOutcome.UNKNOWN_REFERENCE else None
    return _FROM_DEPOSIT[outcome], error


class EventOutcome(enum.StrEnum):
    """What applying an event did: its new status, or why it was not applied."""

    PROCESSED = m.WebhookEventStatus.PROCESSED.value
    IGNORED = m.WebhookEventStatus.IGNORED.value
    REVIEW = m.WebhookEventStatus.REVIEW.value
    FAILED = m.WebhookEventStatus.FAILED.value
    BUSY = "busy"
    """Another worker holds the event right now."""
    MISSING = "missing"
    """No event has this id."""


_FROM_DEPOSIT: Final = {
    DepositOutcome.CREDITED: EventOutcome.PROCESSED,
    DepositOutcome.MOVED: EventOutcome.PROCESSED,
    DepositOutcome.UNCHANGED: EventOutcome.PROCESSED,
    DepositOutcome.REVIEW: EventOutcome.REVIEW,
    DepositOutcome.UNKNOWN_REFERENCE: EventOutcome.IGNORED,
}


async def effect_of(session: AsyncSession, money: MoneySettings, raw_body: bytes) -> tuple[EventOutcome, str | None]:
    """The event's effect, in the current transaction: its outcome and why, when it is not processed."""
    try:
        event = decode_event(raw_body)
    except ValueError as exc:
        return EventOutcome.IGNORED, f"not a Paystack event: {exc}"
    if event.event == REFUND_PROCESSED:
        return await _refund(session, money, event.data)
    if event.event == DISPUTE_CREATED:
        return await _dispute(session, money, event.data)
    if event.event in TRANSFER_EVENTS:
        return await _transfer(session, event.event, event.data)
    if event.event != CHARGE_SUCCESS:
        return EventOutcome.IGNORED, None
    try:
        report = transaction_report(event.data, ReportSource.WEBHOOK, status=TransactionStatus.SUCCESS)
    except ValueError as exc:
        logger.warning("Paystack charge.success without a usable reference, amount or currency: %s", exc)
        return EventOutcome.IGNORED, f"charge.success data unusable: {exc}"
    outcome = await DepositStates(session, money).apply_report(report)
    return _from_deposit(outcome)


async def _refund(session: AsyncSession, money: MoneySettings, data: Any) -> tuple[EventOutcome, str | None]:
    try:
        report = refund_report(data)
    except ValueError as exc:
        logger.error("Paystack refund.processed that cannot be applied: %s", exc)
        return EventOutcome.IGNORED, f"refund.processed data unusable: {exc}"
    return _from_deposit(await DepositRefunds(session, money).apply_refund(report))


_FROM_WITHDRAWAL: Final = {
    WithdrawalOutcome.MOVED: EventOutcome.PROCESSED,
    WithdrawalOutcome.UNCHANGED: EventOutcome.PROCESSED,
    WithdrawalOutcome.REVIEW: EventOutcome.REVIEW,
    WithdrawalOutcome.UNKNOWN_REFERENCE: EventOutcome.IGNORED,
}


async def _transfer(session: AsyncSession, event_type: str, data: Any) -> tuple[EventOutcome, str | None]:
    # The event's type is Paystack's word on the outcome; `data.status` repeats it.
    try:
        report = transfer_report(data, "webhook", status=event_type.removeprefix("transfer."))
    except ValueError as exc:
        logger.error("Paystack %s that cannot be applied: %s", event_type, exc)
        return EventOutcome.IGNORED, f"{event_type} data unusable: {exc}"
    outcome = await WithdrawalStates(session).apply_report(report)
    error = "no withdrawal has this reference" if outcome is WithdrawalOutcome.UNKNOWN_REFERENCE else None
    return _FROM_WITHDRAWAL[outcome], error


async def _dispute(session: AsyncSession, money: MoneySettings, data: Any) -> tuple[EventOutcome, str | None]:
    try:
        reference = disputed_reference(data)
    except ValueError as exc:
        return EventOutcome.IGNORED, f"charge.dispute.create data unusable: {exc}"
    dispute_id = str(data.get("id") or "") if isinstance(data, dict) else ""
    return _from_deposit(await DepositRefunds(session, money).flag_dispute(reference, dispute_id))
