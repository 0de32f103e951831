"""The task messages the service writes itself (`app.lib.tasks.task_message`: one Redis command, no Celery in the
API) are messages a real Celery worker runs: with arguments, on the right queue, and not before their countdown."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from redis.asyncio import Redis

from app.lib.tasks import QueueName, TaskName, enqueue, queue_of, task_message
from tests.support.processes import ServiceProcess


def test_a_message_names_its_task_its_arguments_and_its_queue() -> None:
    message = json.loads(task_message(TaskName.VERIFY_DEPOSIT, "dep-abc", countdown=3))
    assert message["headers"]["task"] == "tasks.payments.verify_deposit"
    assert message["headers"]["eta"] is not None
    assert message["properties"]["delivery_info"]["routing_key"] == queue_of(TaskName.VERIFY_DEPOSIT)
    assert queue_of(TaskName.SETTLE_TRANSFERS) is QueueName.SETTLEMENT
    assert queue_of(TaskName.SWEEP_EXPIRED_KEYS) is QueueName.MAINTENANCE


async def test_a_real_worker_runs_what_enqueue_publishes_with_its_arguments_after_its_countdown(
    worker: ServiceProcess, redis: Redis
) -> None:
    reference = f"dep-{uuid.uuid4().hex}"
    event_id = str(uuid.uuid4())
    sent = time.monotonic()
    assert await enqueue(redis, TaskName.VERIFY_DEPOSIT, reference)
    assert await enqueue(redis, TaskName.PROCESS_WEBHOOK_EVENT, event_id, countdown=2)

    await asyncio.to_thread(worker.wait_for_output, f"verification of unknown deposit {reference} skipped", 30)
    await asyncio.to_thread(worker.wait_for_output, "tasks.payments.process_webhook_event[", 30)
    # An id that names no stored event: the task ran (with the argument it was given) and found nothing.
    await asyncio.to_thread(worker.wait_for_output, "'missing'", 30)
    assert time.monotonic() - sent >= 2
