"""What an API process remembers of verified credentials, forgotten the moment PostgreSQL says they changed.

Triggers (migration 0006) `NOTIFY wallet_credentials` on every change that can end a credential: an API key
updated or deleted (`key:<hash>`), a user deleted (`user:<id>`), a token logged out (`token:<jti>`). Each
process LISTENs on a connection of its own and trusts its cache only while that connection is up: on any loss
it forgets everything and asks PostgreSQL until it listens again. Entries also expire after `ENTRY_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final, Generic, TypeVar
from uuid import UUID

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import asyncpg

logger = logging.getLogger(__name__)

CHANNEL: Final = "wallet_credentials"
LISTENER_APPLICATION_NAME: Final = "wallet-credential-listener"
"""The listener connection's `application_name` in `pg_stat_activity`."""
MAX_ENTRIES: Final = 20_000
ENTRY_SECONDS: Final = 300.0
"""A bound on any staleness, should a notification ever be missed while the connection looked alive."""
RECONNECT_MAX_SECONDS: Final = 5.0
HEALTH_CHECK_SECONDS: Final = 15.0
CONFIRM_SECONDS: Final = 1.0
"""How long a revocation waits for this process's listener to see it before answering."""

V = TypeVar("V")


@dataclass(frozen=True)
class KeyGrant:
    key_id: UUID
    user_id: UUID
    permissions: frozenset[str]
    status: str
    expires_at: datetime


@dataclass(frozen=True)
class TokenGrant:
    user_id: UUID
    email: str


class _Bounded(Generic[V]):
    """A least-recently-used map with a lifetime per entry."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def get(self, key: str) -> V | None:
        found = self._items.get(key)
        if found is None:
            return None
        if found[0] < time.monotonic():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return found[1]

    def put(self, key: str, value: V) -> None:
        self._items[key] = (time.monotonic() + ENTRY_SECONDS, value)
        self._items.move_to_end(key)
        while len(self._items) > MAX_ENTRIES:
            self._items.popitem(last=False)

    def pop(self, key: str) -> V | None:
        found = self._items.pop(key, None)
        return None if found is None else found[1]

    def clear(self) -> None:
        self._items.clear()


class CredentialCache:
    """Verified keys and tokens of this process, trusted only while it listens to PostgreSQL's notifications."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        self._connect = connect
        self.keys: _Bounded[KeyGrant] = _Bounded()
        self.tokens: _Bounded[TokenGrant] = _Bounded()
        self._by_user: dict[UUID, set[tuple[str, str]]] = {}
        self._epoch = 0
        self._listening = asyncio.Event()
        self._awaited: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def trusted(self) -> bool:
        return self._listening.is_set()

    @property
    def epoch(self) -> int:
        """Changes with every invalidation: a lookup that began in an older epoch must not be remembered."""
        return self._epoch

    def remember_key(self, key_hash: str, grant: KeyGrant, since_epoch: int) -> None:
        if self.trusted and since_epoch == self._epoch:
            self.keys.put(key_hash, grant)
            self._by_user.setdefault(grant.user_id, set()).add(("key", key_hash))

    def remember_token(self, jti: str, grant: TokenGrant, since_epoch: int) -> None:
        if self.trusted and since_epoch == self._epoch:
            self.tokens.put(jti, grant)
            self._by_user.setdefault(grant.user_id, set()).add(("token", jti))

    def key(self, key_hash: str) -> KeyGrant | None:
        return self.keys.get(key_hash) if self.trusted else None

    def token(self, jti: str) -> TokenGrant | None:
        return self.tokens.get(jti) if self.trusted else None

    async def confirm(self, notification: str) -> None:
        """Wait (briefly) until this process has seen `notification`: a revocation answers only then.

        The other processes got it from PostgreSQL at the same moment; without a listener nothing is cached.
        """
        if not self.trusted:
            return
        seen = self._awaited.setdefault(notification, asyncio.Event())
        try:
            await asyncio.wait_for(seen.wait(), CONFIRM_SECONDS)
        except TimeoutError:
            logger.warning(
                "credential change %s not seen within %.1fs; forgetting every credential", notification, CONFIRM_SECONDS
            )
            self.forget_everything()
        finally:
            self._awaited.pop(notification, None)

    def invalidate(self, notification: str) -> None:
        """Forget what a change makes stale: `key:<hash>`, `token:<jti>` or `user:<id>`."""
        self._epoch += 1
        kind, _, value = notification.partition(":")
        if kind == "key":
            grant = self.keys.pop(value)
            if grant is not None:
                self._by_user.get(grant.user_id, set()).discard(("key", value))
        elif kind == "token":
            token = self.tokens.pop(value)
            if token is not None:
                self._by_user.get(token.user_id, set()).discard(("token", value))
        elif kind == "user":
            with contextlib.suppress(ValueError):
                for entry_kind, entry in self._by_user.pop(UUID(value), set()):
                    (self.keys if entry_kind == "key" else self.tokens).pop(entry)
        else:
            self.forget_everything()
        waiting = self._awaited.get(notification)
        if waiting is not None:
            waiting.set()

    def forget_everything(self) -> None:
        self._epoch += 1
        self.keys.clear()
        self.tokens.clear()
        self._by_user.clear()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen(), name="credential-listener")

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _listen(self) -> None:
        delay = 0.1
        while not self._stopping:
            lost = asyncio.Event()
            connection: asyncpg.Connection | None = None
            try:
                connection = await self._connect()
                connection.add_termination_listener(lambda _, lost=lost: lost.set())
                await connection.add_listener(CHANNEL, lambda *args: self.invalidate(str(args[-1])))
                # Only now: whatever changed before we listened is not in the (empty) cache.
                self.forget_everything()
                self._listening.set()
                delay = 0.1
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), HEALTH_CHECK_SECONDS)
                    if not lost.is_set():
                        # A connection can die without a word (a network partition): ask it something now and then.
                        await connection.fetchval("SELECT 1", timeout=5)
                logger.warning("credential notifications lost their connection; asking PostgreSQL meanwhile")
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("could not listen for credential changes; asking PostgreSQL meanwhile", exc_info=True)
            finally:
                self._listening.clear()
                self.forget_everything()
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=1)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)
