"""Alembic environment: async engine, one transaction per migration (a failed migration rolls back)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from alembic import context
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import get_settings
from app.db import models as m

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

config = context.config
target_metadata = m.Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().database.url


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=False,
        transaction_per_migration=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_with(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as async_connection:
            await async_connection.run_sync(_run_with)
            await async_connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
elif (given := config.attributes.get("connection")) is not None:
    # `app.lib.migrations` hands over a connection it opened on its own event loop.
    _run_with(given)
else:
    asyncio.run(run_migrations_online())
