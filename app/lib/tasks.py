"""The Celery tasks the service sends, by name, with their queue and beat schedule: one table for all.

Tasks are published by name (`enqueue`: one Redis command, without importing Celery or the workers' code);
`celeryconfig.py` routes and schedules from the same table, and each task in `tasks/` is declared with its
name from here.
"""

from __future__ import annotations

import base64
import enum
import json
import logging
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

if TYPE_CHECKING:
    from redis.asyncio import Redis


class TaskName(enum.StrEnum):
    SETTLE_TRANSFERS = "tasks.ledger.settle_transfers"
    REQUEUE_STALE_TRANSFERS = "tasks.ledger.requeue_stale_transfers"
    CHECK_LEDGER = "tasks.ledger.check_ledger"
    APPLY_RECEIVED_WEBHOOKS = "tasks.payments.apply_received_webhooks"
    PROCESS_WEBHOOK_EVENT = "tasks.payments.process_webhook_event"
    REQUEUE_UNFINISHED_WEBHOOKS = "tasks.payments.requeue_unprocessed_webhooks"
    VERIFY_DEPOSIT = "tasks.payments.verify_deposit"
    VERIFY_STALE_DEPOSITS = "tasks.payments.verify_stale_deposits"
    PAY_OUT = "tasks.withdrawals.pay_out"
    CHECK_STALE_WITHDRAWALS = "tasks.withdrawals.check_stale_withdrawals"
    DELIVER_WEBHOOKS = "tasks.webhooks.deliver_webhooks"
    REQUEST_DUE_DELIVERIES = "tasks.webhooks.request_due_webhook_deliveries"
    SWEEP_EXPIRED_KEYS = "tasks.keys.sweep_expired_keys"
    PURGE_IDEMPOTENCY_RECORDS = "tasks.idempotency.purge_expired_records"


class QueueName(enum.StrEnum):
    SETTLEMENT = "settlement"
    WEBHOOKS = "webhooks"
    WEBHOOKS_OUT = "webhooks_out"
    MAINTENANCE = "maintenance"


QUEUE_OF: dict[TaskName, QueueName] = {
    TaskName.SETTLE_TRANSFERS: QueueName.SETTLEMENT,
    TaskName.APPLY_RECEIVED_WEBHOOKS: QueueName.WEBHOOKS,
    TaskName.PROCESS_WEBHOOK_EVENT: QueueName.WEBHOOKS,
    # Not beside the webhooks: a slow Paystack holds a verification for half a minute, and beat sends up to a
    # hundred at once, which must not hold back the crediting of webhooks already stored.
    TaskName.VERIFY_DEPOSIT: QueueName.MAINTENANCE,
    # Sending to the users' own services: a receiver that hangs holds only this queue's slots.
    TaskName.DELIVER_WEBHOOKS: QueueName.WEBHOOKS_OUT,
}
"""Where each task runs; any other task runs on `maintenance`."""

BEAT_SCHEDULE: dict[TaskName, timedelta] = {
    TaskName.SWEEP_EXPIRED_KEYS: timedelta(minutes=1),
    TaskName.REQUEUE_STALE_TRANSFERS: timedelta(seconds=15),
    TaskName.CHECK_LEDGER: timedelta(minutes=10),
    TaskName.PURGE_IDEMPOTENCY_RECORDS: timedelta(hours=1),
    TaskName.VERIFY_STALE_DEPOSITS: timedelta(minutes=1),
    TaskName.REQUEUE_UNFINISHED_WEBHOOKS: timedelta(minutes=1),
    TaskName.CHECK_STALE_WITHDRAWALS: timedelta(minutes=1),
    TaskName.REQUEST_DUE_DELIVERIES: timedelta(seconds=15),
}
"""Beat's sweeps: what recovers work whose message was lost (Postgres is the record of pending work)."""

logger = logging.getLogger(__name__)


def queue_of(task: TaskName) -> QueueName:
    return QUEUE_OF.get(task, QueueName.MAINTENANCE)


def task_message(task: TaskName, *args: Any, countdown: float | None = None) -> str:
    """A Celery task message (protocol 2, kombu's Redis envelope), as `send_task` would write it.

    Built here so the API can publish with one Redis command instead of carrying Celery and kombu (their import
    and their per-publish client) for it; `tests/integration/platform/test_task_messages.py` has a real worker
    consume these.
    """
    task_id = str(uuid.uuid4())
    eta = (datetime.now(UTC) + timedelta(seconds=countdown)).isoformat() if countdown else None
    body = [list(args), {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    return json.dumps(
        {
            "body": base64.b64encode(json.dumps(body).encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py",
                "task": str(task),
                "id": task_id,
                "shadow": None,
                "eta": eta,
                "expires": None,
                "group": None,
                "group_index": None,
                "retries": 0,
                "timelimit": [None, None],
                "root_id": task_id,
                "parent_id": None,
                "argsrepr": repr(tuple(args)),
                "kwargsrepr": "{}",
                "origin": _ORIGIN,
                "ignore_result": True,
                "replaced_task_nesting": 0,
                "stamped_headers": None,
                "stamps": {},
            },
            "properties": {
                "correlation_id": task_id,
                "reply_to": None,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": str(queue_of(task))},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


_ORIGIN = f"wallet-{os.getpid()}@{socket.gethostname()}"


async def enqueue(redis: Redis, task: TaskName, *args: Any, countdown: float | None = None) -> bool:
    """Publish a task on its queue; True when Redis took it.

    A failed publish (Redis down) is only logged: the database row is the durable record of the work, and
    beat's sweeps find it.
    """
    try:
        await redis.lpush(str(queue_of(task)), task_message(task, *args, countdown=countdown))
    except (RedisError, OSError):
        logger.warning("could not enqueue %s; beat will pick the work up", task)
        return False
    return True
