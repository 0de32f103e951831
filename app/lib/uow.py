"""The unit of work: one owner for every transaction of a request or a task.

`run(body)` runs `body` in a transaction, retries it after a deadlock or serialisation failure, commits once,
and only then runs what `body` registered with `after_commit` (enqueue, publish). Services never commit.
`run_statement` is the same for ONE statement that is a whole transaction by itself, sent on a pooled asyncpg
connection as a prepared statement. Participants (`joined`) write what belongs with a result into its
transaction (`docs/architecture.md`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from app.lib.db import MAX_TRANSACTION_ATTEMPTS, backoff_seconds, is_retryable
from app.lib.pg import connection_from

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")
logger = logging.getLogger(__name__)


class TransactionParticipant(Protocol):
    async def before_commit(self, session: AsyncSession, result: object) -> None:
        """Write what belongs with `result` into the transaction about to commit."""


class UnitOfWork:
    """Transactions on one session (made on first use), one at a time; see the module docstring."""

    def __init__(
        self,
        session: AsyncSession | Callable[[], AsyncSession],
        pool: asyncpg.Pool | None = None,
        *,
        on_commit: Mapping[str, Callable[[], Awaitable[object]]] | None = None,
    ) -> None:
        """Over a session, or a session factory called on first use; `pool` serves `run_statement`.

        `on_commit` maps a note to what follows a commit that carries it: a transaction notes `key` with
        `note(key)`, or code holding only the session puts a true value under `session.info[key]` (the outbox
        does, for the deliveries it creates), and `on_commit[key]()` runs once after that commit.
        """
        self._session: AsyncSession | None = None
        if callable(session):
            self._sessions = session
        else:
            self._session = session
            self._sessions = lambda: session
        self._pool = pool
        self._after_commit: list[Callable[[], Awaitable[object]]] = []
        self._participants: list[TransactionParticipant] = []
        self._in_transaction = False
        self._on_commit = dict(on_commit or {})
        self._notes: set[str] = set()

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            self._session = self._sessions()
        return self._session

    async def close(self) -> None:
        """Give the session's connection back (the end of the request or task)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def after_commit(self, action: Callable[[], Awaitable[object]]) -> None:
        """Run `action` once the running transaction has committed (never if it rolls back)."""
        if not self._in_transaction:
            msg = "after_commit() belongs inside a transaction of the unit of work"
            raise RuntimeError(msg)
        self._after_commit.append(action)

    def note(self, key: str) -> None:
        """The running transaction wants `on_commit[key]` after it commits (see `__init__`)."""
        if not self._in_transaction:
            msg = "note() belongs inside a transaction of the unit of work"
            raise RuntimeError(msg)
        self._notes.add(key)

    def _take_notes(self) -> set[str]:
        notes, self._notes = self._notes, set()
        if self._session is not None:
            notes |= {key for key in self._on_commit if self._session.info.pop(key, None)}
        return notes

    @contextlib.contextmanager
    def joined(self, participant: TransactionParticipant) -> Iterator[None]:
        """Tell `participant` of every transaction committed within the block."""
        self._participants.append(participant)
        try:
            yield
        finally:
            self._participants.remove(participant)

    async def run(self, body: Callable[[], Awaitable[T]]) -> T:
        """Run `body` in a transaction of the session and commit it; see the module docstring.

        Raises:
            Whatever `body` raised (after a rollback), once the retries of a retryable failure are used up.
        """

        async def attempt() -> T:
            try:
                result = await body()
                for participant in self._participants:
                    await participant.before_commit(self.session, result)
                await self.session.commit()
            except Exception:
                await self._roll_back()
                raise
            return result

        return await self._retrying(attempt)

    async def run_statement(self, statement: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `statement`, which sends ONE SQL statement: a transaction by itself, committed when it returns.

        On a pooled asyncpg connection in autocommit (one round trip, a prepared statement); inside a session
        transaction instead when participants must write their part with it. Retried like `run`.
        """
        pool = self._pool
        if self._participants or pool is None:
            return await self.run(lambda: self._on_session_connection(statement))

        async def attempt() -> T:
            async with connection_from(pool) as connection:
                return await statement(connection)

        return await self._retrying(attempt)

    async def read(self, body: Callable[[], Awaitable[T]]) -> T:
        """Run a read-only `body`, then end its transaction so the connection goes back to the pool."""
        try:
            return await body()
        finally:
            await self._roll_back()

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        if self._in_transaction:
            msg = "a unit of work runs one transaction at a time: it does not nest"
            raise RuntimeError(msg)
        tries = 0
        while True:
            tries += 1
            self._after_commit = []
            self._take_notes()  # whatever an attempt that rolled back noted is void
            self._in_transaction = True
            try:
                result = await attempt()
            except Exception as exc:
                if not is_retryable(exc) or tries >= MAX_TRANSACTION_ATTEMPTS:
                    raise
                delay = backoff_seconds(tries)
                logger.info("transaction hit %r; retry %d in %.3fs", type(exc).__name__, tries, delay)
                await asyncio.sleep(delay)
                continue
            finally:
                self._in_transaction = False
            break
        actions, self._after_commit = self._after_commit, []
        actions += [self._on_commit[key] for key in sorted(self._take_notes()) if key in self._on_commit]
        for action in actions:
            try:
                await action()
            except Exception:  # the transaction is committed: what follows it must not undo the answer
                logger.warning("an action after a commit failed", exc_info=True)
        return result

    async def _on_session_connection(self, statement: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        connection: Any = await (await self.session.connection()).get_raw_connection()
        return await statement(connection.driver_connection)

    async def _roll_back(self) -> None:
        if self._session is None:
            return
        try:
            await self._session.rollback()
        except Exception:
            logger.warning("rollback after a failed transaction failed too", exc_info=True)
