"""The Celery tasks the service sends, by name, with their queue and beat schedule: one table for all.

The API publishes tasks by name (`enqueue`) without importing the workers' code; `celeryconfig.py` routes and
schedules from the same table, and each task in `tasks/` is declared with its name from here.
"""

from __future__ import annotations

import enum
import logging
from datetime import timedelta
from typing import Any


class TaskName(enum.StrEnum):
    SETTLE_TRANSFERS = "tasks.ledger.settle_transfers"
    REQUEUE_STALE_TRANSFERS = "tasks.ledger.requeue_stale_transfers"
    CHECK_LEDGER = "tasks.ledger.check_ledger"
    APPLY_RECEIVED_WEBHOOKS = "tasks.payments.apply_received_webhooks"
    PROCESS_WEBHOOK_EVENT = "tasks.payments.process_webhook_event"
    REQUEUE_UNFINISHED_WEBHOOKS = "tasks.payments.requeue_unprocessed_webhooks"
    VERIFY_DEPOSIT = "tasks.payments.verify_deposit"
    VERIFY_STALE_DEPOSITS = "tasks.payments.verify_stale_deposits"
    SWEEP_EXPIRED_KEYS = "tasks.keys.sweep_expired_keys"
    PURGE_IDEMPOTENCY_RECORDS = "tasks.idempotency.purge_expired_records"


class QueueName(enum.StrEnum):
    SETTLEMENT = "settlement"
    WEBHOOKS = "webhooks"
    MAINTENANCE = "maintenance"


QUEUE_OF: dict[TaskName, QueueName] = {
    TaskName.SETTLE_TRANSFERS: QueueName.SETTLEMENT,
    TaskName.APPLY_RECEIVED_WEBHOOKS: QueueName.WEBHOOKS,
    TaskName.PROCESS_WEBHOOK_EVENT: QueueName.WEBHOOKS,
    # Not beside the webhooks: a slow Paystack holds a verification for half a minute, and beat sends up to a
    # hundred at once, which must not hold back the crediting of webhooks already stored.
    TaskName.VERIFY_DEPOSIT: QueueName.MAINTENANCE,
}
"""Where each task runs; any other task runs on `maintenance`."""

BEAT_SCHEDULE: dict[TaskName, timedelta] = {
    TaskName.SWEEP_EXPIRED_KEYS: timedelta(minutes=1),
    TaskName.REQUEUE_STALE_TRANSFERS: timedelta(seconds=15),
    TaskName.CHECK_LEDGER: timedelta(minutes=10),
    TaskName.PURGE_IDEMPOTENCY_RECORDS: timedelta(hours=1),
    TaskName.VERIFY_STALE_DEPOSITS: timedelta(minutes=1),
    TaskName.REQUEUE_UNFINISHED_WEBHOOKS: timedelta(minutes=1),
}
"""Beat's sweeps: what recovers work whose message was lost (Postgres is the record of pending work)."""

logger = logging.getLogger(__name__)


def enqueue(task: TaskName, *args: Any, countdown: float | None = None) -> bool:
    """Publish a task (blocking: call it off the event loop); True when the broker took it.

    A failed publish (Redis down) is only logged: the database row is the durable record of the work, and
    beat's sweeps find it.
    """
    from tasks import app as celery_app  # the API imports Celery lazily, only to publish

    try:
        celery_app.send_task(str(task), args=list(args), countdown=countdown, retry=False)
    except Exception:
        logger.warning("could not enqueue %s; beat will pick the work up", task, exc_info=True)
        return False
    return True
