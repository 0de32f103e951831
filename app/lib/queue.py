"""Enqueueing Celery tasks from the API, always after the commit that makes the work visible.

A failed enqueue (Redis down) loses nothing: the database row is the durable record and beat
re-enqueues pending work, so the request still succeeds and the failure is only logged.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def enqueue(task_name: str, *args: Any, countdown: float | None = None) -> bool:
    """Send a task by name; True when the broker took it."""
    from tasks import app as celery_app  # the API imports Celery lazily, only to publish

    try:
        celery_app.send_task(task_name, args=list(args), countdown=countdown, retry=False)
    except Exception:
        logger.warning("could not enqueue %s; beat will pick the work up", task_name, exc_info=True)
        return False
    return True
