"""Fixtures of the wallet tests, and the suite-wide guard: the ledger must balance when the run ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy import select

from app.db import models as m
from app.domain.keys.secrets import display_prefix, generate_secret, hash_secret
from app.domain.wallets.checks import check_ledger
from app.lib.db import session_maker

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession


@pytest.fixture(scope="session", autouse=True)
async def ledger_balances_when_the_run_ends(engine: AsyncEngine) -> AsyncIterator[None]:
    """After every test of the run (whichever domain moved money), every ledger invariant must hold."""
    yield
    async with session_maker(engine)() as session:
        report = await check_ledger(session)
    assert report.ok, "the ledger is broken at the end of the run:\n" + "\n".join(report.violations)


@pytest.fixture
async def api(live_api: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the real API (uvicorn), sized for bursts of concurrent requests."""
    limits = httpx.Limits(max_connections=250, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=live_api, timeout=60, limits=limits) as client:
        yield client


async def balance_of(db: AsyncSession, wallet_id: UUID) -> int:
    await db.rollback()
    return int(await db.scalar(select(m.Wallet.balance).where(m.Wallet.id == wallet_id)) or 0)


async def wait_for(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 30, interval: float = 0.1, what: str = "condition"
) -> None:
    """Poll `check` until it holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout}s waiting for {what}"
            raise AssertionError(msg)
        await asyncio.sleep(interval)


async def wait_until_settled(db: AsyncSession, references: Iterable[str], *, timeout: float = 30) -> None:
    wanted = list(references)

    async def settled() -> bool:
        await db.rollback()
        statuses = (await db.scalars(select(m.Transfer.status).where(m.Transfer.reference.in_(wanted)))).all()
        return len(statuses) == len(wanted) and all(status == "success" for status in statuses)

    await wait_for(settled, timeout=timeout, what=f"{len(wanted)} transfers to settle")


async def add_api_key(db: AsyncSession, user_id: UUID, permissions: list[str]) -> dict[str, str]:
    """A live API key for the user with these permissions; returns its request headers."""
    secret = generate_secret()
    db.add(
        m.ApiKey(
            user_id=user_id,
            name="wallet-tests",
            key_hash=hash_secret(secret),
            prefix=display_prefix(secret),
            permissions=permissions,
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
    )
    await db.commit()
    return {"x-api-key": secret}
