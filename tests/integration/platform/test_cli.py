"""The `wallet` command line: `migrate` and unsafe starts (`up` itself: `test_walkthrough.py`)."""

from __future__ import annotations

import subprocess
import sys
import uuid

from app.config import Settings
from app.lib.infra import drop_database_async
from app.lib.migrations import model_differences
from tests.support.processes import PROJECT_ROOT, service_env


def _wallet(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )


async def test_wallet_migrate_creates_the_database_and_applies_every_migration(settings: Settings) -> None:
    base, _, rest = settings.database.url.rpartition("/")
    query = "?" + rest.split("?", 1)[1] if "?" in rest else ""
    url = f"{base}/wallet_cli_{uuid.uuid4().hex[:8]}{query}"
    try:
        result = _wallet("migrate", env=service_env(DATABASE_URL=url))
        assert result.returncode == 0, result.stderr
        assert "migrations applied" in result.stdout
        assert await model_differences(url) == []
    finally:
        await drop_database_async(url)


def test_wallet_token_is_refused_in_production_like_every_unsafe_start() -> None:
    result = _wallet("api", env=service_env(APP_ENV="production", JWT_SECRET="short"))
    assert result.returncode == 2
    assert "JWT_SECRET" in result.stderr
