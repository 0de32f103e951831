"""Applying stored Paystack events (the worker side): each once, under its row lock, failures kept on the row.

A run of `APPLY_EVENTS` applies every event never tried, with `SKIP LOCKED`; the event's status commits with
the credit. A failing event continues on its own task; when that gives up it is `failed` and flagged for
review, and beat re-enqueues it until `MAX_ATTEMPTS`. The rules: `docs/payments.md`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import select, update

from app.db import models as m
from app.domain.payments.effects import EventOutcome, effect_of
from app.domain.review.service import flag_for_review
from app.lib.drain import Drain
from app.lib.storable import storable_text
from app.lib.tasks import TaskName, enqueue

if TYPE_CHECKING:
    from uuid import UUID

    from redis.asyncio import Redis

    from app.config import MoneySettings
    from app.lib.uow import UnitOfWork

logger = logging.getLogger(__name__)

APPLY_EVENTS = Drain(TaskName.APPLY_RECEIVED_WEBHOOKS)
APPLY_BATCH_SIZE: Final = 100
MAX_ATTEMPTS: Final = 10
"""Processing attempts (task retries and beat's re-enqueues together) before an event is left `failed`."""
REQUEUE_AFTER: Final = timedelta(minutes=1)
REQUEUE_BATCH_SIZE: Final = 500
MAX_ERROR_LENGTH: Final = 2000
FIRST_RETRY_SECONDS: Final = 2


_FINAL: Final = frozenset({EventOutcome.PROCESSED, EventOutcome.IGNORED, EventOutcome.REVIEW})


@dataclass
class AppliedBatch:
    outcomes: Counter[EventOutcome] = field(default_factory=Counter)
    busy: list[UUID] = field(default_factory=list)
    """Held by another worker right now (SKIP LOCKED)."""
    failed: list[tuple[UUID, Exception]] = field(default_factory=list)
    """Raised while being applied: rolled back alone, to continue on their own tasks."""


class StoredEvents:
    """The stored events, in the transactions of `uow` (its caller commits)."""

    def __init__(self, uow: UnitOfWork, money: MoneySettings) -> None:
        self.uow = uow
        self.session = uow.session
        self.money = money

    async def untried(self, *, limit: int = APPLY_BATCH_SIZE, skip: Collection[UUID] = ()) -> list[UUID]:
        """The oldest `received` events no processing has tried yet, except `skip`.

        Events that failed once belong to their retrying task and to beat's sweep, with their backoff.
        """
        query = (
            select(m.WebhookEvent.id)
            .where(m.WebhookEvent.status == m.WebhookEventStatus.RECEIVED, m.WebhookEvent.attempts == 0)
            .order_by(m.WebhookEvent.created_at)
            .limit(limit)
        )
        if skip:
            query = query.where(m.WebhookEvent.id.not_in(list(skip)))
        return list(await self.session.scalars(query))

    async def apply(self, event_id: UUID, *, skip_locked: bool = False) -> EventOutcome:
        """Apply a stored event once; with `skip_locked`, an event another worker holds is `BUSY`."""
        event = await self.session.scalar(
            select(m.WebhookEvent).where(m.WebhookEvent.id == event_id).with_for_update(skip_locked=skip_locked)
        )
        if event is None:
            # Event rows are never deleted: with SKIP LOCKED, no row means another worker holds it.
            return EventOutcome.BUSY if skip_locked else EventOutcome.MISSING
        return await self._apply_locked(event)

    async def apply_batch(self, event_ids: Sequence[UUID]) -> AppliedBatch:
        """Apply several events in this one transaction, each in a savepoint of its own.

        One commit for the batch instead of one per event; an event that raises is rolled back alone (its
        savepoint) and reported in `failed`, the others commit. Events another worker holds are `busy`.
        """
        locked = {
            event.id: event
            for event in await self.session.scalars(
                select(m.WebhookEvent).where(m.WebhookEvent.id.in_(list(event_ids))).with_for_update(skip_locked=True)
            )
        }
        applied = AppliedBatch()
        for event_id in event_ids:
            event = locked.get(event_id)
            if event is None:
                applied.busy.append(event_id)
                continue
            try:
                async with self.session.begin_nested():
                    applied.outcomes[await self._apply_locked(event)] += 1
            except Exception as exc:  # noqa: BLE001 - one event's failure must not hold up the others
                applied.failed.append((event_id, exc))
        return applied

    async def _apply_locked(self, event: m.WebhookEvent) -> EventOutcome:
        if event.status in _FINAL:
            return EventOutcome(event.status)
        outcome, error = await effect_of(self.session, self.money, event.raw_body)
        now = datetime.now(UTC)
        await self.session.execute(
            update(m.WebhookEvent)
            .where(m.WebhookEvent.id == event.id)
            .values(
                status=outcome.value,
                attempts=m.WebhookEvent.attempts + 1,
                last_error=error,
                processed_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        logger.info("Paystack event %s (%s, %s): %s", event.id, event.event_type, event.reference, outcome.value)
        return outcome

    async def record_failure(self, event_id: UUID, error: BaseException, *, final: bool) -> None:
        """Note a failed processing attempt on the event; `final` marks it `failed` and flags it for review."""
        values: dict[str, Any] = {
            "attempts": m.WebhookEvent.attempts + 1,
            "last_error": storable_text(f"{type(error).__name__}: {error}")[:MAX_ERROR_LENGTH],
            "updated_at": datetime.now(UTC),
        }
        if final:
            values["status"] = m.WebhookEventStatus.FAILED
        failed = (
            await self.session.execute(
                update(m.WebhookEvent)
                .where(m.WebhookEvent.id == event_id, m.WebhookEvent.status.not_in(list(_FINAL)))
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

    async def claim_unfinished(
        self,
        *,
        older_than: timedelta = REQUEUE_AFTER,
        max_attempts: int = MAX_ATTEMPTS,
        limit: int = REQUEUE_BATCH_SIZE,
    ) -> list[UUID]:
        """Events still `received` or `failed`, untouched for `older_than`, below `max_attempts`.

        Each is touched (`updated_at`) as it is claimed, so the next sweep leaves it to the task just enqueued
        for another `older_than`; `SKIP LOCKED` leaves events a worker is processing right now alone.
        """
        now = datetime.now(UTC)
        ids = list(
            await self.session.scalars(
                select(m.WebhookEvent.id)
                .where(
                    m.WebhookEvent.status.in_([m.WebhookEventStatus.RECEIVED, m.WebhookEventStatus.FAILED]),
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
        return ids


async def apply_untried_events(uow: UnitOfWork, money: MoneySettings, redis: Redis) -> Counter[str]:
    """A run of `APPLY_EVENTS`: every event never tried, batch by batch; outcomes counted.

    An event that fails here leaves the run and continues on its own task, with that task's retries.
    """
    events = StoredEvents(uow, money)
    outcomes: Counter[str] = Counter()
    left_alone: set[UUID] = set()

    async def take_batch() -> int:
        batch = await uow.read(lambda: events.untried(skip=left_alone))
        if not batch:
            return 0
        applied = await uow.run(partial(events.apply_batch, batch))
        outcomes.update({outcome.value: n for outcome, n in applied.outcomes.items()})
        left_alone.update(applied.busy)  # another run holds them
        for event_id, exc in applied.failed:
            left_alone.add(event_id)
            await _hand_to_its_task(uow, events, event_id, exc, redis)
        return len(batch)

    await APPLY_EVENTS.run(redis, take_batch)
    return outcomes


async def _hand_to_its_task(
    uow: UnitOfWork, events: StoredEvents, event_id: UUID, error: BaseException, redis: Redis
) -> None:
    logger.warning("webhook event %s failed; retrying it on its own: %r", event_id, error)
    try:
        await uow.run(lambda: events.record_failure(event_id, error, final=False))
    except Exception:
        logger.warning("could not record the failure of webhook event %s", event_id, exc_info=True)
        return
    await enqueue(redis, TaskName.PROCESS_WEBHOOK_EVENT, str(event_id), countdown=FIRST_RETRY_SECONDS)


async def requeue_unfinished_events(uow: UnitOfWork, money: MoneySettings, redis: Redis) -> int:
    """Beat: re-enqueue events still `received` or `failed` after a minute (a lost enqueue, a crash)."""
    event_ids = await uow.run(lambda: StoredEvents(uow, money).claim_unfinished())
    for event_id in event_ids:
        await enqueue(redis, TaskName.PROCESS_WEBHOOK_EVENT, str(event_id))
    if event_ids:
        logger.warning("re-enqueued %d webhook events left unprocessed", len(event_ids))
    return len(event_ids)
