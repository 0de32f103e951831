"""The headline figures of a run: the issue's keys and targets, from the medians of the interleaved rounds.

Each round is the service's uniform transfers, then the floor, then pgbench, one after the other on the same
machine; a figure is the median over the rounds, and every ratio is taken between medians of the same run.
A round's CPU split is reported from the round whose total is the median, so the parts add up. The floor of
the headline (`floor_*`, `ratio_to_floor`, `cpu_ratio_to_floor`) is the plain transaction program; the
one-statement variant, measured in the first round only, gives the informational `floor_one_statement_*`,
`ratio_to_floor_one_statement` and `cpu_ratio_to_floor_one_statement`.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

SERVICE_CPU_GROUPS = ("api", "worker", "postgres", "redis")
"""What a settled transfer costs the service: both its process trees, its database backends, its broker."""


def service_cpu_ms(report: dict[str, Any]) -> dict[str, float]:
    """CPU ms per transfer of one uniform window, by group (per accepted; in a closed loop, accepted = settled)."""
    per = report["cpu_ms_per_accepted"]
    split = {group: round(per.get(group) or 0.0, 3) for group in SERVICE_CPU_GROUPS}
    return split | {"total": round(sum(split.values()), 3)}


def median_of(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def median_round(rounds: list[dict[str, Any]], key: Callable[[dict[str, Any]], float | None]) -> dict[str, Any]:
    """The round holding the median of `key` (the lower of the two middle ones for an even count)."""
    ordered = sorted(rounds, key=lambda one: key(one) or 0.0)
    return ordered[(len(ordered) - 1) // 2]


def _ratio(numerator: float | None, denominator: float | None, digits: int = 3) -> float | None:
    return round(numerator / denominator, digits) if numerator is not None and denominator else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


BEFORE = {"commit": "d878b93", "webhooks_per_s": 1554.4, "read_mix_per_s": 988.9, "pgbench_tps": 5435.8}
"""The service before the speed issue (#12), from its committed `latest.json`: the "3x today" targets' base."""


def target_table(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The speed issue's targets, each with its value and verdict.

    The "3x today" targets (webhooks, read mix) are judged two ways: in absolute requests/s against the figure
    measured at d878b93, and, because that figure came from another day's machine, as a share of the pgbench
    TPS measured in the same run against the same share at d878b93 (the machine's speed cancels out).
    """
    read_mix = (results.get("scenarios") or {}).get("read_mix", {}).get("accepted_per_s")
    webhooks, tps = results["webhooks_per_s"], results["pgbench_tps"]

    def share(value: float | None, before: float) -> tuple[float | None, float]:
        return _ratio(value, tps), round(3 * before / BEFORE["pgbench_tps"], 3)

    webhook_share, webhook_share_target = share(webhooks, BEFORE["webhooks_per_s"])
    read_share, read_share_target = share(read_mix, BEFORE["read_mix_per_s"])
    rows: list[tuple[str, float | None, str, float]] = [
        ("ratio_to_floor", results["ratio_to_floor"], ">=", 0.6),
        ("cpu_ratio_to_floor", results["cpu_ratio_to_floor"], "<=", 2.0),
        ("ratio_to_pgbench", results["ratio_to_pgbench"], ">=", 0.25),
        ("hot_to_uniform", results["hot_to_uniform"], ">=", 0.9),
        ("p99_accept_ms_at_half_load", results["p99_accept_ms_at_half_load"], "<=", 20.0),
        ("webhooks_per_s", webhooks, ">=", round(3 * BEFORE["webhooks_per_s"], 1)),
        ("webhooks_per_pgbench_tps", webhook_share, ">=", webhook_share_target),
        ("read_mix_per_s", read_mix, ">=", round(3 * BEFORE["read_mix_per_s"], 1)),
        ("read_mix_per_pgbench_tps", read_share, ">=", read_share_target),
        ("api_peak_rss_mib", results["api_peak_rss_mib"], "<=", 250.0),
        ("worker_peak_rss_mib", results["worker_peak_rss_mib"], "<=", 250.0),
    ]
    return {
        key: {
            "value": value,
            "target": f"{op} {bound:g}",
            "met": value is not None and (value >= bound if op == ">=" else value <= bound),
        }
        for key, value, op, bound in rows
    }


def _peak(scenarios: list[dict[str, Any]], group: str) -> float | None:
    values = [s["memory_peak_rss_mib"].get(group) for s in scenarios if s["memory_peak_rss_mib"].get(group)]
    return max(values) if values else None


def round_rows(
    service: list[dict[str, Any]],
    floor: list[dict[str, Any]],
    pgbench: list[dict[str, Any]],
    one_statement: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One compact row per round: what each side measured and what else the machine was doing meanwhile."""
    variant = {r["round"]: r for r in one_statement or []}
    rows = []
    for index, (s, f, p) in enumerate(zip(service, floor, pgbench, strict=True)):
        s_cpu = service_cpu_ms(s)["total"]
        f_cpu = f["cpu_ms_per_settled"]["total"]
        one = variant.get(index + 1)
        rows.append(
            {
                "round": index + 1,
                "service_settled_per_s": s.get("settled_per_s"),
                "service_cpu_ms_per_transfer": s_cpu,
                "floor_settled_per_s": f["settled_per_s"],
                "floor_cpu_ms_per_transfer": f_cpu,
                "floor_one_statement_settled_per_s": one["settled_per_s"] if one else None,
                "floor_one_statement_cpu_ms_per_transfer": one["cpu_ms_per_settled"]["total"] if one else None,
                "pgbench_tps": p["tps"],
                "pgbench_cpu_ms_per_transaction": p["cpu_ms_per_transaction"],
                "ratio_to_floor": _ratio(s.get("settled_per_s"), f["settled_per_s"]),
                "cpu_ratio_to_floor": _ratio(s_cpu, f_cpu),
                "ratio_to_pgbench": _ratio(s.get("settled_per_s"), p["tps"]),
                "other_cores": {
                    "service": s["cpu"]["other_processes_cores"],
                    "floor": f["cpu"]["other_processes_cores"],
                    "pgbench": p["cpu"]["other_processes_cores"],
                },
                "load_average_1m": {
                    "service": s["load_average"][0],
                    "floor": f["load_average"][0],
                    "pgbench": p["load_average"][0],
                },
            }
        )
    return rows


def summarize(
    rounds: dict[str, list[dict[str, Any]]],
    scenarios: dict[str, Any],
    funding: dict[str, Any],
    profile: dict[str, Any] | None,
    floor_program: dict[str, Any],
) -> dict[str, Any]:
    """The headline figures (the issue's keys), each target with its verdict, then the details."""
    service_rounds, floor_rounds, pgbench_rounds = rounds["service"], rounds["floor"], rounds["pgbench"]
    uniform = median_round(service_rounds, lambda r: r.get("settled_per_s"))
    scenarios = {"uniform": uniform, **scenarios}
    hot = scenarios["hot_recipient"]

    settled = median_of([r.get("settled_per_s") for r in service_rounds]) or 0.0
    accepted = median_of([r["accepted_per_s"] for r in service_rounds])
    transfer_cpu_ms = median_of([service_cpu_ms(r)["total"] for r in service_rounds])
    service_split = service_cpu_ms(median_round(service_rounds, lambda r: service_cpu_ms(r)["total"]))

    floor_settled = median_of([r["settled_per_s"] for r in floor_rounds])
    floor_cpu_ms = median_of([r["cpu_ms_per_settled"]["total"] for r in floor_rounds])
    floor_split = median_round(floor_rounds, lambda r: r["cpu_ms_per_settled"]["total"])["cpu_ms_per_settled"]
    floor_median = median_round(floor_rounds, lambda r: r["settled_per_s"])

    one_rounds = rounds.get("floor_one_statement", [])
    one_settled = median_of([r["settled_per_s"] for r in one_rounds])
    one_cpu_ms = median_of([r["cpu_ms_per_settled"]["total"] for r in one_rounds])
    one_split = (
        median_round(one_rounds, lambda r: r["cpu_ms_per_settled"]["total"])["cpu_ms_per_settled"]
        if one_rounds
        else None
    )
    one_median = median_round(one_rounds, lambda r: r["settled_per_s"]) if one_rounds else None

    tps = median_of([r["tps"] for r in pgbench_rounds]) or 0.0
    pgbench_cpu_ms = median_of([r["cpu_ms_per_transaction"] for r in pgbench_rounds])
    pgbench_median = median_round(pgbench_rounds, lambda r: r["tps"])

    ratio = _ratio(settled, tps)
    hot_ratio = _ratio(hot.get("settled_per_s") or 0.0, settled)
    p99_half = scenarios["uniform_half_load"]["accept_latency_ms"]["p99"]
    webhooks = scenarios["webhook_burst"]["accepted_per_s"]
    subscribed = scenarios.get("uniform_with_subscribers") or {}
    measured = [*service_rounds, *(s for name, s in scenarios.items() if name != "uniform")]
    rows = round_rows(service_rounds, floor_rounds, pgbench_rounds, one_rounds)
    loads = [value for row in rows for value in row["load_average_1m"].values()]

    windows = {f"uniform round {r['round']}": r for r in service_rounds}
    windows |= {name: s for name, s in scenarios.items() if name != "uniform"}
    windows |= {f"floor round {r['round']}": r for r in floor_rounds}
    windows |= {f"floor one statement round {r['round']}": r for r in one_rounds}
    windows |= {f"pgbench round {r['round']}": r for r in pgbench_rounds}
    crowded = {
        name: s["cpu"]["other_processes_cores"]
        for name, s in windows.items()
        if s["cpu"]["other_processes_cores"] > 0.25
    }
    notes = []
    if crowded:
        notes.append(
            "other programs used CPU during the measurements (cores: "
            + ", ".join(f"{name} {cores}" for name, cores in crowded.items())
            + "); those figures are lower than on a quiet machine, the CPU-per-transaction ones are not"
        )
    results: dict[str, Any] = {
        "ratio_to_pgbench": ratio,
        "ratio_to_floor": _ratio(settled, floor_settled),
        "cpu_ratio_to_floor": _ratio(transfer_cpu_ms, floor_cpu_ms),
        "hot_to_uniform": hot_ratio,
        "p99_accept_ms_at_half_load": p99_half,
        "settled_per_s": settled,
        "floor_settled_per_s": floor_settled,
        "pgbench_tps": tps,
        "webhooks_per_s": webhooks,
        # Every wallet subscribed to every event (the outbox rows and their deliveries): the same load.
        "subscribed_settled_per_s": subscribed.get("settled_per_s"),
        "subscribed_to_uniform": _ratio(subscribed.get("settled_per_s") or 0.0, settled),
        "delivery_lag_p99_ms": (subscribed.get("delivery_lag_ms") or {}).get("p99"),
        "accepted_per_s": accepted,
        "cpu_ms_per_transfer": _round(transfer_cpu_ms, 2),
        "cpu_ms_per_transfer_split": service_split,
        "floor_cpu_ms_per_transfer": _round(floor_cpu_ms, 3),
        "floor_cpu_ms_per_transfer_split": floor_split,
        "pgbench_cpu_ms_per_transaction": _round(pgbench_cpu_ms, 3),
        "ratio_to_pgbench_cpu": _ratio(pgbench_cpu_ms, transfer_cpu_ms),
        "api_peak_rss_mib": _peak(measured, "api"),
        "worker_peak_rss_mib": _peak(measured, "worker"),
        "floor_peak_rss_mib": _peak(floor_rounds, "floor"),
        # Informational: the floor's one-statement variant (first round only); the headline floor is the above.
        "floor_one_statement_settled_per_s": one_settled,
        "floor_one_statement_cpu_ms_per_transfer": _round(one_cpu_ms, 3),
        "floor_one_statement_cpu_ms_per_transfer_split": one_split,
        "ratio_to_floor_one_statement": _ratio(settled, one_settled),
        "cpu_ratio_to_floor_one_statement": _ratio(transfer_cpu_ms, one_cpu_ms),
        "load_average_1m_during_rounds": {"min": min(loads), "max": max(loads)} if loads else None,
        "crowding_notes": notes,
        "rounds": {
            "count": len(service_rounds),
            "order": ["service uniform", "floor", "floor one statement (first round only)", "pgbench"],
            "per_round": rows,
            "service_uniform": service_rounds,
            "floor": floor_rounds,
            "floor_one_statement": one_rounds,
            "pgbench": pgbench_rounds,
        },
        "funding": funding,
        "pgbench": pgbench_median,
        "floor": floor_program
        | {
            "median_round": floor_median,
            "one_statement": floor_program.get("one_statement", {}) | {"median_round": one_median},
        },
        "scenarios": scenarios,
        "profile": profile,
    }
    return results | {"targets": target_table(results)}
