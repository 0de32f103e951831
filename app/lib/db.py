"""The database plumbing: sessions over the process's one engine, the lock a balance writer takes, and which
failures a transaction may simply run again."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

if TYPE_CHECKING:
    from sqlalchemy.sql.selectable import GenerativeSelect

SelectT = TypeVar("SelectT", bound="GenerativeSelect")

SERIALIZATION_FAILURE = "40001"
DEADLOCK_DETECTED = "40P01"
RETRYABLE_SQLSTATES = frozenset({SERIALIZATION_FAILURE, DEADLOCK_DETECTED})
MAX_TRANSACTION_ATTEMPTS = 6
"""Tries of a transaction that keeps failing with a deadlock or serialisation failure."""
BASE_BACKOFF_SECONDS = 0.02


def session_maker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def for_no_key_update(query: SelectT) -> SelectT:
    """Lock the selected rows `FOR NO KEY UPDATE`: the lock a balance UPDATE takes itself.

    It excludes every other balance writer but not the `FOR KEY SHARE` lock that inserting a row with a
    foreign key to the locked row takes, so a transfer *to* a wallet never waits for one *from* it.
    """
    return query.with_for_update(key_share=True)


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


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with full jitter, so colliding transactions do not collide again in step."""
    return random.uniform(0, BASE_BACKOFF_SECONDS * 2 ** min(attempt, 8))
