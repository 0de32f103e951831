"""Work drained by one run at a time (`Drain`), and work done once per key (`KeyedRequests`).

Whoever commits drainable work calls `request` after the commit; a run takes batch after batch, clears its
Redis flag, then looks once more, so work committed before the flag was cleared is never left behind. Why
nothing is lost, and how beat recovers what a lost message leaves: `docs/architecture.md` ("Draining").
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from app.lib.metrics import counted
from app.lib.tasks import TaskName, enqueue, queue_of, task_message

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

logger = logging.getLogger(__name__)

TIME_BUDGET_SECONDS = 60.0
"""One run drains for at most this long, then hands over to a fresh run (task time limits are 240/300 s)."""
FLAG_TTL_SECONDS = 10
"""How long a request flag lives: a run that has not finished by then no longer holds off another one."""
BROKER_BACKOFF_SECONDS = 5.0
"""After a request failed to reach Redis, skip requesting this long: beat drains the backlog meanwhile."""


_REQUEST = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
    redis.call('LPUSH', KEYS[2], ARGV[2])
    return 1
end
return 0
"""
"""Set the flag (or marker) if absent and, only then, publish the task: atomic, one round trip. Sent with EVAL
(Redis caches the compiled script): EVALSHA through a pipeline would cost a SCRIPT EXISTS round trip each time."""


class Drain:
    """The request/drain/clear/last-look/hand-over protocol of one task (see the module docstring)."""

    def __init__(self, task: TaskName) -> None:
        self.task = task
        self.flag = f"drain:requested:{task}"
        # Per Redis client: an outage of one server says nothing of another (a process may hold several).
        self._broker_down_until: weakref.WeakKeyDictionary[Redis, float] = weakref.WeakKeyDictionary()

    async def request(self, redis: Redis, *, also: Callable[[Pipeline], object] | None = None) -> bool:
        """Make sure a run looks for work after this call; call it after the work's commit.

        One Redis round trip: the flag set only if absent, the task published only if this call set it
        (`_REQUEST`), and `also` (a metric's increment, say) in the same pipeline.

        Returns:
            True when a run is requested (by this call or one still pending); False when Redis could not be
            reached, now or within the last `BROKER_BACKOFF_SECONDS` (beat's sweep picks the work up).
        """
        if time.monotonic() < self._broker_down_until.get(redis, 0.0):
            return False
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.eval(_REQUEST, 2, self.flag, str(queue_of(self.task)), FLAG_TTL_SECONDS, task_message(self.task))
                if also is not None:
                    also(pipe)
                await pipe.execute()
        except (RedisError, OSError):
            self._broker_down_until[redis] = time.monotonic() + BROKER_BACKOFF_SECONDS
            logger.warning("could not request a run of %s; beat will", self.task)
            return False
        return True

    async def hand_over(self, redis: Redis) -> bool:
        """Publish a run whatever the flag says (beat's sweep; a run out of time)."""
        return await enqueue(redis, self.task)

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
                await self.hand_over(redis)  # the flag stays set: the next run clears it
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


class CoalescedRequests:
    """A process's requests of one drain when nobody waits for them: at most one in flight, the rest folded.

    Each `request()` is made after its work's commit. While one request is on its way to Redis, the calls that
    arrive are folded into one more request sent after it, so every commit is still followed by a request sent
    after that commit (what the drain protocol needs), at one Redis round trip per in-flight window instead of
    one per call. `counter`, if given, is incremented by the number of calls each request carries. One per
    process and Redis client (the API process holds them); `close()` sends what is still folded.
    """

    def __init__(self, drain: Drain, redis: Redis, *, counter: str | None = None) -> None:
        self.drain = drain
        self.redis = redis
        self.counter = counter
        self._calls = 0
        self._sender: asyncio.Task[None] | None = None

    def request(self) -> None:
        self._calls += 1
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        while self._calls:
            calls, self._calls = self._calls, 0
            also = counted(self.counter, calls) if self.counter else None
            await self.drain.request(self.redis, also=also)

    async def close(self) -> None:
        if self._sender is not None and not self._sender.done():
            await self._sender


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

        One Redis round trip (`_REQUEST`). Never raises: without Redis nothing is enqueued now, and beat asks again
        later.
        """
        try:
            published = await redis.eval(  # type: ignore[misc]
                _REQUEST,
                2,
                self.marker(key),
                str(queue_of(self.task)),
                self.marker_ttl_seconds,
                task_message(self.task, key),
            )
        except (RedisError, OSError):
            logger.warning("could not request %s for %s; not enqueued", self.task, key)
            return False
        return bool(published)

    async def finished(self, redis: Redis, key: str) -> None:
        """Clear the in-flight marker of `key`, so the next request may enqueue again."""
        try:
            await redis.delete(self.marker(key))
        except (RedisError, OSError):
            logger.warning("could not clear the in-flight marker of %s for %s; it expires by itself", self.task, key)
