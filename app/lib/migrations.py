"""Apply and check Alembic migrations programmatically (`wallet migrate`, tests, `wallet up`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import PROJECT_ROOT
from app.db import models as m

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


async def _run(database_url: str, action: Callable[[Config], None]) -> None:
    engine = create_async_engine(database_url, poolclass=pool.NullPool)
    config = alembic_config(database_url)

    def with_connection(connection: Connection) -> None:
        config.attributes["connection"] = connection
        action(config)

    try:
        async with engine.connect() as connection:
            await connection.run_sync(with_connection)
            await connection.commit()
    finally:
        await engine.dispose()


MIGRATION_LOCK_ID = 7_340_011
"""Key of the advisory lock that serialises concurrent start-ups applying migrations."""


async def ensure_migrated(database_url: str) -> bool:
    """Bring the schema to the latest migration unless it is there already (development and test start-up).

    Concurrent callers (several API processes starting at once) queue on an advisory lock, so the
    migrations run once. Returns True when migrations were applied.
    """
    config = alembic_config(database_url)
    head = ScriptDirectory.from_config(config).get_current_head()
    engine = create_async_engine(database_url, poolclass=pool.NullPool)

    def migrate_if_behind(connection: Connection) -> bool:
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        try:
            if MigrationContext.configure(connection).get_current_revision() == head:
                return False
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            # Committed before the lock is released: the next start-up in line must read the new revision.
            connection.commit()
            return True
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})

    try:
        async with engine.connect() as connection:
            applied = await connection.run_sync(migrate_if_behind)
            await connection.commit()
            return applied
    finally:
        await engine.dispose()


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    await _run(database_url, lambda config: command.upgrade(config, revision))


async def downgrade_async(database_url: str, revision: str) -> None:
    await _run(database_url, lambda config: command.downgrade(config, revision))


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision`, each in its own transaction."""
    asyncio.run(upgrade_async(database_url, revision))


def downgrade(database_url: str, revision: str) -> None:
    asyncio.run(downgrade_async(database_url, revision))


async def model_differences(database_url: str) -> list[Any]:
    """What autogenerate would change: empty when the models and the migrated schema agree."""

    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, m.Base.metadata))

    engine = create_async_engine(database_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()
