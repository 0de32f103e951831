"""The newcomer's first hour: the README's walkthrough, as written, against `wallet up` on a machine with no
PostgreSQL or Redis (embedded servers) and no Paystack account (the sandbox); then Ctrl-C leaves nothing.

The block is read from README.md itself, so the README cannot drift from what works. Two things are adapted,
and only these: the API's port (a free one, not 8000) and `uv run`, which a shim on PATH runs inside this
test's environment (the same installed `wallet` entry point).
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from app.lib import local_stack
from app.lib.infra import free_port
from tests.support.processes import PROJECT_ROOT, service_env

pytestmark = pytest.mark.e2e

README = PROJECT_ROOT / "README.md"
README_API = "API=http://127.0.0.1:8000"


def readme_walkthrough() -> str:
    """The fenced bash block right after the README's walkthrough marker."""
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- walkthrough[^>]*-->\s*```bash\n(.*?)```", text, re.DOTALL)
    assert found, "README.md lost its walkthrough block (or its marker)"
    return found.group(1)


def test_the_readme_walkthrough_block_starts_from_the_documented_address() -> None:
    assert README_API in readme_walkthrough().splitlines()[0]


def _shell_env(tmp_path: Path, data_dir: Path) -> dict[str, str]:
    """The newcomer's second shell: nothing configured, `uv run X` meaning X from this environment."""
    shim = tmp_path / "bin"
    shim.mkdir()
    uv = shim / "uv"
    uv.write_text('#!/bin/sh\n[ "$1" = run ] && shift\nexec "$@"\n')
    uv.chmod(uv.stat().st_mode | stat.S_IEXEC)
    env = service_env(
        WALLET_DATA_DIR=str(data_dir),
        WALLET_ENV_FILE=str(tmp_path / "no.env"),
        PATH=f"{shim}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    for configured in ("DATABASE_URL", "REDIS_URL", "PAYSTACK_SECRET_KEY", "PAYSTACK_BASE_URL"):
        env.pop(configured, None)
    return env


def _wait_for_line(output: Path, process: subprocess.Popen[bytes], line: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while line not in (text := output.read_text()):
        assert process.poll() is None, text
        assert time.monotonic() < deadline, text
        time.sleep(0.2)
    return text


def _started_by(pid: int, data_dir: Path) -> list[psutil.Process]:
    """`wallet up`'s processes: its descendants, and the embedded PostgreSQL, which `pg_ctl` detaches."""
    family = {p.pid: p for p in psutil.Process(pid).children(recursive=True)}
    for process in psutil.process_iter(["cmdline"]):
        if any(str(data_dir) in part for part in process.info["cmdline"] or []):
            family.setdefault(process.pid, process)
    return list(family.values())


def _wallet_json(env: dict[str, str], *args: str) -> dict[str, object]:
    result = subprocess.run(
        ["wallet", *args], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_a_newcomer_runs_the_readme_walkthrough_on_embedded_servers_and_the_paystack_sandbox(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    env = _shell_env(tmp_path, data_dir)
    port = free_port()
    up_env = {
        **env,
        # Nothing listens on these: `wallet up` must start embedded servers, as on a fresh machine.
        "WALLET_LOCAL_POSTGRES": f"127.0.0.1:{free_port()}",
        "WALLET_LOCAL_REDIS": f"127.0.0.1:{free_port()}",
        "LOG_FILE": str(tmp_path / "logs" / "app.log"),
    }
    output = tmp_path / "up.log"
    with output.open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "up", "--port", str(port)],
            env=up_env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        text = _wait_for_line(output, up, "Wallet service is up")
        assert "PostgreSQL (embedded)" in text
        assert "Redis (embedded)" in text
        assert "Paystack sandbox: http://127.0.0.1:" in text
        api = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{api}/health", timeout=5).json() == {
            "status": "ok",
            "checks": {"database": "ok", "redis": "ok"},
        }

        script = readme_walkthrough().replace(README_API, f"API={api}", 1)
        walked = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert walked.returncode == 0, f"{walked.stdout}\n{walked.stderr}\n{output.read_text()[-4000:]}"
        assert '"balance":500000' in walked.stdout.replace(" ", ""), walked.stdout

        ada = _wallet_json(env, "token", "--email", "ada@example.com", "--json")
        bob = _wallet_json(env, "token", "--email", "bob@example.com", "--json")
        for who, expected in ((ada, 500_000 - 150_000 - 50_000), (bob, 150_000 + 50_000)):
            balance = httpx.get(
                f"{api}/wallet/balance", headers={"Authorization": f"Bearer {who['access_token']}"}, timeout=10
            )
            assert balance.status_code == 200
            assert balance.json()["balance"] == expected, (who["email"], balance.json())
        checked = subprocess.run(
            ["wallet", "ledger", "check"], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr

        family = _started_by(up.pid, data_dir)
        assert len(family) >= 6, "sandbox, API, worker, beat and the embedded PostgreSQL and Redis"
        os.killpg(up.pid, signal.SIGINT)
        assert up.wait(timeout=90) == 0, output.read_text()[-4000:]
        _, alive = psutil.wait_procs(family, timeout=10)
        assert alive == [], f"left behind: {[p.pid for p in alive]}"
        assert local_stack.running(data_dir) is None
        assert not local_stack.state_file(data_dir).exists()
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{api}/health", timeout=2)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
