"""Where `wallet up` put its servers, so that every other `wallet` command finds them.

`wallet up` may run embedded PostgreSQL (on a Unix socket under `.wallet-data/`), an embedded Redis on a free
port and the Paystack sandbox: addresses nobody could guess. While it runs it keeps them in
`.wallet-data/up.json` (readable by its owner only: the sandbox's key is in it) and removes the file when it
stops. A command started without `DATABASE_URL`/`REDIS_URL` (in the environment or `.env`) adopts them when
that `wallet up` is still alive; a configured setting always wins.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from app.config import PROJECT_ROOT, configured_variables, get_settings

DATA_DIR = Path(os.environ.get("WALLET_DATA_DIR", PROJECT_ROOT / ".wallet-data"))
STATE_FILE_NAME = "up.json"
_adopted_from: dict[str, int] = {}
"""Settings this process took from a running `wallet up`, and its pid."""


@dataclass(frozen=True)
class RunningStack:
    """What a running `wallet up` offers, as the settings that reach it."""

    pid: int
    api_url: str
    settings: dict[str, str]
    """Environment variables (`DATABASE_URL`, `REDIS_URL`, the sandbox's `PAYSTACK_*`) and their values."""


def state_file(data_dir: Path | None = None) -> Path:
    return (data_dir or DATA_DIR) / STATE_FILE_NAME


def announce(stack: RunningStack, data_dir: Path | None = None) -> Path:
    """Record the running stack; only its owner can read the file."""
    path = state_file(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        json.dump(asdict(stack), out)
    temporary.replace(path)
    return path


def withdraw(data_dir: Path | None = None) -> None:
    """Forget the stack, if the file is this process's own (a second `wallet up` must not erase the first's)."""
    stack = running(data_dir)
    if stack is None or stack.pid == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            state_file(data_dir).unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(data_dir: Path | None = None) -> RunningStack | None:
    """The stack a live `wallet up` announced; a file left by one that was killed is ignored."""
    try:
        raw = json.loads(state_file(data_dir).read_text(encoding="utf-8"))
        stack = RunningStack(pid=int(raw["pid"]), api_url=str(raw["api_url"]), settings=dict(raw["settings"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return stack if _alive(stack.pid) else None


def adopt(data_dir: Path | None = None) -> RunningStack | None:
    """Point this process at the running `wallet up`'s servers for each setting the operator left unset."""
    stack = running(data_dir)
    if stack is None:
        return None
    chosen = configured_variables()
    adopted = {name: value for name, value in stack.settings.items() if name not in chosen}
    # The sandbox's key only goes with the sandbox's address: never pair it with a configured Paystack.
    if "PAYSTACK_BASE_URL" not in adopted:
        adopted = {name: value for name, value in adopted.items() if not name.startswith("PAYSTACK_")}
    os.environ.update(adopted)
    _adopted_from.update(dict.fromkeys(adopted, stack.pid))
    get_settings.cache_clear()
    return stack


def where_from(variable: str) -> str:
    """Where the current value of a setting came from, for an error that names what was tried."""
    if variable in _adopted_from:
        return f"the running `wallet up` (pid {_adopted_from[variable]})"
    if variable in configured_variables():
        return variable
    return f"the default: {variable} is unset and no `wallet up` is running"
