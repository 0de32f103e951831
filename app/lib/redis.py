"""Redis for caches, sessions, deny-lists, rate limits and settlement notifications.

Each process (API worker, Celery worker) makes its own client on its own event loop, for its lifetime.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

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
    )
    return Redis.from_pool(pool)
