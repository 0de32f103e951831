"""Paystack webhooks: stored durably before the 200, processed by a worker, effective once.

Receiving (`receive`, in the request, after the signature and source checks): the raw body is stored in
`webhook_events` under `event_key` = SHA-256 of the raw body, with `INSERT ... ON CONFLICT DO NOTHING`, and
committed before the 200. Paystack's redeliveries are byte-identical, so a redelivery (however many, however
concurrent) is one row and one processing. The key is the body's hash rather than `event` + `data.id`: it needs
no parsing (a malformed but signed body is still recorded once) and cannot merge two different events that
happen to share an id. Two *different* bodies about the same payment are both stored and both processed, and
the second is a no-op: crediting is exactly once per deposit reference (the deposit's row lock and status,
and the ledger's unique deposit journal), not per event.

Processing (in a worker): new events are not enqueued one by one; the request asks for a run of
`APPLY_RECEIVED_TASK` (at most one pending, `app.lib.queue.request_drain`), which applies every event never
tried yet, batch by batch, each under its row lock taken with SKIP LOCKED so concurrent runs share the work.
An event (`process`) is applied under its row lock: an event that is already final is left alone;
`charge.success` goes through `DepositService.confirm_payment` and the event's new status is written in the
same transaction as the credit. Other event types, unknown references and unreadable bodies are `ignored`;
a payment that differs from the deposit is `review`. A processing failure is recorded on the event
(`attempts`, `last_error`); after the task's retries it is `failed`, and beat re-enqueues `received` and
`failed` events untouched for a minute until `MAX_ATTEMPTS`, after which they stay `failed` for an operator.
A failure inside a run hands the event to that per-event task (`PROCESS_EVENT_TASK`) and its retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import msgspec
from sqlalchemy import String, Uuid, select, text, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from uuid_utils.compat import uuid7

from app.db import models as m
from app.domain.payments.deposits import (
    ConfirmedPayment,
    DepositService,
    PaymentOutcome,
    parse_paystack_time,
)
from app.domain.payments.paystack import is_valid_signature
from app.domain.review.service import flag_for_review
from app.lib.db import run_transaction
from app.lib.errors import InvalidSignature, PermissionDenied
from app.lib.storable import decode_untrusted_json, storable_text

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence
    from uuid import UUID

    from litestar import Litestar
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.config import Settings

logger = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "x-paystack-signature"
CHARGE_SUCCESS: Final = "charge.success"
PROCESS_EVENT_TASK: Final = "tasks.payments.process_webhook_event"
APPLY_RECEIVED_TASK: Final = "tasks.payments.apply_received_webhooks"
APPLY_BATCH_SIZE: Final = 100
"""Events one run of `APPLY_RECEIVED_TASK` reads at a time."""
MAX_GROUP_SIZE: Final = 500
"""Most events one flush of the inbox stores in one statement."""
INBOX_STATE_KEY: Final = "webhook_inbox"
BUSY: Final = "busy"
"""What `process(..., skip_locked=True)` answers for an event another worker holds right now."""
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


_STORE_EVENTS = text(
    """
    INSERT INTO webhook_events (
        id, event_key, event_type, reference, raw_body, status, attempts, created_at, updated_at
    )
    SELECT event.id, event.event_key, event.event_type, event.reference, event.raw_body, 'received', 0,
        CAST(:now AS timestamptz), CAST(:now AS timestamptz)
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:keys AS text[]), CAST(:types AS text[]), CAST(:references AS text[]),
        CAST(:bodies AS bytea[])
    ) AS event(id, event_key, event_type, reference, raw_body)
    ON CONFLICT (event_key) DO NOTHING
    RETURNING event_key, id
    """
).columns(event_key=String(), id=Uuid())
"""Many events in one statement; a body already stored (the same SHA-256) is left alone and not returned."""


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


def _decode_event(raw_body: bytes) -> _Event:
    """The event with every string storable (`app.lib.storable`): a signed body is Paystack's, whatever it holds.

    Raises:
        ValueError: the body is not JSON, or not an object with an `event` string.
    """
    try:
        return msgspec.convert(decode_untrusted_json(raw_body), type=_Event)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from exc


def _head(raw_body: bytes) -> tuple[str, str | None]:
    """Event type and reference for the stored row's columns; the body itself is judged by the worker."""
    try:
        event = _decode_event(raw_body)
    except ValueError:
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
        """Store one verified event once (a redelivery finds the first). Commits before returning."""
        [received] = await self.store([raw_body])
        return received

    async def store(self, raw_bodies: Sequence[bytes]) -> list[ReceivedEvent]:
        """Store verified events, each once, in one statement and one commit; answers in the same order.

        The caller has already checked the signatures: only Paystack's events reach this. A body stored
        before, or twice in this group, is `new` only where it was first inserted.
        """
        keys = [event_key(body) for body in raw_bodies]
        distinct = dict(zip(keys, raw_bodies, strict=True))
        heads = [_head(body) for body in distinct.values()]
        now = datetime.now(UTC)
        stored = (
            await self.session.execute(
                _STORE_EVENTS,
                {
                    "ids": [uuid7() for _ in distinct],
                    "keys": list(distinct),
                    "types": [event_type for event_type, _ in heads],
                    "references": [reference for _, reference in heads],
                    "bodies": list(distinct.values()),
                    "now": now,
                },
            )
        ).tuples()
        inserted: dict[str, UUID] = dict(stored.all())
        known = [key for key in distinct if key not in inserted]
        existing: dict[str, UUID] = {}
        if known:
            rows = await self.session.execute(
                select(m.WebhookEvent.event_key, m.WebhookEvent.id).where(m.WebhookEvent.event_key.in_(known))
            )
            existing = dict(rows.tuples().all())
        await self.session.commit()
        if len(inserted) + len(existing) != len(distinct):  # pragma: no cover - event rows are never deleted
            msg = "a stored webhook event vanished"
            raise RuntimeError(msg)
        event_heads = dict(zip(distinct, heads, strict=True))
        answers = []
        for key in keys:
            new = inserted.pop(key, None)
            if new is not None:
                event_type, reference = event_heads[key]
                logger.info("Paystack %s event for %s stored as %s", event_type, reference, new)
                answers.append(ReceivedEvent(event_id=new, new=True))
                existing[key] = new
            else:
                logger.info("Paystack redelivered event %s; already stored", existing[key])
                answers.append(ReceivedEvent(event_id=existing[key], new=False))
        return answers

    async def untried_events(self, *, limit: int = APPLY_BATCH_SIZE, skip: Collection[UUID] = ()) -> list[UUID]:
        """The oldest `received` events no processing has tried yet, except `skip`. Commits (reads only).

        Events that failed once belong to their retrying task and to beat's sweep, with their backoff.
        """
        query = (
            select(m.WebhookEvent.id)
            .where(m.WebhookEvent.status == m.WebhookEventStatus.RECEIVED.value, m.WebhookEvent.attempts == 0)
            .order_by(m.WebhookEvent.created_at)
            .limit(limit)
        )
        if skip:
            query = query.where(m.WebhookEvent.id.not_in(list(skip)))
        ids = list(await self.session.scalars(query))
        await self.session.commit()
        return ids

    async def process(self, event_id: UUID, *, skip_locked: bool = False) -> str:
        """Apply a stored event, once. Commits; returns the event's status (`missing` for no such event).

        With `skip_locked`, an event whose row another worker holds is left to it: the answer is `BUSY`.
        """
        return await run_transaction(self.session, lambda: self._process(event_id, skip_locked=skip_locked))

    async def _process(self, event_id: UUID, *, skip_locked: bool) -> str:
        event = await self.session.scalar(
            select(m.WebhookEvent).where(m.WebhookEvent.id == event_id).with_for_update(skip_locked=skip_locked)
        )
        if event is None:
            await self.session.commit()
            # Event rows are never deleted: with SKIP LOCKED, no row means another worker holds it.
            return BUSY if skip_locked else "missing"
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
            event = _decode_event(raw_body)
        except ValueError as exc:
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
            "last_error": storable_text(f"{type(error).__name__}: {error}")[:MAX_ERROR_LENGTH],
            "updated_at": datetime.now(UTC),
        }
        if final:
            values["status"] = m.WebhookEventStatus.FAILED.value
        failed = (
            await self.session.execute(
                update(m.WebhookEvent)
                .where(m.WebhookEvent.id == event_id, m.WebhookEvent.status.not_in(_FINAL_STATUSES))
                .values(**values)
                .returning(m.WebhookEvent.event_type, m.WebhookEvent.reference, m.WebhookEvent.last_error)
                .execution_options(synchronize_session=False)
            )
        ).one_or_none()
        if final and failed is not None:
            # Beat keeps retrying it, but whatever it should have done (a credit) has not happened: a person
            # must know now, not when someone reads the log.
            await flag_for_review(
                self.session,
                kind=m.ReviewKind.EVENT_FAILING,
                reference=failed.reference or str(event_id),
                source=str(event_id),
                reason=f"Paystack {failed.event_type} event {event_id} keeps failing: {failed.last_error}",
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


class WebhookInbox:
    """Group commit of received events, one per API process (`inbox_of`).

    A request hands over its verified body and waits until the event's row is committed; it is acknowledged
    only then. One flush runs at a time and stores, in one statement and one commit, every body that arrived
    while the previous flush ran: alone, a request waits for nothing extra; in a burst, a round trip and a
    commit serve the whole group. A failed flush fails exactly its group's requests (Paystack redelivers).
    """

    def __init__(self, sessions: Callable[[], AsyncSession]) -> None:
        self._sessions = sessions
        self._waiting: list[tuple[bytes, asyncio.Future[ReceivedEvent]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def receive(self, raw_body: bytes) -> ReceivedEvent:
        """Store a verified event (once, however often it is delivered); returns after its commit."""
        future: asyncio.Future[ReceivedEvent] = asyncio.get_running_loop().create_future()
        self._waiting.append((raw_body, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="webhook-inbox-flush")
        return await future

    async def _flush(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[:MAX_GROUP_SIZE], self._waiting[MAX_GROUP_SIZE:]
            try:
                async with self._sessions() as session:
                    received = await WebhookService(session).store([body for body, _ in group])
            except Exception as exc:  # noqa: BLE001 - handed to each waiting request, whose handler maps it
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), answer in zip(group, received, strict=True):
                if not future.done():
                    future.set_result(answer)


def inbox_of(app: Litestar) -> WebhookInbox:
    """The API process's inbox, made on first use over the app's database engine."""
    inbox = app.state.get(INBOX_STATE_KEY)
    if not isinstance(inbox, WebhookInbox):
        engine = app.state.sqlalchemy_config.get_engine()
        inbox = WebhookInbox(async_sessionmaker(engine, expire_on_commit=False))
        app.state[INBOX_STATE_KEY] = inbox
    return inbox
