"""The database: one async engine per process, and the advanced-alchemy config the API plugs in."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from advanced_alchemy.extensions.litestar import (
    AlembicAsyncConfig,
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.config import PROJECT_ROOT

logger = logging.getLogger(__name__)
T = TypeVar("T")

if TYPE_CHECKING:
    from app.config import Settings

SERIALIZATION_FAILURE = "40001"
DEADLOCK_DETECTED = "40P01"
RETRYABLE_SQLSTATES = frozenset({SERIALIZATION_FAILURE, DEADLOCK_DETECTED})


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        # A pooled connection that died while idle (a database restart or failover, a terminated backend) is
        # replaced at checkout instead of failing the next request with a 503 once the database is back.
        pool_pre_ping=True,
        pool_timeout=5,
        # A server that vanished must become a quick 503, not a request that hangs.
        connect_args={"timeout": 5, "command_timeout": 30, "server_settings": {"application_name": "wallet"}},
    )


def sqlalchemy_config(settings: Settings) -> SQLAlchemyAsyncConfig:
    """The advanced-alchemy config: engine, sessions (committed explicitly by services) and Alembic."""
    return SQLAlchemyAsyncConfig(
        connection_string=settings.database_url,
        engine_config=engine_config(settings),
        session_config=AsyncSessionConfig(expire_on_commit=False),
        session_dependency_key="db_session",
        alembic_config=AlembicAsyncConfig(
            script_location=str(PROJECT_ROOT / "migrations"),
            script_config=str(PROJECT_ROOT / "alembic.ini"),
            version_table_name="alembic_version",
        ),
        create_all=False,
        # Our one exception handler maps repository errors too; advanced-alchemy's would bypass it.
        set_default_exception_handler=False,
    )


def create_engine(settings: Settings) -> AsyncEngine:
    """An engine for a process that is not the API (workers, the command line)."""
    config = engine_config(settings)
    return create_async_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_pre_ping=True,
        pool_timeout=5,
        connect_args=config.connect_args,  # type: ignore[arg-type]
    )


def session_maker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def sqlstate_of(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE behind an exception, however SQLAlchemy or advanced-alchemy wrapped it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        state = getattr(current, "sqlstate", None) or getattr(getattr(current, "orig", None), "sqlstate", None)
        if isinstance(state, str):
            return state
        current = current.__cause__ or current.__context__
    return None


def is_retryable(exc: BaseException) -> bool:
    """A deadlock or serialisation failure: the transaction can simply run again."""
    return sqlstate_of(exc) in RETRYABLE_SQLSTATES


MAX_TRANSACTION_ATTEMPTS = 6
"""Tries of a transaction that keeps failing with a deadlock or serialisation failure."""
BASE_BACKOFF_SECONDS = 0.02


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with full jitter, so colliding transactions do not collide again in step."""
    return random.uniform(0, BASE_BACKOFF_SECONDS * 2 ** min(attempt, 8))


async def run_transaction(session: AsyncSession, transaction: Callable[[], Awaitable[T]]) -> T:
    """Run `transaction` (which commits itself); roll back on any failure, run it again after a deadlock or
    serialisation failure (`is_retryable`), up to `MAX_TRANSACTION_ATTEMPTS` tries; anything else is raised."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await transaction()
        except Exception as exc:
            try:
                await session.rollback()
            except Exception:
                logger.warning("rollback after a failed transaction failed too", exc_info=True)
            if not is_retryable(exc) or attempt >= MAX_TRANSACTION_ATTEMPTS:
                raise
            delay = backoff_seconds(attempt)
            logger.info("transaction hit %r; retry %d in %.3fs", type(exc).__name__, attempt, delay)
            await asyncio.sleep(delay)
