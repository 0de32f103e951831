"""The migrations build exactly the models, run in a transaction, and go down and up again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from app.config import Settings
from app.lib.infra import create_database_if_missing, drop_database
from app.lib.migrations import downgrade_async, ensure_migrated, model_differences, upgrade_async
from app.lib.schema_version import current_revision, latest_revision
from app.main import create_app


@pytest.fixture
def scratch_database(settings: Settings) -> Iterator[str]:
    base, _, rest = settings.database.url.rpartition("/")
    query = "?" + rest.split("?", 1)[1] if "?" in rest else ""
    url = f"{base}/wallet_scratch_{uuid.uuid4().hex[:8]}{query}"
    create_database_if_missing(url)
    yield url
    drop_database(url)


async def test_models_and_migrations_agree(settings: Settings) -> None:
    assert await model_differences(settings.database.url) == []


async def test_downgrade_to_base_then_upgrade_again_leaves_no_difference(scratch_database: str) -> None:
    await upgrade_async(scratch_database)
    await downgrade_async(scratch_database, "base")
    await upgrade_async(scratch_database)
    assert await model_differences(scratch_database) == []


async def test_ledger_rows_are_immutable_and_balances_cannot_go_negative(scratch_database: str) -> None:
    await upgrade_async(scratch_database)
    dsn = scratch_database.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    try:
        journal = await connection.fetchval(
            "INSERT INTO ledger_journals (kind, reference) VALUES ('deposit', 'r1') RETURNING id"
        )
        await connection.execute(
            "INSERT INTO ledger_entries (journal_id, account_id, amount) VALUES ($1, 1, -5), ($1, 2, 5)", journal
        )
        with pytest.raises(asyncpg.RestrictViolationError, match="immutable"):
            await connection.execute("UPDATE ledger_entries SET amount = 50 WHERE journal_id = $1", journal)
        with pytest.raises(asyncpg.RestrictViolationError, match="immutable"):
            await connection.execute("DELETE FROM ledger_journals WHERE id = $1", journal)
        with pytest.raises(asyncpg.UniqueViolationError):
            await connection.execute("INSERT INTO ledger_journals (kind, reference) VALUES ('deposit', 'r1')")
        user_id = uuid.uuid4()
        await connection.execute(
            "INSERT INTO users (id, email, email_verified, created_at, updated_at) VALUES ($1, 'a@b.c', true, now(), now())",
            user_id,
        )
        account = await connection.fetchval("INSERT INTO ledger_accounts (code) VALUES ('wallet:x') RETURNING id")
        with pytest.raises(asyncpg.CheckViolationError):
            await connection.execute(
                "INSERT INTO wallets (id, user_id, number, balance, currency, ledger_account_id, created_at, updated_at)"
                " VALUES ($1, $2, '1234567890123', -1, 'NGN', $3, now(), now())",
                uuid.uuid4(),
                user_id,
                account,
            )
        with pytest.raises(asyncpg.CheckViolationError):
            await connection.execute(
                "INSERT INTO wallets (id, user_id, number, balance, currency, ledger_account_id, created_at, updated_at)"
                " VALUES ($1, $2, '12345', 0, 'NGN', $3, now(), now())",
                uuid.uuid4(),
                user_id,
                account,
            )
    finally:
        await connection.close()


async def test_a_migration_failing_half_way_rolls_back_completely(scratch_database: str) -> None:
    """Migrations run in a transaction: a failure half way leaves no partial schema behind."""
    dsn = scratch_database.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    try:
        # The first migration creates `transfers` after most other tables: make that step fail.
        await connection.execute("CREATE TABLE transfers (id int)")
    finally:
        await connection.close()
    with pytest.raises(Exception, match="transfers"):
        await upgrade_async(scratch_database)
    connection = await asyncpg.connect(dsn)
    try:
        users = await connection.fetchval("SELECT to_regclass('public.users')")
        versions = await connection.fetchval("SELECT to_regclass('public.alembic_version')")
        applied = await connection.fetchval("SELECT count(*) FROM alembic_version") if versions else 0
    finally:
        await connection.close()
    assert users is None, "tables created before the failure must have been rolled back"
    assert applied == 0


async def test_concurrent_start_ups_migrate_a_fresh_database_once(scratch_database: str) -> None:
    results = await asyncio.gather(*(ensure_migrated(scratch_database) for _ in range(3)))
    assert sorted(results) == [False, False, True]
    assert await model_differences(scratch_database) == []


async def test_the_api_migrates_a_fresh_database_at_start_up_outside_production(
    scratch_database: str, settings: Settings
) -> None:
    app = create_app(settings.replaced(database_url=scratch_database))
    async with AsyncTestClient(app=app) as client:
        assert (await client.get("/health")).json()["checks"]["database"] == "ok"
    assert await model_differences(scratch_database) == []


async def test_the_start_up_check_knows_the_same_head_as_alembic_and_sees_a_migrated_database(
    scratch_database: str,
) -> None:
    from alembic.script import ScriptDirectory

    from app.lib.migrations import alembic_config

    assert latest_revision() == ScriptDirectory.from_config(alembic_config(scratch_database)).get_current_head()
    assert await current_revision(scratch_database) is None
    await upgrade_async(scratch_database)
    assert await current_revision(scratch_database) == latest_revision()


def test_the_api_does_not_import_alembic_when_the_schema_is_current() -> None:
    import subprocess
    import sys

    probe = "import sys, app.main; print('alembic' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
