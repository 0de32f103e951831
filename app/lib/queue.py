"""Enqueueing Celery tasks, always after the commit that makes the work visible.

A failed enqueue (Redis down) loses nothing: the database row is the durable record and beat
re-enqueues pending work, so the request still succeeds and the failure is only logged.

Work that any run of one task drains completely (settle every pending transfer, apply every received
webhook event) is *requested* rather than enqueued per item: `request_drain` enqueues the task only when no
run is pending or running, marked by a Redis `SET NX` flag with a short TTL. The run drains, clears the flag
(`drain_finished`) and then looks for work once more. Work is committed before its request tries the flag,
so work whose request found the flag set is seen by that last look at the latest. A flag whose run never
comes (the message lost, the worker gone) expires by itself, and beat's sweeps re-enqueue whatever waits
too long. Under load this turns one task per item into one run at a time that takes, batch after batch,
everything that arrived during the previous batch.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

DRAIN_REQUEST_TTL_SECONDS = 10
"""How long a request flag lives: a run that has not finished by then no longer holds off another one."""


def enqueue(task_name: str, *args: Any, countdown: float | None = None) -> bool:
    """Send a task by name; True when the broker took it."""
    from tasks import app as celery_app  # the API imports Celery lazily, only to publish

    try:
        celery_app.send_task(task_name, args=list(args), countdown=countdown, retry=False)
    except Exception:
        logger.warning("could not enqueue %s; beat will pick the work up", task_name, exc_info=True)
        return False
    return True


def drain_flag(task_name: str) -> str:
    """The Redis key that marks a pending request for a draining task."""
    return f"drain:requested:{task_name}"


async def request_drain(redis: Redis, task_name: str) -> bool:
    """Make sure a run of `task_name` looks for work after this call (call it after the work's commit).

    Returns:
        True when a run is requested (by this call or one still pending), False when the broker could not
        be reached (beat's sweep picks the work up).
    """
    flag = drain_flag(task_name)
    try:
        flagged = bool(await redis.set(flag, "1", nx=True, ex=DRAIN_REQUEST_TTL_SECONDS))
        if not flagged:
            return True
    except (RedisError, OSError):
        # Without the flag, enqueue anyway: the broker may still be reachable, and a run too many is harmless.
        logger.warning("could not flag a request for %s; enqueueing it unflagged", task_name)
        flagged = False
    # Celery's publish blocks (up to its connect timeout when Redis is down): keep it off the loop.
    if await asyncio.to_thread(enqueue, task_name):
        return True
    if flagged:
        # Nobody will run: let the next request try again rather than trust a flag without a task.
        await drain_finished(redis, task_name)
    return False


async def drain_finished(redis: Redis, task_name: str) -> None:
    """Clear the request flag; a draining run calls this when it found no more work, then looks once more."""
    try:
        await redis.delete(drain_flag(task_name))
    except (RedisError, OSError):
        logger.warning("could not clear the request flag of %s; it expires by itself", task_name)
