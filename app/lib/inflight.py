"""Each request's body read whole before anything else runs, and a bound on each caller's requests in flight.

`RequestBodyMiddleware` reads the body within `REQUEST_BODY_TIMEOUT_SECONDS` (408 after it), so a client
dribbling a body holds no database connection; guards `hold_slot` one of the caller's
`MAX_REQUESTS_IN_FLIGHT_PER_CALLER` slots, so one credential cannot take a process's pool (more wait their turn).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app.lib.errors import PayloadTooLarge, RateLimited, RequestTimeout

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

    from app.config import HttpSettings

_RELEASES_KEY = "wallet.releases"
SLOT_WAIT_SECONDS = 10.0
BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


class CallerSlots:
    """Per-process counting semaphores, one per caller, made on demand and dropped when idle."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 1)
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._users: dict[str, int] = {}

    def in_use(self, caller: str) -> int:
        semaphore = self._semaphores.get(caller)
        return 0 if semaphore is None else self.limit - semaphore._value  # noqa: SLF001

    async def acquire(self, caller: str, wait_seconds: float = SLOT_WAIT_SECONDS) -> Callable[[], None]:
        """Take one of `caller`'s slots (waiting for one if all are taken); returns its release.

        Raises:
            RateLimited: no slot freed up within `wait_seconds`.
        """
        semaphore = self._semaphores.setdefault(caller, asyncio.Semaphore(self.limit))
        self._users[caller] = self._users.get(caller, 0) + 1
        try:
            async with asyncio.timeout(wait_seconds):
                await semaphore.acquire()
        except TimeoutError:
            self._forget(caller)
            raise RateLimited(
                "Too many of your requests are in flight at once; retry when some have finished.",
                headers={"Retry-After": "1"},
            ) from None
        except BaseException:
            self._forget(caller)
            raise
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                semaphore.release()
                self._forget(caller)

        return release

    def _forget(self, caller: str) -> None:
        users = self._users.get(caller, 0) - 1
        if users <= 0:
            self._users.pop(caller, None)
            self._semaphores.pop(caller, None)
        else:
            self._users[caller] = users


def on_request_end(scope: Scope, action: Callable[[], None]) -> None:
    """Run `action` when the request's response is done (or the request failed), whatever happened."""
    scope.setdefault("state", {}).setdefault(_RELEASES_KEY, []).append(action)


async def hold_slot(scope: Scope, slots: CallerSlots, caller: str) -> None:
    """Hold one of `caller`'s in-flight slots until the request ends (see the module docstring)."""
    on_request_end(scope, await slots.acquire(caller))


class RequestBodyMiddleware:
    """Reads the body before the route runs, within the settings' time and size bounds; ends held slots."""

    def __init__(self, app: ASGIApp, http: HttpSettings) -> None:
        self.app = app
        self.http = http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]
            await self.app(scope, receive, send)
            return
        try:
            if scope.get("method") in BODYLESS_METHODS and not _announces_body(scope):
                await self.app(scope, receive, send)
                return
            body = await _read_body(receive, self.http)
            if body is None:
                return  # the client went away before sending its body
            delivered = False

            async def replay() -> ReceiveMessage:
                nonlocal delivered
                if not delivered:
                    delivered = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
        finally:
            for release in scope.get("state", {}).pop(_RELEASES_KEY, []):
                release()


def _announces_body(scope: Scope) -> bool:
    return any(name in (b"content-length", b"transfer-encoding") for name, _ in scope.get("headers", []))


async def _read_body(receive: Receive, http: HttpSettings) -> bytes | None:
    """The whole body, or None if the client disconnected first.

    Raises:
        RequestTimeout: the body did not arrive within `REQUEST_BODY_TIMEOUT_SECONDS` (the connection closes).
        PayloadTooLarge: the body is larger than `MAX_BODY_BYTES` (the rest is not read; the connection closes).
    """
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(http.request_body_timeout_seconds):
            while True:
                message: Any = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > http.max_body_bytes:
                    raise PayloadTooLarge(headers={"Connection": "close"})
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise RequestTimeout(headers={"Connection": "close"}) from None
