"""The benchmark's outputs: `latest.json`, `latest.md` (tables) and `latest.png` (chart), and the profile summary."""

from __future__ import annotations

import json
import pstats
from collections import defaultdict
from pathlib import Path
from typing import Any

from app.config import PROJECT_ROOT
from bench.png import Canvas, Series, bar_panel

SCENARIO_LABELS = {
    "uniform": "UNIF",
    "hot_recipient": "HOT",
    "uniform_half_load": "HALF",
    "read_mix": "READ",
    "webhook_burst": "HOOK",
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


# -- writing ---------------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _triple(latency: dict[str, float | None] | None) -> str:
    if not latency or latency.get("p50") is None:
        return "-"
    return f"{_ms(latency['p50'])} / {_ms(latency['p95'])} / {_ms(latency['p99'])}"


def _profile_tables(role: str, summary: dict[str, Any]) -> list[str]:
    if not summary.get("processes"):
        return [f"{role}: no profile.", ""]
    return [
        f"**{role}**: {summary['busy_s']} s busy of {summary['profiled_s']} s profiled ({summary['processes']} "
        f"processes; busy by thread: {summary.get('busy_by_thread_s')}).",
        "",
        "| package | self s | share of busy |",
        "|---|---|---|",
        *(f"| {p['package']} | {p['self_s']} | {p['share_of_busy']:.1%} |" for p in summary["busy_by_package"][:8]),
        "",
        "| cost centre (cumulative) | s | share of busy | calls |",
        "|---|---|---|---|",
        *(
            f"| {c['what']} | {c['cumulative_s']} | {c['share_of_busy']:.1%} | {c['calls']} |"
            for c in summary.get("cost_centres", [])
        ),
        "",
        "| function (self time) | self s | share | calls |",
        "|---|---|---|---|",
        *(
            f"| `{f['function']}` | {f['self_s']} | {f['share_of_busy']:.1%} | {f['calls']} |"
            for f in summary["top_functions_self"][:10]
        ),
        "",
    ]


def _other_cores(cpu: dict[str, Any]) -> float:
    """CPU the rest of the machine used: other PostgreSQL processes and every other program."""
    cores = cpu["cores_used"]
    return round(float(cpu["other_processes_cores"] + cores.get("postgres_all", 0) - cores.get("postgres", 0)), 2)


def _yes(met: bool) -> str:
    return "**met**" if met else "**missed**"


def markdown(results: dict[str, Any]) -> str:
    machine, params, scenarios = results["machine"], results["parameters"], results["scenarios"]
    pgbench, targets = results["pgbench"], results["targets"]
    lines = [
        "# Wallet service benchmark: latest run",
        "",
        f"`{results['command']}` on {machine['cores']} cores ({machine['cpu_model']}), {machine['memory_gib']} GiB, "
        f"started {results['started_at']}, took {results['duration_s']} s. Load average at start "
        f"{machine['load_average_at_start']}, at end {machine['load_average_at_end']}.",
        "",
        "## Headline figures and targets",
        "",
        "| figure | value | target | verdict |",
        "|---|---|---|---|",
        f"| settled transfers/s ÷ pgbench TPS (`ratio_to_pgbench`) | {targets['ratio_to_pgbench']['value']} "
        f"({results['settled_per_s']}/s ÷ {results['pgbench_tps']} tps) | ≥ 0.25 | "
        f"{_yes(targets['ratio_to_pgbench']['met'])} |",
        f"| hot recipient ÷ uniform, settled/s (`hot_to_uniform`) | {targets['hot_to_uniform']['value']} "
        f"({scenarios['hot_recipient'].get('settled_per_s')}/s ÷ {results['settled_per_s']}/s) | ≥ 0.80 | "
        f"{_yes(targets['hot_to_uniform']['met'])} |",
        f"| p99 acceptance at half the peak load (`p99_accept_ms_at_half_load`) | "
        f"{results['p99_accept_ms_at_half_load']} ms at {scenarios['uniform_half_load'].get('target_rate_per_s')}/s "
        f"| ≤ 50 ms | {_yes(targets['p99_accept_ms_at_half_load']['met'])} |",
        f"| webhooks stored and acknowledged/s (`webhooks_per_s`) | {results['webhooks_per_s']} | ≥ 1000 | "
        f"{_yes(targets['webhooks_per_s']['met'])} |",
        "",
        f"In CPU per transaction, which other programs on the machine do not distort: a transfer costs "
        f"{results.get('cpu_ms_per_transfer')} ms of CPU (API, worker, its PostgreSQL backends and Redis), a "
        f"pgbench TPC-B transaction {results.get('pgbench_cpu_ms_per_transaction')} ms of PostgreSQL backend CPU: "
        f"`ratio_to_pgbench_cpu` = {results.get('ratio_to_pgbench_cpu')}.",
        "",
        "## Scenarios",
        "",
        "Latencies in ms (p50 / p95 / p99). Acceptance: request sent (open loop: scheduled) to answer. "
        "Settlement: the transfer's `settled_at - created_at` in the database. CPU in cores (1.0 = one core busy) "
        "over the measured window, from `/proc`: postgres = the backends of the benchmark's database; other = "
        "everything else on the machine (PostgreSQL's other backends and background processes, other programs).",
        "",
        "| scenario | load | accepted/s | settled/s | acceptance | settlement | errors | peak RSS MiB api / worker "
        "| CPU cores api / worker / postgres / loadgen / other | machine busy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in scenarios.items():
        cores = s["cpu"]["cores_used"]
        settled = s.get("settled_per_s", s.get("processed_per_s"))
        settled_text = "-" if settled is None else (f"{settled}" + (" (processed)" if "processed_per_s" in s else ""))
        errors = ", ".join(f"{k}: {v}" for k, v in s["errors_by_status"].items()) or "0"
        memory = s["memory_peak_rss_mib"]
        lines.append(
            f"| {name} | {s['discipline']} | {s['accepted_per_s']} | {settled_text} | "
            f"{_triple(s['accept_latency_ms'])} | {_triple(s.get('settle_latency_ms'))} | {errors} | "
            f"{memory.get('api')} / {memory.get('worker')} | "
            f"{cores.get('api')} / {cores.get('worker')} / {cores.get('postgres')} / {cores.get('loadgen')} / "
            f"{_other_cores(s['cpu'])} | "
            f"{s['cpu']['machine_busy_fraction']:.0%} |"
        )
    lines += [
        "",
        "Per accepted request (CPU milliseconds, database transactions):",
        "",
        "| scenario | api ms | worker ms | postgres ms | loadgen ms | DB transactions | transfers per settlement "
        "batch | queue backlog at end | drain s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in scenarios.items():
        per = s["cpu_ms_per_accepted"]
        lines.append(
            f"| {name} | {per.get('api')} | {per.get('worker')} | {per.get('postgres')} | {per.get('loadgen')} | "
            f"{s['db_transactions_per_accepted']} | {s.get('transfers_per_settlement_batch', '-')} | "
            f"{s['queue_backlog_at_end']} | {s['drain_s']} |"
        )
    lines += [
        "",
        "## pgbench (the roofline)",
        "",
        f"`{pgbench['command']}` (scale {pgbench['scale']}): **{pgbench['tps']} tps**, average latency "
        f"{pgbench['latency_avg_ms']} ms; CPU cores: its backends {pgbench['cpu']['cores_used'].get('postgres')}, "
        f"all PostgreSQL {pgbench['cpu']['cores_used'].get('postgres_all')}, pgbench "
        f"{pgbench['cpu']['cores_used'].get('pgbench')}, other processes {pgbench['cpu']['other_processes_cores']}; "
        f"machine busy {pgbench['cpu']['machine_busy_fraction']:.0%}.",
        "",
        "## Funding (the real deposit path)",
        "",
        f"{results['funding']}",
        "",
    ]
    profile = results.get("profile")
    if profile:
        lines += [
            "## Profile (cProfile, a separate run after the measured ones)",
            "",
            "CPU time (each thread's own clock, so waiting for I/O, the GIL or a busy core costs nothing), self "
            "time per package and per function, summed over the role's processes and threads. cProfile slows "
            "Python several times over, so read the shares, not the seconds. `our_code_cumulative` in the JSON "
            "shows which of our own functions the CPU is spent under.",
            "",
        ]
        for window, title in (("transfers", "uniform transfers"), ("webhooks", "webhook burst")):
            profiled = profile[window]
            lines += [f"### {title}: {profiled['accepted_per_s_while_profiled']} accepted/s under the profiler", ""]
            for role in ("api", "worker"):
                lines += _profile_tables(role, profiled[role])
    lines += [
        "## Machine and parameters",
        "",
        "```json",
        json.dumps({"machine": machine, "parameters": params}, indent=2),
        "```",
    ]
    if results.get("notes"):
        lines += ["", "Notes:", *(f"- {note}" for note in results["notes"])]
    return "\n".join(lines) + "\n"


BLUE, GREEN, ORANGE = (66, 110, 200), (70, 165, 90), (230, 140, 40)
LIGHT, MID, DARK = (150, 190, 235), (70, 125, 205), (25, 55, 120)


def chart(results: dict[str, Any]) -> bytes:
    """Throughput, acceptance latency and settlement latency per scenario, side by side."""
    scenarios = results["scenarios"]
    names = [name for name in SCENARIO_LABELS if name in scenarios]
    labels = [SCENARIO_LABELS[name] for name in names]
    canvas = Canvas(1290, 470)
    machine = results["machine"]
    canvas.text(
        16,
        12,
        f"WALLET BENCH  {results['started_at'][:10]}  {machine['cores']} CORES  RATIO TO PGBENCH "
        f"{results['ratio_to_pgbench']}  HOT/UNIFORM {results['hot_to_uniform']}",
        scale=2,
    )
    bar_panel(
        canvas,
        16,
        48,
        430,
        410,
        "THROUGHPUT /S",
        [*labels, "PGB"],
        [
            Series("ACCEPTED", BLUE, [scenarios[n]["accepted_per_s"] for n in names] + [None]),
            Series(
                "SETTLED OR PROCESSED",
                GREEN,
                [scenarios[n].get("settled_per_s", scenarios[n].get("processed_per_s")) for n in names] + [None],
            ),
            Series("PGBENCH TPS", ORANGE, [None] * len(names) + [results["pgbench_tps"]]),
        ],
    )
    bar_panel(
        canvas,
        460,
        48,
        400,
        410,
        "ACCEPTANCE MS",
        labels,
        [
            Series(q.upper(), color, [scenarios[n]["accept_latency_ms"][q] for n in names])
            for q, color in (("p50", LIGHT), ("p95", MID), ("p99", DARK))
        ],
    )
    settled_names = [n for n in names if "settle_latency_ms" in scenarios[n]]
    bar_panel(
        canvas,
        875,
        48,
        400,
        410,
        "SETTLEMENT MS",
        [SCENARIO_LABELS[n] for n in settled_names],
        [
            Series(q.upper(), color, [scenarios[n]["settle_latency_ms"][q] for n in settled_names])
            for q, color in (("p50", LIGHT), ("p95", MID), ("p99", DARK))
        ],
    )
    return canvas.png()


def write_results(results: dict[str, Any], directory: Path) -> dict[str, Path]:
    """Write latest.json, latest.md and latest.png into `directory`; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / "latest.json", "md": directory / "latest.md", "png": directory / "latest.png"}
    paths["json"].write_text(json.dumps(results, indent=2, default=str) + "\n")
    paths["md"].write_text(markdown(results))
    paths["png"].write_bytes(chart(results))
    return paths
