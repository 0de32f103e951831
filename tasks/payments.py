"""Paystack tasks: apply stored webhook events, verify deposits, and beat's two sweeps.

Thin: the rules live in `app.domain.payments` (`WebhookService`, `DepositService`). Every task is idempotent:
an event already applied and a deposit no longer pending are left alone, under row locks, and crediting is
exactly once per deposit reference however often a task runs.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter

from app.domain.payments.deposits import DepositService, request_verification, verification_finished
from app.domain.payments.paystack import PaystackClient
from app.domain.payments.webhooks import APPLY_RECEIVED_TASK, BUSY, PROCESS_EVENT_TASK, WebhookService
from app.lib.metrics import count
from app.lib.queue import drain_finished, enqueue
from tasks import app, runtime

logger = logging.getLogger(__name__)

APPLY_TIME_BUDGET_SECONDS = 60.0
"""One run applies events for at most this long, then hands the rest to a fresh run (time limits: 240/300 s)."""
FIRST_RETRY_SECONDS = 2
WEBHOOK_RETRIES = 4
"""Celery retries of one processing (2, 4, 8, 16 s apart) before the event is marked `failed` for beat."""
VERIFY_RETRIES = 3
"""Celery retries of one verification (5, 10, 20 s apart) while Paystack fails; beat verifies again later."""


def _parse_event_id(event_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(event_id)
    except (ValueError, TypeError, AttributeError):
        return None


async def _process(context: runtime.WorkerContext, event_id: uuid.UUID) -> str:
    async with context.session() as session:
        status = await WebhookService(session).process(event_id)
    await count(context.redis, "webhook_events", outcome=status)
    return status


async def _record_failure(
    context: runtime.WorkerContext, event_id: uuid.UUID, error: BaseException, *, final: bool
) -> None:
    async with context.session() as session:
        await WebhookService(session).record_failure(event_id, error, final=final)
    if final:
        await count(context.redis, "webhook_events", outcome="failed")


@app.task(name=PROCESS_EVENT_TASK, bind=True, max_retries=WEBHOOK_RETRIES)
def process_webhook_event(self, event_id: str) -> str:  # type: ignore[no-untyped-def]
    """Apply one stored Paystack event (by id); retried with backoff, then left `failed` for beat."""
    parsed = _parse_event_id(event_id)
    if parsed is None:
        logger.error("process_webhook_event got %r, which is not an event id", event_id)
        return "missing"
    try:
        return runtime.run(lambda context: _process(context, parsed))
    except Exception as exc:
        final = self.request.retries >= self.max_retries
        failure: BaseException = exc
        try:
            runtime.run(lambda context: _record_failure(context, parsed, failure, final=final))
        except Exception:
            logger.warning("could not record the failure of webhook event %s", event_id, exc_info=True)
        if final:
            logger.error("webhook event %s failed %d times, left for beat: %r", event_id, self.request.retries + 1, exc)
            return "failed"
        raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1)) from exc


async def _hand_to_retries(context: runtime.WorkerContext, event_id: uuid.UUID, error: BaseException) -> None:
    """An event that failed inside a run continues on its own task, with that task's retries and backoff."""
    logger.warning("webhook event %s failed; retrying it on its own: %r", event_id, error)
    try:
        await _record_failure(context, event_id, error, final=False)
    except Exception:
        # Still `received` with no attempt recorded: beat's sweep re-enqueues it after a minute.
        logger.warning("could not record the failure of webhook event %s", event_id, exc_info=True)
        return
    enqueue(PROCESS_EVENT_TASK, str(event_id), countdown=FIRST_RETRY_SECONDS)


async def _apply_untried(
    context: runtime.WorkerContext,
    webhooks: WebhookService,
    outcomes: Counter[str],
    left_alone: set[uuid.UUID],
    deadline: float,
) -> bool:
    """Apply events not tried yet until none is left (True) or the deadline passes (False)."""
    while event_ids := await webhooks.untried_events(skip=left_alone):
        for event_id in event_ids:
            try:
                status = await webhooks.process(event_id, skip_locked=True)
            except Exception as exc:  # noqa: BLE001 - one event's failure must not hold up the others
                left_alone.add(event_id)
                await _hand_to_retries(context, event_id, exc)
                continue
            if status == BUSY:
                left_alone.add(event_id)  # another run holds it
            else:
                outcomes[status] += 1
        if time.monotonic() > deadline:
            return False
    return True


async def _apply_received(context: runtime.WorkerContext) -> int:
    deadline = time.monotonic() + APPLY_TIME_BUDGET_SECONDS
    outcomes: Counter[str] = Counter()
    left_alone: set[uuid.UUID] = set()
    async with context.session() as session:
        webhooks = WebhookService(session)
        done = await _apply_untried(context, webhooks, outcomes, left_alone, deadline)
        if done:
            # Events whose requests found the flag set were committed before this: the last look sees them.
            await drain_finished(context.redis, APPLY_RECEIVED_TASK)
            done = await _apply_untried(context, webhooks, outcomes, left_alone, deadline)
        if not done:
            enqueue(APPLY_RECEIVED_TASK)  # the next run clears the flag when it is done
    for outcome, events in outcomes.items():
        await count(context.redis, "webhook_events", events, outcome=outcome)
    return outcomes.total()


@app.task(name=APPLY_RECEIVED_TASK)
def apply_received_webhooks() -> int:
    """Apply every stored event not tried yet, in batches (requested by the webhook endpoint, one at a time)."""
    return runtime.run(_apply_received)


async def _verify(context: runtime.WorkerContext, reference: str) -> str:
    # A client per verification: verifications are rare, and it keeps no connection across forks or loops.
    async with PaystackClient(context.settings) as paystack, context.session() as session:
        status = await DepositService(session).verify(reference, paystack=paystack, settings=context.settings)
    await verification_finished(context.redis, reference)
    return status


@app.task(name="tasks.payments.verify_deposit", bind=True, max_retries=VERIFY_RETRIES)
def verify_deposit(self, reference: str) -> str:  # type: ignore[no-untyped-def]
    """Ask Paystack about a pending deposit and apply the answer (success credits through the one path)."""
    try:
        return runtime.run(lambda context: _verify(context, reference))
    except Exception as exc:
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=5 * 2**self.request.retries) from exc
        logger.error(
            "verification of deposit %s failed %d times; beat tries again later: %r",
            reference,
            self.request.retries + 1,
            exc,
        )
        runtime.run(lambda context: verification_finished(context.redis, reference))
        return "error"


async def _verify_stale(context: runtime.WorkerContext) -> int:
    async with context.session() as session:
        references = await DepositService(session).references_to_verify(context.settings)
    enqueued = 0
    for reference in references:
        enqueued += await request_verification(context.redis, reference)
    if references:
        logger.info("%d deposits pending too long; %d verifications enqueued", len(references), enqueued)
    return enqueued


@app.task(name="tasks.payments.verify_stale_deposits")
def verify_stale_deposits() -> int:
    """Beat: verify deposits pending longer than DEPOSIT_VERIFY_AFTER_SECONDS (their webhook may never come)."""
    return runtime.run(_verify_stale)


async def _requeue(context: runtime.WorkerContext) -> int:
    async with context.session() as session:
        event_ids = await WebhookService(session).claim_unfinished()
    for event_id in event_ids:
        enqueue(PROCESS_EVENT_TASK, str(event_id))
    if event_ids:
        logger.warning("re-enqueued %d webhook events left unprocessed", len(event_ids))
    return len(event_ids)


@app.task(name="tasks.payments.requeue_unprocessed_webhooks")
def requeue_unprocessed_webhooks() -> int:
    """Beat: re-enqueue webhook events still `received` or `failed` after a minute (a lost enqueue, a crash)."""
    return runtime.run(_requeue)
