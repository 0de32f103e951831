"""The unit of work: one owner for every transaction of a request or a task.

`run(body)` runs `body` in a transaction, retries it after a deadlock or serialisation failure, commits once,
and only then runs what `body` registered with `after_commit` (enqueue, publish). Services never commit.
Participants (`joined`) write what belongs with a result into its transaction (`docs/architecture.md`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Protocol, TypeVar

from app.lib.db import MAX_TRANSACTION_ATTEMPTS, backoff_seconds, is_retryable

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")
logger = logging.getLogger(__name__)


class TransactionParticipant(Protocol):
    async def before_commit(self, session: AsyncSession, result: object) -> None:
        """Write what belongs with `result` into the transaction about to commit."""


class UnitOfWork:
    """Transactions on one session, one at a time (see the module docstring)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._after_commit: list[Callable[[], Awaitable[object]]] = []
        self._participants: list[TransactionParticipant] = []
        self._in_transaction = False

    def after_commit(self, action: Callable[[], Awaitable[object]]) -> None:
        """Run `action` once the running transaction has committed (never if it rolls back)."""
        if not self._in_transaction:
            msg = "after_commit() belongs inside UnitOfWork.run()"
            raise RuntimeError(msg)
        self._after_commit.append(action)

    @contextlib.contextmanager
    def joined(self, participant: TransactionParticipant) -> Iterator[None]:
        """Tell `participant` of every transaction committed within the block."""
        self._participants.append(participant)
        try:
            yield
        finally:
            self._participants.remove(participant)

    async def run(self, body: Callable[[], Awaitable[T]]) -> T:
        """Run `body` in a transaction and commit it; see the module docstring.

        Raises:
            Whatever `body` raised (after a rollback), once the retries of a retryable failure are used up.
        """
        if self._in_transaction:
            msg = "UnitOfWork.run() does not nest: one transaction at a time"
            raise RuntimeError(msg)
        attempt = 0
        while True:
            attempt += 1
            self._after_commit = []
            self._in_transaction = True
            try:
                result = await body()
                for participant in self._participants:
                    await participant.before_commit(self.session, result)
                await self.session.commit()
            except Exception as exc:
                await self._roll_back()
                if not is_retryable(exc) or attempt >= MAX_TRANSACTION_ATTEMPTS:
                    raise
                delay = backoff_seconds(attempt)
                logger.info("transaction hit %r; retry %d in %.3fs", type(exc).__name__, attempt, delay)
                await asyncio.sleep(delay)
                continue
            finally:
                self._in_transaction = False
            break
        actions, self._after_commit = self._after_commit, []
        for action in actions:
            try:
                await action()
            except Exception:  # the transaction is committed: what follows it must not undo the answer
                logger.warning("an action after a commit failed", exc_info=True)
        return result

    async def read(self, body: Callable[[], Awaitable[T]]) -> T:
        """Run a read-only `body`, then end its transaction so the connection goes back to the pool."""
        try:
            return await body()
        finally:
            await self._roll_back()

    async def _roll_back(self) -> None:
        try:
            await self.session.rollback()
        except Exception:
            logger.warning("rollback after a failed transaction failed too", exc_info=True)
