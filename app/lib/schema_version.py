"""Is the database at the latest migration? Answered without importing Alembic.

The API checks this at every start-up outside production; Alembic (with Mako and its dialect
modules, about 10 MiB per process) is imported only when a migration actually has to run.
"""

from __future__ import annotations

import re
from functools import cache

from sqlalchemy import pool, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import PROJECT_ROOT

_VERSIONS = PROJECT_ROOT / "migrations" / "versions"
_REVISION = re.compile(r"""^revision\s*(?::\s*str\s*)?=\s*['"]([^'"]+)['"]""", re.MULTILINE)
_DOWN_REVISION = re.compile(r"""^down_revision\s*(?::[^=]*)?=\s*['"]([^'"]+)['"]""", re.MULTILINE)


@cache
def latest_revision() -> str:
    """The one revision no other migration builds on (the chain is linear; a branch is an error)."""
    revisions: set[str] = set()
    built_on: set[str] = set()
    for path in _VERSIONS.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        if revision := _REVISION.search(source):
            revisions.add(revision.group(1))
        if down := _DOWN_REVISION.search(source):
            built_on.add(down.group(1))
    heads = revisions - built_on
    if len(heads) != 1:
        raise RuntimeError(f"migrations must form one chain, found heads {sorted(heads)}")
    return heads.pop()


async def current_revision(database_url: str) -> str | None:
    engine = create_async_engine(database_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            try:
                return (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
            except ProgrammingError:  # no alembic_version table: an empty database
                return None
    finally:
        await engine.dispose()


async def ensure_migrated(database_url: str) -> bool:
    """Migrate to the latest revision when behind; True when migrations were applied."""
    if await current_revision(database_url) == latest_revision():
        return False
    from app.lib import migrations

    return await migrations.ensure_migrated(database_url)
