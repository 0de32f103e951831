"""Work drained by one run at a time (`Drain`), and work done once per key (`KeyedRequests`).

Whoever commits drainable work calls `request` after the commit; a run takes batch after batch, clears its
Redis flag, then looks once more, so work committed before the flag was cleared is never left behind. Why
nothing is lost, and how beat recovers what a lost message leaves: `docs/architecture.md` ("Draining").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from app.lib.tasks import TaskName, enqueue

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

TIME_BUDGET_SECONDS = 60.0
"""One run drains for at most this long, then hands over to a fresh run (task time limits are 240/300 s)."""
FLAG_TTL_SECONDS = 10
"""How long a request flag lives: a run that has not finished by then no longer holds off another one."""
BROKER_BACKOFF_SECONDS = 5.0
"""After a request failed to reach Redis, skip requesting this long: beat drains the backlog meanwhile."""


class Drain:
    """The request/drain/clear/last-look/hand-over protocol of one task (see the module docstring)."""

    def __init__(self, task: TaskName) -> None:
        self.task = task
        self.flag = f"drain:requested:{task}"
        self._broker_down_until = 0.0

    async def request(self, redis: Redis) -> bool:
        """Make sure a run looks for work after this call; call it after the work's commit.

        Returns:
            True when a run is requested (by this call or one still pending); False when Redis could not be
            reached, now or within the last `BROKER_BACKOFF_SECONDS` (beat's sweep picks the work up).
        """
        if time.monotonic() < self._broker_down_until:
            return False
        try:
            flagged = bool(await redis.set(self.flag, "1", nx=True, ex=FLAG_TTL_SECONDS))
            if not flagged:
                return True
        except (RedisError, OSError):
            # Without the flag, enqueue anyway: the broker may still be reachable, and a run too many is harmless.
            logger.warning("could not flag a request for %s; enqueueing it unflagged", self.task)
            flagged = False
        # Celery's publish blocks (up to its connect timeout when Redis is down): keep it off the loop.
        if await asyncio.to_thread(enqueue, self.task):
            return True
        self._broker_down_until = time.monotonic() + BROKER_BACKOFF_SECONDS
        if flagged:
            await self._clear(redis)  # nobody will run: let the next request try again
        return False

    def hand_over(self) -> bool:
        """Enqueue a run whatever the flag says (beat's sweep; a run out of time). Blocking."""
        return enqueue(self.task)

    async def run(self, redis: Redis, take_batch: Callable[[], Awaitable[int]]) -> int:
        """Call `take_batch` (which returns how much it did, 0 when nothing is left) until the work is drained.

        Returns:
            The total `take_batch` reported.
        """
        deadline = time.monotonic() + TIME_BUDGET_SECONDS
        done = 0
        last_look = False
        while True:
            taken = await take_batch()
            done += taken
            if time.monotonic() > deadline:
                await asyncio.to_thread(self.hand_over)  # the flag stays set: the next run clears it
                return done
            if taken:
                continue  # while batches find work the flag stays set, so requests keep relying on this run
            if last_look:
                return done
            await self._clear(redis)
            last_look = True

    async def _clear(self, redis: Redis) -> None:
        try:
            await redis.delete(self.flag)
        except (RedisError, OSError):
            logger.warning("could not clear the request flag of %s; it expires by itself", self.task)


class KeyedRequests:
    """At most one task in flight per key; the task calls `finished(key)` when it ends, however it ends."""

    def __init__(self, task: TaskName, *, marker_ttl_seconds: int) -> None:
        self.task = task
        self.marker_ttl_seconds = marker_ttl_seconds
        """How long a task counts as in flight if it never clears its marker (a killed worker)."""

    def marker(self, key: str) -> str:
        return f"in-flight:{self.task}:{key}"

    async def request(self, redis: Redis, key: str) -> bool:
        """Enqueue the task for `key` unless one is in flight; True when this call enqueued it.

        Never raises: without Redis nothing is enqueued now, and beat asks again later.
        """
        try:
            if not await redis.set(self.marker(key), "1", nx=True, ex=self.marker_ttl_seconds):
                return False
        except (RedisError, OSError):
            logger.warning("could not mark %s for %s in flight; not enqueued", self.task, key)
            return False
        if await asyncio.to_thread(enqueue, self.task, key):
            return True
        await self.finished(redis, key)
        return False

    async def finished(self, redis: Redis, key: str) -> None:
        """Clear the in-flight marker of `key`, so the next request may enqueue again."""
        try:
            await redis.delete(self.marker(key))
        except (RedisError, OSError):
            logger.warning("could not clear the in-flight marker of %s for %s; it expires by itself", self.task, key)
