"""Redis for caches, sessions, deny-lists, rate limits and settlement notifications.

Each process (API worker, Celery worker) makes its own client on its own event loop, for its lifetime.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

MAX_CONNECTIONS = 100
"""Connections one process opens to Redis; a burst beyond that waits (up to `POOL_TIMEOUT_SECONDS`)."""
POOL_TIMEOUT_SECONDS = 5


def create_redis(url: str) -> Redis:
    # Short timeouts: a Redis that is gone must become a quick 503, not a hung request. A blocking pool:
    # redis-py's default pool fails at once (MaxConnectionsError) when a burst of requests needs more
    # connections than it has, which turned a busy moment into 503s.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_TIMEOUT_SECONDS,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
        # Once more on a fresh connection: a pooled one dies with a Redis restart, and its first command must not
        # fail for it (a refused connection still fails at once).
        retry=Retry(NoBackoff(), 1),
    )
    return Redis.from_pool(pool)
