"""Paystack webhooks: stored durably before the 200, processed by a worker, effective once.

Receiving (`receive`, in the request, after the signature and source checks): the raw body is stored in
`webhook_events` under `event_key` = SHA-256 of the raw body, with `INSERT ... ON CONFLICT DO NOTHING`, and
committed before the 200. Paystack's redeliveries are byte-identical, so a redelivery (however many, however
concurrent) is one row and one processing. The key is the body's hash rather than `event` + `data.id`: it needs
no parsing (a malformed but signed body is still recorded once) and cannot merge two different events that
happen to share an id. Two *different* bodies about the same payment are both stored and both processed, and
the second is a no-op: crediting is exactly once per deposit reference (the deposit's row lock and status,
and the ledger's unique deposit journal), not per event.

Processing (`process`, in a worker): under the event's row lock, an event that is already final is left alone;
`charge.success` goes through `DepositService.confirm_payment` and the event's new status is written in the
same transaction as the credit. Other event types, unknown references and unreadable bodies are `ignored`;
a payment that differs from the deposit is `review`. A processing failure is recorded on the event
(`attempts`, `last_error`); after the task's retries it is `failed`, and beat re-enqueues `received` and
`failed` events untouched for a minute until `MAX_ATTEMPTS`, after which they stay `failed` for an operator.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import msgspec
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app.db import models as m
from app.domain.payments.deposits import (
    ConfirmedPayment,
    DepositService,
    PaymentOutcome,
    in_transaction,
    parse_paystack_time,
)
from app.domain.payments.paystack import is_valid_signature
from app.lib.errors import InvalidSignature, PermissionDenied

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncSession

    from app.config import Settings

logger = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "x-paystack-signature"
CHARGE_SUCCESS: Final = "charge.success"
PROCESS_EVENT_TASK: Final = "tasks.payments.process_webhook_event"
MAX_ATTEMPTS: Final = 10
"""Processing attempts (task retries and beat's re-enqueues together) before an event is left `failed`."""
REQUEUE_AFTER: Final = timedelta(minutes=1)
REQUEUE_BATCH_SIZE: Final = 500
MAX_ERROR_LENGTH: Final = 2000

_FINAL_STATUSES: Final = frozenset(
    {m.WebhookEventStatus.PROCESSED.value, m.WebhookEventStatus.IGNORED.value, m.WebhookEventStatus.REVIEW.value}
)
_OUTCOME_STATUS: Final = {
    PaymentOutcome.CREDITED: m.WebhookEventStatus.PROCESSED,
    PaymentOutcome.ALREADY_CREDITED: m.WebhookEventStatus.PROCESSED,
    PaymentOutcome.REVIEW: m.WebhookEventStatus.REVIEW,
    PaymentOutcome.UNKNOWN_REFERENCE: m.WebhookEventStatus.IGNORED,
}


class _Event(msgspec.Struct):
    event: str
    data: Any = None


class _Charge(msgspec.Struct):
    reference: str
    amount: int
    currency: str
    paid_at: str | None = None


@dataclass(frozen=True)
class ReceivedEvent:
    event_id: UUID
    new: bool
    """False for a redelivery of an event already stored: nothing to enqueue."""


def event_key(raw_body: bytes) -> str:
    """What makes a redelivery a duplicate: the hex SHA-256 of the raw body."""
    return hashlib.sha256(raw_body).hexdigest()


def check_paystack_origin(raw_body: bytes, *, signature: str | None, source: str, settings: Settings) -> None:
    """Only Paystack may deliver events: the signature first, then (when configured) the source address.

    Args:
        raw_body: The request body exactly as received (the signature covers these bytes).
        signature: The `x-paystack-signature` header, None when absent.
        source: The client address, through `TRUSTED_PROXIES` (`app.lib.net.client_address`).
        settings: Supplies the webhook secret and `PAYSTACK_WEBHOOK_IPS`.

    Raises:
        InvalidSignature: the signature is missing or is not the HMAC-SHA512 of the body (401).
        PermissionDenied: correctly signed, but from an address outside `PAYSTACK_WEBHOOK_IPS` (403).
    """
    if not is_valid_signature(raw_body, signature, settings.webhook_secret):
        raise InvalidSignature
    if settings.paystack_webhook_ips and source not in settings.paystack_webhook_ips:
        logger.warning("signed Paystack webhook from %s, which is not in PAYSTACK_WEBHOOK_IPS: refused", source)
        raise PermissionDenied("This address may not deliver Paystack webhooks.")


def _head(raw_body: bytes) -> tuple[str, str | None]:
    """Event type and reference for the stored row's columns; the body itself is judged by the worker."""
    try:
        event = msgspec.json.decode(raw_body, type=_Event)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "unreadable", None
    reference = event.data.get("reference") if isinstance(event.data, dict) else None
    if not isinstance(reference, str) or len(reference) > 100:
        reference = None
    return event.event[:100] or "unknown", reference


class WebhookService:
    """Receiving and processing Paystack events."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def receive(self, raw_body: bytes) -> ReceivedEvent:
        """Store a verified event once (a redelivery finds the first). Commits before returning.

        The caller has already checked the signature: only Paystack's events reach this.
        """
        key = event_key(raw_body)
        event_type, reference = _head(raw_body)
        event_id = await self.session.scalar(
            pg_insert(m.WebhookEvent)
            .values(
                event_key=key,
                event_type=event_type,
                reference=reference,
                raw_body=raw_body,
                status=m.WebhookEventStatus.RECEIVED.value,
            )
            .on_conflict_do_nothing(index_elements=["event_key"])
            .returning(m.WebhookEvent.id)
        )
        if event_id is not None:
            await self.session.commit()
            logger.info("Paystack %s event for %s stored as %s", event_type, reference, event_id)
            return ReceivedEvent(event_id=event_id, new=True)
        existing = await self.session.scalar(select(m.WebhookEvent.id).where(m.WebhookEvent.event_key == key))
        await self.session.commit()
        if existing is None:  # pragma: no cover - event rows are never deleted
            msg = "a stored webhook event vanished"
            raise RuntimeError(msg)
        logger.info("Paystack redelivered event %s; already stored", existing)
        return ReceivedEvent(event_id=existing, new=False)

    async def process(self, event_id: UUID) -> str:
        """Apply a stored event, once. Commits; returns the event's status (`missing` for no such event)."""
        return await in_transaction(self.session, lambda: self._process(event_id))

    async def _process(self, event_id: UUID) -> str:
        event = await self.session.scalar(select(m.WebhookEvent).where(m.WebhookEvent.id == event_id).with_for_update())
        if event is None:
            await self.session.commit()
            return "missing"
        if event.status in _FINAL_STATUSES:
            await self.session.commit()
            return event.status
        status, error = await self._apply(event.raw_body)
        await self.session.execute(
            update(m.WebhookEvent)
            .where(m.WebhookEvent.id == event_id)
            .values(
                status=status.value,
                attempts=m.WebhookEvent.attempts + 1,
                last_error=error,
                processed_at=datetime.now(UTC),
                updated_at=datetime.now(UTC),
            )
            .execution_options(synchronize_session=False)
        )
        await self.session.commit()
        logger.info("Paystack event %s (%s, %s): %s", event_id, event.event_type, event.reference, status.value)
        return status.value

    async def _apply(self, raw_body: bytes) -> tuple[m.WebhookEventStatus, str | None]:
        """The event's effect, in the current transaction: its new status and why, when it is not processed."""
        try:
            event = msgspec.json.decode(raw_body, type=_Event)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return m.WebhookEventStatus.IGNORED, f"not a Paystack event: {exc}"
        if event.event != CHARGE_SUCCESS:
            return m.WebhookEventStatus.IGNORED, None
        try:
            charge = msgspec.convert(event.data, type=_Charge)
        except msgspec.ValidationError as exc:
            logger.warning("Paystack charge.success without a usable reference, amount or currency: %s", exc)
            return m.WebhookEventStatus.IGNORED, f"charge.success data unusable: {exc}"
        outcome = await DepositService(self.session).confirm_payment(
            ConfirmedPayment(
                reference=charge.reference,
                amount=charge.amount,
                currency=charge.currency,
                paid_at=parse_paystack_time(charge.paid_at),
                data=event.data,
                source="webhook",
            )
        )
        error = "no deposit has this reference" if outcome is PaymentOutcome.UNKNOWN_REFERENCE else None
        return _OUTCOME_STATUS[outcome], error

    async def record_failure(self, event_id: UUID, error: BaseException, *, final: bool) -> None:
        """Note a failed processing attempt on the event; `final` marks it `failed`. Commits."""
        values: dict[str, Any] = {
            "attempts": m.WebhookEvent.attempts + 1,
            "last_error": f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH],
            "updated_at": datetime.now(UTC),
        }
        if final:
            values["status"] = m.WebhookEventStatus.FAILED.value
        await self.session.execute(
            update(m.WebhookEvent)
            .where(m.WebhookEvent.id == event_id, m.WebhookEvent.status.not_in(_FINAL_STATUSES))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        await self.session.commit()

    async def claim_unfinished(
        self,
        *,
        older_than: timedelta = REQUEUE_AFTER,
        max_attempts: int = MAX_ATTEMPTS,
        limit: int = REQUEUE_BATCH_SIZE,
    ) -> list[UUID]:
        """Events still `received` or `failed`, untouched for `older_than`, below `max_attempts`. Commits.

        Each is touched (`updated_at`) as it is claimed, so the next sweep leaves it to the task just enqueued
        for another `older_than`; `SKIP LOCKED` leaves events a worker is processing right now alone.
        """
        now = datetime.now(UTC)
        ids = list(
            await self.session.scalars(
                select(m.WebhookEvent.id)
                .where(
                    m.WebhookEvent.status.in_([m.WebhookEventStatus.RECEIVED.value, m.WebhookEventStatus.FAILED.value]),
                    m.WebhookEvent.updated_at < now - older_than,
                    m.WebhookEvent.attempts < max_attempts,
                )
                .order_by(m.WebhookEvent.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        if ids:
            await self.session.execute(
                update(m.WebhookEvent)
                .where(m.WebhookEvent.id.in_(ids))
                .values(updated_at=now)
                .execution_options(synchronize_session=False)
            )
        await self.session.commit()
        return ids
