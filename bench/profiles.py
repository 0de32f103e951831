"""The cProfile run: the service restarted under `bench/profiling/sitecustomize.py`, its loads, its largest costs.

A separate run after the measured ones (cProfile slows Python several times over): the uniform transfers and a
webhook burst again, each window's profiles dumped by label, then merged per role and named by package and
by function. What is reported is CPU time of each thread, so waiting costs nothing.
"""

from __future__ import annotations

import os
import pstats
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.config import PROJECT_ROOT
from bench.loadgen import TRANSFER, WEBHOOK, WEBHOOK_REFERENCE_PLACEHOLDER

if TYPE_CHECKING:
    from bench.scenarios import Scenarios
    from tests.support.paystack_standin import PaystackStandIn

HOOK_DIR = Path(__file__).resolve().parent / "profiling"


def profiling_env(directory: Path) -> dict[str, dict[str, str]]:
    """The extra environment of the API and the worker that turns the profiling hook on."""
    hook = {
        "PYTHONPATH": os.pathsep.join([str(HOOK_DIR), str(PROJECT_ROOT)]),
        "WALLET_BENCH_PROFILE_DIR": str(directory),
    }
    return {
        "api": hook | {"WALLET_BENCH_PROFILE_ROLE": "api"},
        "worker": hook | {"WALLET_BENCH_PROFILE_ROLE": "worker"},
    }


async def profiled_loads(
    scenarios: Scenarios,
    wallets: list[tuple[str, str]],
    standin: PaystackStandIn,
    directory: Path,
) -> dict[str, Any]:
    """Uniform transfers then a webhook burst against the profiled service; the largest costs of each."""
    params = scenarios.params
    control = directory / "control"
    # Long enough a warm-up that lazy imports and first connections are behind us.
    warmup = min(params.warmup_s, 3.0)
    transfers = await scenarios.scenario(
        "uniform_profiled",
        TRANSFER,
        "uniform transfers under cProfile (slower than unprofiled; for where the time goes)",
        [replace(spec, warmup=warmup) for spec in scenarios.uniform(wallets, scenarios.service.port)],
        duration=params.profile_duration_s,
        profile=(control, "transfers"),
    )
    template = standin.build_charge_success(WEBHOOK_REFERENCE_PLACEHOLDER)
    webhooks = await scenarios.scenario(
        "webhook_burst_profiled",
        WEBHOOK,
        "webhook burst under cProfile",
        [
            scenarios.spec(
                WEBHOOK,
                (),
                index,
                warmup=warmup,
                webhook_template=template,
                webhook_secret=standin.secret_key,
                reference_prefix=f"bench-{scenarios.stamp}-profiled",
            )
            for index in range(params.loadgen_processes)
        ],
        duration=min(params.profile_duration_s, params.webhook_duration_s),
        profile=(control, "webhooks"),
        drain_timeout_s=5.0,
    )
    return {
        "transfers": {
            "accepted_per_s_while_profiled": transfers["accepted_per_s"],
            "settled_per_s_while_profiled": transfers.get("settled_per_s"),
            "api": summarize_profiles(directory, "api", "transfers"),
            "worker": summarize_profiles(directory, "worker", "transfers"),
        },
        "webhooks": {
            "accepted_per_s_while_profiled": webhooks["accepted_per_s"],
            "api": summarize_profiles(directory, "api", "webhooks"),
            "worker": summarize_profiles(directory, "worker", "webhooks"),
        },
    }


# Where a process blocks rather than computes (cProfile measures wall time): the event loop waiting for
# I/O, sleeps, locks, a thread pool's idle workers, and blocking reads of a socket or pipe.
_WAITING = (
    "<method 'poll' of 'select.epoll' objects>",
    "<built-in method select.select>",
    "<built-in method time.sleep>",
    "<method 'acquire' of '_thread.lock' objects>",
    "<method 'acquire' of '_thread.RLock' objects>",
    "<method 'get' of '_queue.SimpleQueue' objects>",
    "<built-in method posix.read>",
    "<built-in method posix.waitpid>",
    "<method 'recv' of '_socket.socket' objects>",
    "<method 'recv_into' of '_socket.socket' objects>",
    "<method 'run_forever' of 'uvloop.loop.Loop' objects>",
    "<method 'run_until_complete' of 'uvloop.loop.Loop' objects>",
)


COST_CENTRES = {
    "Celery publish of a task (send_task)": ("celery/app/base.py", "send_task"),
    "Celery event messages (task-sent, task-received/started/succeeded)": ("celery/events/dispatcher.py", "_publish"),
    "kombu building a redis-py client per publish (_create_client)": ("kombu/transport/redis.py", "_create_client"),
    "JWT signature and claims check (decode_token)": ("app/domain/auth/tokens.py", "decode_token"),
    "webhook signature check (is_valid_signature)": ("app/domain/payments/paystack.py", "is_valid_signature"),
}
"""Synchronous call trees whose cumulative CPU is worth naming. Only synchronous ones: cProfile's cumulative
time is unreliable across coroutine suspensions and SQLAlchemy's greenlet switches, self time is not."""


def _cost_centres(entries: dict[tuple[str, int, str], Any], busy: float) -> list[dict[str, Any]]:
    centres = []
    for label, (path, name) in COST_CENTRES.items():
        matches = [entry for key, entry in entries.items() if key[0].endswith(path) and key[2] == name]
        if matches:
            cumulative = max(entry[3] for entry in matches)
            calls = sum(entry[1] for entry in matches)
            centres.append(
                {
                    "what": label,
                    "cumulative_s": round(cumulative, 2),
                    "share_of_busy": round(cumulative / busy, 3),
                    "calls": calls,
                }
            )
    return sorted(centres, key=lambda centre: -centre["cumulative_s"])


def _is_waiting(function: tuple[str, int, str]) -> bool:
    return function[0] == "~" and function[2] in _WAITING


def _short_path(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    root = str(PROJECT_ROOT) + "/"
    if path.startswith(root):
        return path[len(root) :]
    if "/lib/python3" in path:
        return path.split("/lib/python3", 1)[1].split("/", 1)[-1]
    return path


def _label(function: tuple[str, int, str]) -> str:
    path, line, name = function
    if path == "~":
        return name
    return f"{_short_path(path)}:{line}({name})"


def _package(function: tuple[str, int, str]) -> str:
    path = function[0]
    if path == "~":
        return "C built-ins (socket, hashing, json, ...)"
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    root = str(PROJECT_ROOT) + "/"
    if path.startswith(root):
        return path[len(root) :].split("/", 1)[0].removesuffix(".py") + " (ours)"
    if "/lib/python3" in path:
        return "stdlib " + path.split("/lib/python3", 1)[1].split("/", 2)[1].removesuffix(".py")
    return path


def summarize_profiles(directory: Path, role: str, label: str, top: int = 15) -> dict[str, Any]:
    """Merge the role's cProfile dumps of one window and name its largest costs, by package and by function."""
    files, loaded = sorted(directory.glob(f"{role}-*-{label}.prof")), []
    by_thread: dict[str, float] = defaultdict(float)
    for path in files:
        try:
            one = pstats.Stats(str(path))
        except (OSError, EOFError, ValueError, TypeError):
            continue  # empty (a thread that ran no Python in the window) or cut short by the process's exit
        loaded.append(one)
        thread = "main thread" if path.name.endswith(f"-main-{label}.prof") else "other threads"
        by_thread[thread] += sum(e[2] for k, e in one.stats.items() if not _is_waiting(k))  # type: ignore[attr-defined]
    if not loaded:
        return {"processes": 0, "note": "no profile was written"}
    stats = loaded[0]
    for more in loaded[1:]:
        stats.add(more)
    entries: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in entries.values())
    waiting = {key: entry for key, entry in entries.items() if _is_waiting(key)}
    busy = max(total - sum(entry[2] for entry in waiting.values()), 1e-9)
    packages: dict[str, float] = defaultdict(float)
    for key, entry in entries.items():
        if key not in waiting:
            packages[_package(key)] += entry[2]
    functions = sorted(((key, entry) for key, entry in entries.items() if key not in waiting), key=lambda kv: -kv[1][2])
    ours = sorted(
        (
            (key, entry)
            for key, entry in entries.items()
            if key[0].startswith((str(PROJECT_ROOT / "app"), str(PROJECT_ROOT / "tasks")))
        ),
        key=lambda kv: -kv[1][3],
    )
    return {
        "processes": len({path.name.split("-")[1] for path in files}),
        "profiled_s": round(total, 2),
        "busy_s": round(busy, 2),
        "busy_by_thread_s": {name: round(seconds, 2) for name, seconds in sorted(by_thread.items())},
        "waiting_s": {
            _label(key): round(entry[2], 2) for key, entry in sorted(waiting.items(), key=lambda kv: -kv[1][2])
        },
        "cost_centres": _cost_centres(entries, busy),
        "busy_by_package": [
            {"package": name, "self_s": round(seconds, 2), "share_of_busy": round(seconds / busy, 3)}
            for name, seconds in sorted(packages.items(), key=lambda kv: -kv[1])[:top]
        ],
        "top_functions_self": [
            {
                "function": _label(key),
                "self_s": round(entry[2], 3),
                "share_of_busy": round(entry[2] / busy, 3),
                "calls": entry[1],
            }
            for key, entry in functions[:top]
        ],
        "our_code_cumulative": [
            {"function": _label(key), "cumulative_s": round(entry[3], 3), "calls": entry[1]}
            for key, entry in ours[:top]
        ],
    }
