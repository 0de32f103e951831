"""Fixtures of the hostile-input tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import pytest

from tests.support.hostile import Footprint, footprint_of

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from tests.support.users import TestUser


@pytest.fixture
def footprint(engine: AsyncEngine) -> Callable[[TestUser], Awaitable[Footprint]]:
    """`await footprint(user)`: the user's balance, ledger entries, transfers, deposits, keys and claims."""

    async def read(user: TestUser) -> Footprint:
        return await footprint_of(engine, user)

    return read
