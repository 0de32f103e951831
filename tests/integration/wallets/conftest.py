"""Fixtures of the wallet tests, and the suite-wide guard: the ledger must balance when the run ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx
import pytest

from app.domain.wallets.checks import check_ledger
from app.lib.db import session_maker

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


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
