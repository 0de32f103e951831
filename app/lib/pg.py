"""Plain asyncpg connections for the hot statements: a pool that hands out only connections that are alive.

A connection that sat idle in the pool longer than `IDLE_PING_SECONDS` is pinged when it is taken (a restart
or failover may have killed it meanwhile); one that fails the ping is dropped and another taken, so the first
request after the database comes back succeeds. Under load connections are reused within milliseconds and
never pinged. No reset query is sent on release: the service's statements leave no session state behind.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import asyncpg

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

IDLE_PING_SECONDS = 0.25
ACQUIRE_TIMEOUT_SECONDS = 5.0
"""A connection not free within this is a 503 (`is_unavailable`), not a request that hangs."""

_released_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


class _DeadConnection(Exception):
    """A pooled connection that did not answer its ping: it is dropped, and another one taken."""


async def _on_release(connection: Any) -> None:
    _released_at[connection] = time.monotonic()


async def _on_acquire(proxy: PoolConnectionProxy) -> None:
    connection = proxy._con  # noqa: SLF001 - asyncpg's proxy offers no public way to the connection's identity
    released = _released_at.get(connection)
    if released is not None and time.monotonic() - released > IDLE_PING_SECONDS:
        try:
            await connection.fetchval("SELECT 1", timeout=2)
        except Exception as exc:  # any failure of a ping means the connection is of no use
            raise _DeadConnection from exc


async def create_pool(max_size: int, **connect: Any) -> asyncpg.Pool:
    return await asyncpg.create_pool(min_size=0, max_size=max_size, setup=_on_acquire, reset=_on_release, **connect)


@contextlib.asynccontextmanager
async def connection_from(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A live pooled connection (see the module docstring), given back when the block ends."""
    for attempt in range(pool.get_max_size() + 1):
        try:
            async with pool.acquire(timeout=ACQUIRE_TIMEOUT_SECONDS) as connection:
                yield connection
                return
        except _DeadConnection:
            if attempt == pool.get_max_size():
                raise
