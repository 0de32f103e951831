"""The benchmark's outputs: `latest.json`, `latest.md` (tables) and `latest.png` (`bench/chart.py`).

With a baseline (an older `latest.json`, `wallet bench --baseline <path>`), the headline tables and the chart
show it beside the new figures. `python -m bench.report <latest.json> [--baseline <old.json>]` redraws the
markdown and the chart of an existing run, e.g. to compare it with another without running again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.chart import chart
from bench.headline import service_cpu_ms

if TYPE_CHECKING:
    from collections.abc import Callable


def read_results(path: Path | str) -> dict[str, Any]:
    try:
        baseline: dict[str, Any] = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        msg = f"cannot read {path}: {exc}"
        raise SystemExit(msg) from exc
    return baseline


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


TARGET_LABELS = {
    "ratio_to_floor": "service ÷ floor, settled transfers/s",
    "cpu_ratio_to_floor": "service ÷ floor, CPU per settled transfer",
    "ratio_to_pgbench": "settled transfers/s ÷ pgbench TPS",
    "hot_to_uniform": "hot recipient ÷ uniform, settled/s",
    "p99_accept_ms_at_half_load": "p99 acceptance at half the peak load, ms",
    "webhooks_per_s": "webhooks stored and acknowledged/s",
    "webhooks_per_pgbench_tps": "webhooks/s ÷ pgbench TPS",
    "read_mix_per_s": "read mix requests/s",
    "read_mix_per_pgbench_tps": "read mix requests/s ÷ pgbench TPS",
    "api_peak_rss_mib": "peak RSS of the API's process tree, MiB",
    "worker_peak_rss_mib": "peak RSS of the worker's process tree, MiB",
}


def _yes(met: bool) -> str:
    return "**met**" if met else "**missed**"


def _split_text(split: dict[str, Any] | None) -> str:
    if not split:
        return "-"
    return ", ".join(f"{name} {_ms(value)}" for name, value in split.items() if name != "total")


def _service_split(results: dict[str, Any]) -> dict[str, Any] | None:
    """The service's CPU split; an older run without the key has it in its uniform scenario."""
    if results.get("cpu_ms_per_transfer_split"):
        return dict(results["cpu_ms_per_transfer_split"])
    uniform = results.get("scenarios", {}).get("uniform")
    return service_cpu_ms(uniform) if uniform and "cpu_ms_per_accepted" in uniform else None


def _peak_rss(results: dict[str, Any], group: str) -> float | None:
    """The headline key; an older run without it has the peaks per scenario."""
    if results.get(f"{group}_peak_rss_mib") is not None:
        return float(results[f"{group}_peak_rss_mib"])
    peaks = [
        s["memory_peak_rss_mib"][group]
        for name, s in results.get("scenarios", {}).items()
        if not name.endswith("_profiled") and s.get("memory_peak_rss_mib", {}).get(group)
    ]
    return max(peaks) if peaks else None


def _load_range(results: dict[str, Any]) -> str | None:
    loads = results.get("load_average_1m_during_rounds")
    return f"{loads['min']} to {loads['max']}" if loads else None


COMPARED: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("service: settled transfers/s, uniform, median (`settled_per_s`)", lambda r: r.get("settled_per_s")),
    ("floor: settled transfers/s (`floor_settled_per_s`)", lambda r: r.get("floor_settled_per_s")),
    ("pgbench TPC-B TPS (`pgbench_tps`)", lambda r: r.get("pgbench_tps")),
    ("service ÷ floor, settled/s (`ratio_to_floor`)", lambda r: r.get("ratio_to_floor")),
    ("service ÷ pgbench, settled/s ÷ TPS (`ratio_to_pgbench`)", lambda r: r.get("ratio_to_pgbench")),
    ("service: CPU ms per settled transfer (`cpu_ms_per_transfer`)", lambda r: r.get("cpu_ms_per_transfer")),
    ("service CPU split, ms", lambda r: _split_text(_service_split(r))),
    ("floor: CPU ms per settled transfer (`floor_cpu_ms_per_transfer`)", lambda r: r.get("floor_cpu_ms_per_transfer")),
    ("floor CPU split, ms", lambda r: _split_text(r.get("floor_cpu_ms_per_transfer_split"))),
    (
        "pgbench: PostgreSQL CPU ms per transaction (`pgbench_cpu_ms_per_transaction`)",
        lambda r: r.get("pgbench_cpu_ms_per_transaction"),
    ),
    ("service CPU ÷ floor CPU per transfer (`cpu_ratio_to_floor`)", lambda r: r.get("cpu_ratio_to_floor")),
    (
        "informational: one-statement floor, settled transfers/s (`floor_one_statement_settled_per_s`)",
        lambda r: r.get("floor_one_statement_settled_per_s"),
    ),
    (
        "informational: one-statement floor, CPU ms per settled transfer (`floor_one_statement_cpu_ms_per_transfer`)",
        lambda r: r.get("floor_one_statement_cpu_ms_per_transfer"),
    ),
    (
        "informational: service ÷ one-statement floor, settled/s (`ratio_to_floor_one_statement`)",
        lambda r: r.get("ratio_to_floor_one_statement"),
    ),
    (
        "informational: service CPU ÷ one-statement floor CPU (`cpu_ratio_to_floor_one_statement`)",
        lambda r: r.get("cpu_ratio_to_floor_one_statement"),
    ),
    ("pgbench CPU ÷ service CPU (`ratio_to_pgbench_cpu`)", lambda r: r.get("ratio_to_pgbench_cpu")),
    ("peak RSS, API process tree, MiB (`api_peak_rss_mib`)", lambda r: _peak_rss(r, "api")),
    ("peak RSS, worker process tree, MiB (`worker_peak_rss_mib`)", lambda r: _peak_rss(r, "worker")),
    ("peak RSS, floor process tree, MiB (`floor_peak_rss_mib`)", lambda r: r.get("floor_peak_rss_mib")),
    ("load average (1 min) during the rounds, lowest to highest", _load_range),
]


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def comparison_table(results: dict[str, Any], baseline: dict[str, Any] | None) -> list[str]:
    """The service against the floor and pgbench, from this run (and the baseline's, when given)."""
    if baseline is None:
        lines = ["| figure | value |", "|---|---|"]
        lines += [f"| {label} | {_cell(get(results))} |" for label, get in COMPARED]
        return lines
    lines = []
    sizes = ("wallets", "clients", "api_workers", "worker_concurrency", "pool_size", "duration_s")
    before_sizes = {key: baseline.get("parameters", {}).get(key) for key in sizes}
    now_sizes = {key: results.get("parameters", {}).get(key) for key in sizes}
    if baseline.get("command") != results.get("command") or before_sizes != now_sizes:
        lines += [
            f"The baseline ran `{baseline.get('command')}` with {before_sizes}, this run `{results.get('command')}` "
            f"with {now_sizes}: the sizes differ, compare with care.",
            "",
        ]
    lines += [
        f"| figure | before ({baseline.get('started_at', '?')}) | now ({results['started_at']}) |",
        "|---|---|---|",
    ]
    lines += [f"| {label} | {_cell(get(baseline))} | {_cell(get(results))} |" for label, get in COMPARED]
    return lines


def rounds_table(results: dict[str, Any]) -> list[str]:
    rows = results.get("rounds", {}).get("per_round", [])
    if not rows:
        return []
    lines = [
        "| round | service settled/s | floor settled/s | pgbench TPS | service CPU ms | floor CPU ms | pgbench CPU ms "
        "| ratio to floor | CPU ratio to floor | ratio to pgbench | other cores (service / floor / pgbench) "
        "| load average 1 min |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        other, load = row["other_cores"], row["load_average_1m"]
        lines.append(
            f"| {row['round']} | {row['service_settled_per_s']} | {row['floor_settled_per_s']} | "
            f"{row['pgbench_tps']} | {row['service_cpu_ms_per_transfer']} | {row['floor_cpu_ms_per_transfer']} | "
            f"{row['pgbench_cpu_ms_per_transaction']} | {row['ratio_to_floor']} | {row['cpu_ratio_to_floor']} | "
            f"{row['ratio_to_pgbench']} | {other['service']} / {other['floor']} / {other['pgbench']} | "
            f"{load['service']} / {load['floor']} / {load['pgbench']} |"
        )
    return lines


def _one_statement_floor(variant: dict[str, Any]) -> list[str]:
    """The floor's informational one-statement variant, when the run measured it."""
    median = variant.get("median_round")
    if not median:
        return []
    cores = median["cpu"]["cores_used"]
    return [
        "",
        "### Informational: the one-statement floor",
        "",
        f"The same JWT check and pool, then {variant['shape']}. Measured {variant['measured']}: "
        f"**{median['settled_per_s']} settled/s**, "
        f"**{median['cpu_ms_per_settled']['total']} ms CPU** per transfer "
        f"({_split_text(median['cpu_ms_per_settled'])}), acceptance {_triple(median['accept_latency_ms'])} ms, "
        f"errors {median['errors_by_status'] or 0}; CPU cores: app {cores.get('floor')}, its backends "
        f"{cores.get('postgres')}, the idle service and floor {cores.get('idle_stack')}, other "
        f"{_other_cores(median['cpu'])}. Ledger check: "
        f"{variant.get('ledger_check_problems') or 'money conserved, every transfer balanced'}. Not the headline "
        "floor: the issue measured and set its targets against the plain transaction above; this shows how much "
        "further the bare stack can go.",
        "",
        "```sql",
        variant["statement"],
        "```",
    ]


def markdown(results: dict[str, Any], baseline: dict[str, Any] | None = None) -> str:
    machine, params, scenarios = results["machine"], results["parameters"], results["scenarios"]
    pgbench, targets = results["pgbench"], results["targets"]
    floor = results.get("floor", {})
    count = results.get("rounds", {}).get("count", 1)
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
        *(
            f"| {TARGET_LABELS.get(key, key)} (`{key}`) | {target['value']} | "
            f"{target['target'].replace('>=', '≥').replace('<=', '≤')} | {_yes(target['met'])} |"
            for key, target in targets.items()
        ),
        "",
        "The webhook and read-mix targets are 3 times the figures at d878b93 (1554.4 webhooks/s, 988.9 reads/s, "
        "measured on another day's machine); the `*_per_pgbench_tps` rows judge the same factor as a share of the "
        "pgbench TPS measured in this run, so the machine's speed cancels out.",
        "",
        "## The service against the floor and pgbench",
        "",
        f"Medians of {count} interleaved rounds (service uniform transfers, the floor, pgbench; the same "
        "clients, the same machine minutes). The floor (`bench/floor.py`) is the same settled transfer as a plain, "
        "minimal Litestar + asyncpg + PyJWT program: JWT check, then one explicit transaction of three statements "
        "(debit with the balance check in its WHERE, credit, one INSERT of the two ledger rows). The headline "
        "floor is this plain transaction because it is the program the issue measured and set its targets "
        "against; the informational one-statement variant (the whole transfer in one CTE, measured once, in the "
        "first round) shows how much further the bare stack can go. CPU per "
        "transfer: the service's API, worker, its PostgreSQL backends and Redis; the floor's app processes and "
        "its backends; pgbench's backends only. The CPU figures are what to compare across runs on a shared "
        "machine; the per-second ones move with whatever else runs.",
        "",
        *comparison_table(results, baseline),
        "",
        *rounds_table(results),
        "",
        "## Scenarios",
        "",
        "Latencies in ms (p50 / p95 / p99). Acceptance: request sent (open loop: scheduled) to answer. "
        "Settlement: the transfer's `settled_at - created_at` in the database. CPU in cores (1.0 = one core busy) "
        "over the measured window, from `/proc`: postgres = the backends of the benchmark's database; other = "
        "everything else on the machine (PostgreSQL's other backends and background processes, other programs). "
        "`uniform` is the round with the median settled/s.",
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
    median_floor = floor.get("median_round")
    if median_floor:
        cores = median_floor["cpu"]["cores_used"]
        lines += [
            "",
            "## The floor",
            "",
            f"`{floor['server']}`, a pool of {floor['pool_size_per_process']} connections per process, "
            f"{floor['wallets']} wallets of {floor['balance_each']} each on a scratch database"
            + (f"; the plain program: {floor['shape']}" if floor.get("shape") else "")
            + ". Median round "
            f"({median_floor['round']}): **{median_floor['settled_per_s']} settled/s**, acceptance "
            f"{_triple(median_floor['accept_latency_ms'])} ms, errors {median_floor['errors_by_status'] or 0}; CPU "
            f"cores: app {cores.get('floor')}, its backends {cores.get('postgres')}, loadgen {cores.get('loadgen')}, "
            f"the idle service {cores.get('idle_stack')}, other {_other_cores(median_floor['cpu'])}; peak RSS "
            f"{median_floor['memory_peak_rss_mib'].get('floor')} MiB. Ledger check after the rounds: "
            f"{floor.get('ledger_check_problems') or 'money conserved, every transfer balanced'}."
            + (
                f" Deadlocks PostgreSQL broke (each transaction retried): {floor['deadlocks_detected']}."
                if "deadlocks_detected" in floor
                else ""
            ),
            "",
            "```sql",
            floor["schema"],
            "",
            floor["statement"],
            "```",
        ]
        lines += _one_statement_floor(floor.get("one_statement") or {})
    lines += [
        "",
        "## pgbench (the roofline)",
        "",
        f"`{pgbench['command']}` (scale {pgbench['scale']}), median round ({pgbench.get('round', 1)}): "
        f"**{pgbench['tps']} tps**, average latency {pgbench['latency_avg_ms']} ms; CPU cores: its backends "
        f"{pgbench['cpu']['cores_used'].get('postgres')}, all PostgreSQL "
        f"{pgbench['cpu']['cores_used'].get('postgres_all')}, "
        f"pgbench {pgbench['cpu']['cores_used'].get('pgbench')}, other processes "
        f"{pgbench['cpu']['other_processes_cores']}; machine busy {pgbench['cpu']['machine_busy_fraction']:.0%}.",
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


def write_results(results: dict[str, Any], directory: Path, baseline: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write latest.json, latest.md and latest.png into `directory`; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / "latest.json", "md": directory / "latest.md", "png": directory / "latest.png"}
    if baseline is not None:
        results["baseline"] = {key: baseline.get(key) for key in ("started_at", "command", "duration_s")}
    paths["json"].write_text(json.dumps(results, indent=2, default=str) + "\n")
    paths["md"].write_text(markdown(results, baseline))
    paths["png"].write_bytes(chart(results, baseline))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("results", type=Path, help="a latest.json")
    parser.add_argument("--baseline", type=Path, help="an older latest.json to show beside it")
    parser.add_argument("--out", type=Path, help="where latest.md and latest.png go (default: beside the results)")
    args = parser.parse_args(argv)
    results = read_results(args.results)
    baseline = read_results(args.baseline) if args.baseline else None
    directory = args.out or args.results.parent
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "latest.md").write_text(markdown(results, baseline))
    (directory / "latest.png").write_bytes(chart(results, baseline))
    print(f"wrote {directory / 'latest.md'} and {directory / 'latest.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
