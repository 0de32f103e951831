"""Settlement notifications: how `POST /wallet/transfer` learns, without polling, that its transfer settled.

Workers PUBLISH settled references after each batch's commit; each API process runs ONE subscriber that wakes
the requests waiting in that process. Pub/sub is fire and forget: a lost notification only turns a 200 into
a 202, because a waiting request looks at the transfer's status once before it answers 202.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from redis.asyncio.client import Pipeline


logger = logging.getLogger(__name__)

SETTLED_CHANNEL = "wallet:transfers:settled"
"""Pub/sub channel; each message is a JSON array of settled transfer references."""
RECONNECT_MAX_SECONDS = 5.0
POLL_SECONDS = 1.0
STOP_GRACE_SECONDS = 2.0


async def publish_settled(
    redis: Redis, references: Iterable[str], *, also: Iterable[Callable[[Pipeline], object]] = ()
) -> None:
    """Announce settled transfers (after the commit), with `also` in the same round trip. A failure is logged:
    the money has already moved."""
    payload = json.dumps(list(references))
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.publish(SETTLED_CHANNEL, payload)
            for add in also:
                add(pipe)
            await pipe.execute()
    except (RedisError, OSError):
        logger.warning("could not publish settled transfers; waiting requests will answer 202", exc_info=True)


def parse_settled(data: bytes | str) -> list[str]:
    """The references of a notification; an unreadable message is ignored (an empty list)."""
    try:
        decoded = json.loads(data)
    except (ValueError, TypeError):
        return []
    if not isinstance(decoded, list):
        return []
    return [item for item in decoded if isinstance(item, str)]


class SettlementWaiter:
    """One request waiting for one reference. Use as a context manager so the waiter is always removed."""

    def __init__(self, notifier: SettlementNotifier, reference: str, future: asyncio.Future[None]) -> None:
        self._notifier = notifier
        self.reference = reference
        self._future = future

    async def wait(self, seconds: float) -> bool:
        """True when the reference settled within `seconds` (and the subscriber was listening)."""
        if not self._notifier.listening:
            return False
        try:
            await asyncio.wait_for(asyncio.shield(self._future), seconds)
        except TimeoutError:
            return False
        return True

    def __enter__(self) -> SettlementWaiter:
        return self

    def __exit__(self, *_: object) -> None:
        self._notifier.forget(self.reference)


class SettlementNotifier:
    """The API process's single subscriber to `SETTLED_CHANNEL`, reconnecting by itself when Redis goes."""

    def __init__(self, redis_url: str) -> None:
        self._redis_url = redis_url
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._stopping = False

    @property
    def listening(self) -> bool:
        """Subscribed right now: a notification published from now on will reach the waiters."""
        return self._listening.is_set()

    def expect(self, reference: str) -> SettlementWaiter:
        """Register interest in a reference; do this BEFORE enqueueing its settlement."""
        future = self._waiters.get(reference)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._waiters[reference] = future
        return SettlementWaiter(self, reference, future)

    def forget(self, reference: str) -> None:
        future = self._waiters.pop(reference, None)
        if future is not None and not future.done():
            future.cancel()

    def resolve(self, references: Iterable[str]) -> int:
        """Wake the waiters of these references; returns how many were waiting here."""
        woken = 0
        for reference in references:
            future = self._waiters.get(reference)
            if future is not None and not future.done():
                future.set_result(None)
                woken += 1
        return woken

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="settlement-notifier")

    async def stop(self) -> None:
        # A flag as well as cancel(): on Python 3.11 a cancel that lands as a read timeout expires can be
        # swallowed by redis-py's timeout; the loop sees the flag within POLL_SECONDS anyway.
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=POLL_SECONDS + STOP_GRACE_SECONDS)
            if not done:
                logger.warning("the settlement notifier did not stop in time; abandoning it")
        for reference in list(self._waiters):
            self.forget(reference)

    async def _run(self) -> None:
        delay = 0.1
        while not self._stopping:
            # No socket timeout: the connection idles between settlements; health checks find a dead one.
            client = Redis.from_url(self._redis_url, socket_connect_timeout=2, health_check_interval=15)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(SETTLED_CHANNEL)
                self._listening.set()
                delay = 0.1
                while not self._stopping:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_SECONDS)
                    if message is not None and message.get("type") == "message":
                        self.resolve(parse_settled(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._listening.is_set():
                    logger.warning("settlement notifications lost their Redis connection; reconnecting", exc_info=True)
            finally:
                self._listening.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)
