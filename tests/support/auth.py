"""Shared by the auth and keys tests: probe routes behind the real guards, the app started in the test's loop,
an in-loop HTTP client, and the `wallet_app` and `api` fixtures their conftests take from here."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from litestar import get
from litestar.di import NamedDependency

from app.domain.auth.guards import USER_ONLY_SECURITY, USER_OR_KEY_SECURITY, Caller, Permission, requires

if TYPE_CHECKING:
    from litestar import Litestar

    from app.config import Settings

BASE_URL = "http://testserver.local"
GOOGLE_CLIENT_ID = "wallet-test-client"
SHUTDOWN_TIMEOUT_SECONDS = 10


def _who(caller: Caller) -> dict[str, Any]:
    return {
        "user_id": str(caller.user_id),
        "via": caller.via,
        "api_key_id": caller.api_key_id and str(caller.api_key_id),
    }


@get("/test/probe/read", guards=[requires(Permission.READ)], security=USER_OR_KEY_SECURITY, sync_to_thread=False)
def probe_read(caller: NamedDependency[Caller]) -> dict[str, Any]:
    """A route needing `read`, like the wallet's read endpoints."""
    return _who(caller)


@get("/test/probe/deposit", guards=[requires(Permission.DEPOSIT)], security=USER_OR_KEY_SECURITY, sync_to_thread=False)
def probe_deposit(caller: NamedDependency[Caller]) -> dict[str, Any]:
    return _who(caller)


@get(
    "/test/probe/withdraw", guards=[requires(Permission.WITHDRAW)], security=USER_OR_KEY_SECURITY, sync_to_thread=False
)
def probe_withdraw(caller: NamedDependency[Caller]) -> dict[str, Any]:
    """A route needing `withdraw`, as the withdrawal endpoints will."""
    return _who(caller)


@get("/test/probe/user-only", guards=[requires(None)], security=USER_ONLY_SECURITY, sync_to_thread=False)
def probe_user_only(caller: NamedDependency[Caller]) -> dict[str, Any]:
    return _who(caller)


PROBES = [probe_read, probe_deposit, probe_withdraw, probe_user_only]


@asynccontextmanager
async def running(app: Litestar) -> AsyncIterator[Litestar]:
    """The app started (database, Redis) on the test's own event loop.

    The lifespan is entered and left by one task of its own: anyio refuses to leave it from another
    task, which is what a pytest fixture's teardown would do.
    """
    started, stop = asyncio.Event(), asyncio.Event()

    async def serve() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(serve())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # the start-up failed: raise its error
    try:
        yield app
    finally:
        stop.set()
        done, _ = await asyncio.wait({task}, timeout=SHUTDOWN_TIMEOUT_SECONDS)
        if task in done:
            task.result()
        else:
            # A shutdown hook that never returns must not hang the suite; say so loudly instead.
            warnings.warn(
                f"the app did not shut down within {SHUTDOWN_TIMEOUT_SECONDS}s; left running",
                RuntimeWarning,
                stacklevel=2,
            )


def browser(app: Litestar) -> httpx.AsyncClient:
    """A client with its own cookie jar, calling the running app in-loop: unlike `AsyncTestClient`, whose
    requests run one at a time on another thread, concurrent requests from here really overlap."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


@pytest.fixture(scope="module")
async def wallet_app(settings: Settings) -> AsyncIterator[Litestar]:
    """The app with the test settings and probe routes behind the real guards, started once per module.

    A fixture of the auth and keys folders: their conftests import it (and `api`) from here."""
    from app.main import create_app

    async with running(create_app(settings, extra_route_handlers=PROBES)) as app:
        yield app


@pytest.fixture
async def api(wallet_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(wallet_app) as client:
        yield client
