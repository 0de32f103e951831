"""The `wallet` command line: `migrate`, and `up` with nothing configured or reachable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.lib.infra import drop_database_async, free_port
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


@pytest.mark.e2e
def test_wallet_up_starts_everything_with_embedded_servers_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = service_env(
        WALLET_DATA_DIR=str(tmp_path / "data"),
        WALLET_LOCAL_POSTGRES=f"127.0.0.1:{free_port()}",
        WALLET_LOCAL_REDIS=f"127.0.0.1:{free_port()}",
        LOG_FILE=str(tmp_path / "app.log"),
    )
    env.pop("DATABASE_URL")
    env.pop("REDIS_URL")
    log = (tmp_path / "up.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "up", "--port", str(port)],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output = tmp_path / "up.log"
    try:
        deadline = time.monotonic() + 120
        while "Wallet service is up" not in output.read_text():
            assert process.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.2)
        text = output.read_text()
        assert "PostgreSQL (embedded)" in text
        assert "Redis (embedded)" in text
        assert f"http://127.0.0.1:{port}/docs" in text
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert health.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 0, output.read_text()
        assert "stopped" in output.read_text()
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
