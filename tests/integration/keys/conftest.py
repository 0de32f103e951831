from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.integration.auth.support import PROBES, browser, running

if TYPE_CHECKING:
    from litestar import Litestar

    from app.config import Settings


@pytest.fixture(scope="module")
async def wallet_app(settings: Settings) -> AsyncIterator[Litestar]:
    """The app with probe routes behind the real guards (no wallet route is needed), started once per module."""
    from app.main import create_app

    async with running(create_app(settings, extra_route_handlers=PROBES)) as app:
        yield app


@pytest.fixture
async def api(wallet_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(wallet_app) as client:
        yield client
