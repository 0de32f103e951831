"""Celery's configuration (`celery -A tasks ...` reads it through `tasks/__init__.py`).

Delivery is at least once: a task is acknowledged after it finishes (`task_acks_late`) and given back if
its worker dies (`task_reject_on_worker_lost`), so every task is idempotent; Postgres, not the queue,
is the record of pending work, and beat re-enqueues whatever waits too long.
"""

from __future__ import annotations

from kombu import Queue

from app.config import get_settings
from app.lib.tasks import BEAT_SCHEDULE, QUEUE_OF, QueueName

_settings = get_settings()

broker_url = _settings.redis.url
broker_connection_retry_on_startup = True
broker_connection_timeout = 2
broker_transport_options = {
    # Longer than the longest task; a message from a dead worker comes back after this, and beat's
    # re-enqueue of stale pending work recovers it sooner.
    "visibility_timeout": 3600,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
}
task_ignore_result = True
result_backend = None

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
# Threads by default (`WORKER_POOL`): the tasks spend their time waiting on PostgreSQL, Redis and Paystack,
# each thread runs its own event loop (`tasks/runtime.py`), and one process holds one copy of the code instead
# of `-c` + 1 (about 220 MiB less at -c 2). `WORKER_POOL=prefork` still works and adds the hard
# `task_time_limit`, which the threads pool does not enforce; our tasks bound their own time (drain budgets,
# HTTP and database timeouts). A killed worker loses nothing either way: messages are acknowledged late and
# beat re-enqueues whatever PostgreSQL says is still pending.
worker_pool = _settings.worker.pool
task_time_limit = 300
task_soft_time_limit = 240
# Task events cost a broker publish per task state change (and `task-sent` one more per enqueue): the largest
# single cost of a settled transfer in the benchmark's profile. Off unless CELERY_TASK_EVENTS=true; Flower
# needs no setting, it sends `enable_events` to the workers itself while it runs (only `task-sent` then
# stays off, so Flower shows tasks from `received` on).
worker_send_task_events = _settings.worker.celery_task_events
task_send_sent_event = _settings.worker.celery_task_events
# Logging is ours: the `setup_logging` receiver in `tasks/__init__.py` configures it (our format, `LOG_FORMAT`, a
# file per process role) and Celery then adds no handler of its own. These two only matter if it did not.
worker_hijack_root_logger = False
worker_redirect_stdouts = False

imports = ("tasks.keys", "tasks.ledger", "tasks.idempotency", "tasks.payments", "tasks.withdrawals", "tasks.webhooks")

task_default_queue = QueueName.MAINTENANCE.value
task_queues = tuple(Queue(queue.value) for queue in QueueName)
task_routes = {str(task): {"queue": queue.value} for task, queue in QUEUE_OF.items()} | {
    "tasks.*": {"queue": QueueName.MAINTENANCE.value}
}
beat_schedule = {str(task): {"task": str(task), "schedule": every} for task, every in BEAT_SCHEDULE.items()}
