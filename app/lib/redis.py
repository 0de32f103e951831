"""Redis for caches, sessions, deny-lists, rate limits and settlement notifications.

Each process (API worker, Celery worker) makes its own client on its own event loop: the API keeps one
in `app.state.redis` for its lifetime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from redis.asyncio import Redis

if TYPE_CHECKING:
    from litestar.datastructures import State


def create_redis(url: str) -> Redis:
    # Short timeouts: a Redis that is gone must become a quick 503, not a hung request.
    return Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30)


def redis_from_state(state: State) -> Redis:
    """The API process's client, made at start-up."""
    return cast("Redis", state.redis)
