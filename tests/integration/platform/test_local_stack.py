"""Every `wallet` command finds the servers a running `wallet up` announced, and says in one line what it tried
when nothing answers."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from app.config import Settings
from app.lib import local_stack
from app.lib.infra import drop_database_async, free_port
from app.lib.migrations import model_differences
from tests.support.processes import PROJECT_ROOT, service_env


def _wallet(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = service_env(WALLET_DATA_DIR=str(data_dir), WALLET_ENV_FILE=str(data_dir / "no.env"), **env)
    for unset in ("DATABASE_URL", "REDIS_URL"):
        if unset not in env:
            environment.pop(unset, None)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=environment,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _fresh_database_url(settings: Settings) -> str:
    base, _, rest = settings.database.url.rpartition("/")
    query = "?" + rest.split("?", 1)[1] if "?" in rest else ""
    return f"{base}/wallet_up_{uuid.uuid4().hex[:8]}{query}"


async def test_a_command_without_database_url_uses_the_database_of_the_running_wallet_up(
    settings: Settings, tmp_path: Path
) -> None:
    url = _fresh_database_url(settings)
    announced = local_stack.RunningStack(
        pid=os.getpid(), api_url="http://127.0.0.1:1", settings={"DATABASE_URL": url, "REDIS_URL": settings.redis.url}
    )
    path = local_stack.announce(announced, tmp_path)
    assert path.stat().st_mode & 0o077 == 0, "the sandbox's key is in it: its owner's only"
    try:
        result = _wallet("migrate", data_dir=tmp_path)
        assert result.returncode == 0, result.stderr
        assert await model_differences(url) == [], "the announced database was migrated"
        checked = _wallet("ledger", "check", data_dir=tmp_path)
        assert checked.returncode == 0, checked.stderr
    finally:
        await drop_database_async(url)


def test_a_configured_database_url_wins_over_the_running_wallet_up(settings: Settings, tmp_path: Path) -> None:
    closed = f"postgresql+asyncpg://postgres:hunter2@127.0.0.1:{free_port()}/nowhere"
    local_stack.announce(
        local_stack.RunningStack(pid=os.getpid(), api_url="", settings={"DATABASE_URL": settings.database.url}),
        tmp_path,
    )
    result = _wallet("ledger", "check", data_dir=tmp_path, DATABASE_URL=closed)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: could not check the ledger:"), line
    assert "from DATABASE_URL" in line
    assert "hunter2" not in line, "a password never reaches the terminal"


def test_a_file_left_by_a_killed_wallet_up_is_ignored(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    local_stack.announce(
        local_stack.RunningStack(pid=dead.pid, api_url="", settings={"DATABASE_URL": "postgresql+asyncpg://x@h/y"}),
        tmp_path,
    )
    assert local_stack.running(tmp_path) is None


def test_unreachable_database_is_one_line_naming_what_was_tried_for_every_database_command(tmp_path: Path) -> None:
    port = free_port()
    closed = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/wallet"
    for command in (["migrate"], ["ledger", "check"], ["review", "list"]):
        result = _wallet(*command, data_dir=tmp_path, DATABASE_URL=closed)
        assert result.returncode in {1, 2}, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (command, result.stderr)
        assert "Traceback" not in result.stderr
        assert f"127.0.0.1:{port}" in lines[0], (command, lines[0])


def test_worker_options_after_the_command_go_to_celery() -> None:
    from app.cli import build_parser, cmd_worker

    args, extra = build_parser().parse_known_args(["worker", "-c", "1", "-Q", "settlement"])
    assert args.handler is cmd_worker
    assert extra == ["-c", "1", "-Q", "settlement"]


def test_wallet_help_groups_the_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "--help"], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True
    )
    for group in ("Try it and run it:", "Set up and check:", "Operate:"):
        assert group in result.stdout
    assert "doctor" in result.stdout
