"""Paystack tasks: apply stored webhook events, verify deposits, and beat's two sweeps.

Thin: the rules live in `app.domain.payments`. An event already applied and a deposit no longer pending are
left alone, under row locks, and crediting is once per deposit reference however often a task runs.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from app.domain.payments.events import EventOutcome, StoredEvents, apply_untried_events, requeue_unfinished_events
from app.domain.payments.paystack import PaystackClient
from app.domain.payments.verification import VERIFICATIONS, request_stale_verifications, verify_deposit
from app.lib.metrics import count
from app.lib.tasks import TaskName
from tasks import app, runtime
from tasks.base import WalletTask

logger = logging.getLogger(__name__)


async def _apply_untried(context: runtime.WorkerContext) -> int:
    async with context.unit_of_work() as uow:
        outcomes = await apply_untried_events(uow, context.settings.money, context.redis)
    for outcome, events in outcomes.items():
        await count(context.redis, "webhook_events", events, outcome=outcome)
    return outcomes.total()


@app.task(name=TaskName.APPLY_RECEIVED_WEBHOOKS, base=WalletTask, bind=True)
def apply_received_webhooks(self: WalletTask) -> int:
    """Apply every stored event not tried yet (requested by the webhook endpoint, one run at a time)."""
    return self.run_async(_apply_untried)


class ProcessEventTask(WalletTask):
    """One stored event on its own, after it failed inside a run or was re-enqueued by beat."""

    abstract = True
    max_retries = 4
    retry_base_seconds = 2.0
    retry_any_failure = True

    def attempt_failed(self, exc: BaseException, args: tuple[Any, ...], *, final: bool) -> None:
        event_id = uuid.UUID(str(args[0]))

        async def record(context: runtime.WorkerContext) -> None:
            async with context.unit_of_work() as uow:
                await uow.run(
                    lambda: StoredEvents(uow, context.settings.money).record_failure(event_id, exc, final=final)
                )
            if final:
                await count(context.redis, "webhook_events", outcome=EventOutcome.FAILED)

        self.run_async(record)

    def given_up(self, exc: BaseException, args: tuple[Any, ...]) -> str:
        logger.error("webhook event %s failed %d times, left for beat: %r", args[0], self.request.retries + 1, exc)
        return EventOutcome.FAILED


async def _process(context: runtime.WorkerContext, event_id: uuid.UUID) -> str:
    async with context.unit_of_work() as uow:
        outcome = await uow.run(lambda: StoredEvents(uow, context.settings.money).apply(event_id))
    await count(context.redis, "webhook_events", outcome=outcome)
    return outcome


@app.task(name=TaskName.PROCESS_WEBHOOK_EVENT, base=ProcessEventTask, bind=True)
def process_webhook_event(self: ProcessEventTask, event_id: str) -> str:
    """Apply one stored Paystack event (by id); retried with backoff, then left `failed` for beat."""
    try:
        parsed = uuid.UUID(event_id)
    except (ValueError, TypeError, AttributeError):
        logger.error("process_webhook_event got %r, which is not an event id", event_id)
        return EventOutcome.MISSING
    return self.run_async(lambda context: _process(context, parsed))


async def _requeue_unfinished_events(context: runtime.WorkerContext) -> int:
    async with context.unit_of_work() as uow:
        return await requeue_unfinished_events(uow, context.settings.money, context.redis)


@app.task(name=TaskName.REQUEUE_UNFINISHED_WEBHOOKS, base=WalletTask, bind=True, max_retries=0)
def requeue_unprocessed_webhooks(self: WalletTask) -> int:
    """Beat: re-enqueue webhook events still `received` or `failed` after a minute (a lost enqueue, a crash)."""
    return self.run_async(_requeue_unfinished_events)


class VerifyDepositTask(WalletTask):
    """Ask Paystack about one pending deposit; a failing Paystack is asked again a few times, then beat asks."""

    abstract = True
    max_retries = 3
    retry_base_seconds = 5.0
    retry_any_failure = True

    def given_up(self, exc: BaseException, args: tuple[Any, ...]) -> str:
        logger.error(
            "verification of deposit %s failed %d times; beat tries later: %r", args[0], self.request.retries + 1, exc
        )
        self.run_async(lambda context: VERIFICATIONS.finished(context.redis, str(args[0])))
        return "error"


async def _verify(context: runtime.WorkerContext, reference: str) -> str:
    # A client per verification: verifications are rare, and it keeps no connection across forks or loops.
    async with PaystackClient(context.settings.paystack) as paystack, context.unit_of_work() as uow:
        status = await verify_deposit(uow, context.settings.money, paystack, reference)
    await VERIFICATIONS.finished(context.redis, reference)
    return status.value if status is not None else "unknown"


@app.task(name=TaskName.VERIFY_DEPOSIT, base=VerifyDepositTask, bind=True)
def verify_deposit_task(self: VerifyDepositTask, reference: str) -> str:
    """Ask Paystack about a pending deposit and apply the answer (success credits through the one path)."""
    return self.run_async(lambda context: _verify(context, reference))


async def _verify_stale(context: runtime.WorkerContext) -> int:
    async with context.unit_of_work() as uow:
        return await request_stale_verifications(uow, context.settings.money, context.redis)


@app.task(name=TaskName.VERIFY_STALE_DEPOSITS, base=WalletTask, bind=True, max_retries=0)
def verify_stale_deposits(self: WalletTask) -> int:
    """Beat: verify deposits pending longer than DEPOSIT_VERIFY_AFTER_SECONDS (their webhook may never come)."""
    return self.run_async(_verify_stale)
