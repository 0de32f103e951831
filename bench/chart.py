"""`latest.png`: the headline comparison (service, floor, pgbench; before and now) over the per-scenario figures.

Drawn with `bench/png.py` (no plotting library). Top row: settled transfers/s and CPU ms per settled
transfer of the service and the floor, pgbench's TPS and CPU ms per transaction beside them, each with the
baseline's bar when `--baseline` gave one. Bottom row: throughput, acceptance and settlement latency per
scenario. The exact figures are in `latest.md`.
"""

from __future__ import annotations

from typing import Any

from bench.png import Canvas, Series, bar_panel

SCENARIO_LABELS = {
    "uniform": "UNIF",
    "hot_recipient": "HOT",
    "uniform_half_load": "HALF",
    "read_mix": "READ",
    "webhook_burst": "HOOK",
    "uniform_with_subscribers": "SUBS",
}
BLUE, GREEN, GREY = (66, 110, 200), (70, 165, 90), (175, 175, 175)
LIGHT, MID, DARK = (150, 190, 235), (70, 125, 205), (25, 55, 120)


def headline_values(results: dict[str, Any]) -> tuple[list[float | None], list[float | None]]:
    """(throughput, CPU ms) of service, floor and pgbench; None where a run (an older baseline) lacks one."""
    cpu = results.get("cpu_ms_per_transfer")
    throughput = [results.get("settled_per_s"), results.get("floor_settled_per_s"), results.get("pgbench_tps")]
    costs = [cpu, results.get("floor_cpu_ms_per_transfer"), results.get("pgbench_cpu_ms_per_transaction")]
    return throughput, costs


def chart(results: dict[str, Any], baseline: dict[str, Any] | None = None) -> bytes:
    canvas = Canvas(1290, 900)
    machine = results["machine"]
    canvas.text(
        16,
        12,
        f"WALLET BENCH  {results['started_at'][:10]}  {machine['cores']} CORES  "
        f"TO FLOOR {results.get('ratio_to_floor')} (CPU {results.get('cpu_ratio_to_floor')} X)  "
        f"TO PGBENCH {results.get('ratio_to_pgbench')}",
        scale=2,
    )
    categories = ["SERVICE", "FLOOR", "PGBENCH"]
    throughput, costs = headline_values(results)
    before_label = f"BEFORE {baseline.get('started_at', '')[:10]}" if baseline else ""
    now_label = f"NOW {results['started_at'][:10]}"
    for x, title, values, index, color in (
        (16, "SETTLED TRANSFERS/S (PGBENCH: TPS)", throughput, 0, GREEN),
        (660, "CPU MS PER SETTLED TRANSFER (PGBENCH: PER TXN)", costs, 1, BLUE),
    ):
        series = [Series(now_label, color, values)]
        if baseline is not None:
            series.insert(0, Series(before_label, GREY, headline_values(baseline)[index]))
        bar_panel(canvas, x, 48, 610, 400, title, categories, series)
    _scenario_panels(canvas, results, 470)
    return canvas.png()


def _scenario_panels(canvas: Canvas, results: dict[str, Any], y: int) -> None:
    scenarios = results["scenarios"]
    names = [name for name in SCENARIO_LABELS if name in scenarios]
    labels = [SCENARIO_LABELS[name] for name in names]
    bar_panel(
        canvas,
        16,
        y,
        430,
        410,
        "THROUGHPUT /S",
        labels,
        [
            Series("ACCEPTED", BLUE, [scenarios[n]["accepted_per_s"] for n in names]),
            Series(
                "SETTLED OR PROCESSED",
                GREEN,
                [scenarios[n].get("settled_per_s", scenarios[n].get("processed_per_s")) for n in names],
            ),
        ],
    )
    bar_panel(
        canvas,
        460,
        y,
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
        y,
        400,
        410,
        "SETTLEMENT MS",
        [SCENARIO_LABELS[n] for n in settled_names],
        [
            Series(q.upper(), color, [scenarios[n]["settle_latency_ms"][q] for n in settled_names])
            for q, color in (("p50", LIGHT), ("p95", MID), ("p99", DARK))
        ],
    )
