"""Waiting for what workers do asynchronously: a wait for work, never a speed check."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import select

from app.db import models as m

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

WORKER_DEADLINE_SECONDS = 30.0


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], *, timeout: float = WORKER_DEADLINE_SECONDS
) -> T:
    """Poll `probe` until `accept` holds; the last value otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if accept(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


async def wait_for(
    check: Callable[[], Awaitable[bool]], *, timeout: float = WORKER_DEADLINE_SECONDS, interval: float = 0.1, what: str
) -> None:
    """Poll `check` until it holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout}s waiting for {what}"
            raise AssertionError(msg)
        await asyncio.sleep(interval)


async def balance_of(db: AsyncSession, wallet_id: UUID) -> int:
    await db.rollback()
    return int(await db.scalar(select(m.Wallet.balance).where(m.Wallet.id == wallet_id)) or 0)


async def wait_until_settled(db: AsyncSession, references: Iterable[str], *, timeout: float = 30) -> None:
    wanted = list(references)

    async def settled() -> bool:
        await db.rollback()
        statuses = (await db.scalars(select(m.Transfer.status).where(m.Transfer.reference.in_(wanted)))).all()
        return len(statuses) == len(wanted) and all(status == "success" for status in statuses)

    await wait_for(settled, timeout=timeout, what=f"{len(wanted)} transfers to settle")
