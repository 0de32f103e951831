"""`wallet bench --smoke`: the benchmark runs the whole stack and the floor end to end and reports every figure.

Only the smoke run belongs to the suite: the benchmark's figures are measured and reported, never pass/fail
(a crowded CI machine must not fail the suite). What is checked is that the command works: every key is
written, the numbers are plausible, no request failed, every accepted transfer was settled, and the floor
ran in the same interleaved rounds as the service and pgbench (its informational one-statement variant once,
in the first round).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import main as report_main
from tests.support.processes import PROJECT_ROOT, service_env

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("pgbench") is None, reason="pgbench (postgresql-client) is not installed"),
]

HEADLINE_KEYS = (
    "ratio_to_pgbench",
    "ratio_to_floor",
    "cpu_ratio_to_floor",
    "floor_settled_per_s",
    "floor_cpu_ms_per_transfer",
    "floor_one_statement_settled_per_s",
    "floor_one_statement_cpu_ms_per_transfer",
    "ratio_to_floor_one_statement",
    "cpu_ratio_to_floor_one_statement",
    "cpu_ms_per_transfer",
    "api_peak_rss_mib",
    "worker_peak_rss_mib",
    "hot_to_uniform",
    "p99_accept_ms_at_half_load",
    "settled_per_s",
    "pgbench_tps",
    "webhooks_per_s",
    "subscribed_settled_per_s",
    "subscribed_to_uniform",
    "delivery_lag_p99_ms",
)
SCENARIOS = ("uniform", "hot_recipient", "uniform_half_load", "read_mix", "webhook_burst", "uniform_with_subscribers")
TRANSFER_SCENARIOS = ("uniform", "hot_recipient", "uniform_half_load", "uniform_with_subscribers")


def _wallet_command() -> list[str]:
    script = Path(sys.executable).parent / "wallet"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def test_wallet_bench_smoke_run_writes_every_figure_from_a_real_run(tmp_path: Path) -> None:
    completed = subprocess.run(
        [*_wallet_command(), "bench", "--smoke", "--results-dir", str(tmp_path)],
        env=service_env(),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]

    results = json.loads((tmp_path / "latest.json").read_text())
    for key in HEADLINE_KEYS:
        assert isinstance(results[key], (int, float)), key
    assert results["settled_per_s"] > 0
    assert results["pgbench_tps"] > 0
    assert 0 < results["ratio_to_pgbench"] < 10
    assert results["hot_to_uniform"] > 0
    assert 0 < results["p99_accept_ms_at_half_load"] < 60_000
    assert results["webhooks_per_s"] > 0
    assert results["floor_settled_per_s"] > 0
    assert results["ratio_to_floor"] > 0
    assert results["cpu_ratio_to_floor"] > 0
    assert results["floor_cpu_ms_per_transfer"] > 0
    assert results["cpu_ms_per_transfer"] > 0
    assert results["api_peak_rss_mib"] > 0
    assert results["worker_peak_rss_mib"] > 0
    assert set(results["cpu_ms_per_transfer_split"]) >= {"api", "worker", "postgres", "redis"}
    assert set(results["floor_cpu_ms_per_transfer_split"]) == {"app", "postgres", "total"}
    assert results["floor_cpu_ms_per_transfer_split"]["app"] > 0
    assert results["floor_one_statement_settled_per_s"] > 0
    assert results["floor_one_statement_cpu_ms_per_transfer"] > 0
    assert set(results["floor_one_statement_cpu_ms_per_transfer_split"]) == {"app", "postgres", "total"}
    assert results["floor_one_statement_cpu_ms_per_transfer_split"]["app"] > 0
    assert results["ratio_to_floor_one_statement"] > 0
    assert results["cpu_ratio_to_floor_one_statement"] > 0
    # The service's ratios to each floor are taken from the same service median.
    assert results["ratio_to_floor_one_statement"] == pytest.approx(
        results["settled_per_s"] / results["floor_one_statement_settled_per_s"], abs=0.002
    )
    assert results["load_average_1m_during_rounds"]["max"] >= 0
    assert set(results["targets"]) == {
        "ratio_to_floor",
        "cpu_ratio_to_floor",
        "ratio_to_pgbench",
        "hot_to_uniform",
        "p99_accept_ms_at_half_load",
        "webhooks_per_s",
        "webhooks_per_pgbench_tps",
        "read_mix_per_s",
        "read_mix_per_pgbench_tps",
        "api_peak_rss_mib",
        "worker_peak_rss_mib",
    }
    for name, target in results["targets"].items():
        operator, bound = target["target"].split()
        holds = target["value"] is not None and (
            target["value"] >= float(bound) if operator == ">=" else target["value"] <= float(bound)
        )
        assert target["met"] is holds, name
    # The service and the floor ran from the deployed environment (no test tools), as the Dockerfile installs.
    assert results["parameters"]["service_environment"] == "deployed: uv sync --frozen --no-dev --compile-bytecode"
    assert results["machine"]["cores"] >= 1
    assert results["machine"]["memory_gib"] > 0
    assert results["machine"]["cpu_model"]
    assert results["parameters"]["wallets"] == 20
    assert results["parameters"]["transfer_wait_ms"] == 0

    for name in SCENARIOS:
        scenario = results["scenarios"][name]
        latency = scenario["accept_latency_ms"]
        assert scenario["accepted_per_s"] > 0, name
        assert scenario["errors_by_status"] == {}, (name, scenario["errors_by_status"])
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"], (name, latency)
        assert scenario["memory_peak_rss_mib"]["api"] > 0
        assert scenario["memory_peak_rss_mib"]["worker"] > 0
        assert scenario["loadgen"]["cores"] >= 0
        assert scenario["drained"], name
    for name in TRANSFER_SCENARIOS:
        scenario = results["scenarios"][name]
        assert scenario["settled"] == scenario["transfers_created_in_window"] > 0, name
        assert scenario["settle_latency_ms"]["p99"] > 0
    # Every movement of the subscribed run was reported to its endpoint, and the delivery log says so.
    subscribed = results["scenarios"]["uniform_with_subscribers"]
    assert subscribed["deliveries"] == subscribed["delivered"] > 0
    assert subscribed["events"] == 2 * subscribed["settled"], "transfer.sent and transfer.received for each"
    assert subscribed["delivery_lag_ms"]["p99"] > 0
    assert results["scenarios"]["webhook_burst"]["stored_in_window"] > 0

    rounds = results["rounds"]
    assert rounds["count"] == results["parameters"]["rounds"] >= 2
    assert len(rounds["service_uniform"]) == len(rounds["floor"]) == len(rounds["pgbench"]) == rounds["count"]
    for row in rounds["per_round"]:
        assert row["service_settled_per_s"] > 0, row
        assert row["floor_settled_per_s"] > 0, row
        assert row["pgbench_tps"] > 0, row
    for floor_round in rounds["floor"]:
        assert floor_round["errors_by_status"] == {}, floor_round["errors_by_status"]
        # Its 200 is a commit: every request answered in the window is a transfer in the floor's ledger.
        assert floor_round["committed_in_window"] > 0
        assert floor_round["memory_peak_rss_mib"]["floor"] > 0
    assert results["floor"]["ledger_check_problems"] == []
    assert results["floor"]["deadlocks_detected"] >= 0
    assert results["floor"]["statement"].startswith("BEGIN;")
    # The informational variant: one window, in the first round, right after the floor, its own ledger checked.
    (one_round,) = rounds["floor_one_statement"]
    assert one_round["round"] == 1
    assert one_round["errors_by_status"] == {}, one_round["errors_by_status"]
    assert one_round["committed_in_window"] > 0
    assert one_round["memory_peak_rss_mib"]["floor"] > 0
    assert rounds["per_round"][0]["floor_one_statement_settled_per_s"] == one_round["settled_per_s"]
    assert all(row["floor_one_statement_settled_per_s"] is None for row in rounds["per_round"][1:])
    one_statement = results["floor"]["one_statement"]
    assert one_statement["ledger_check_problems"] == []
    assert one_statement["statement"].startswith("WITH locked AS")
    assert one_statement["median_round"]["round"] == 1

    markdown = (tmp_path / "latest.md").read_text()
    assert "pgbench" in markdown
    assert "ratio_to_floor" in markdown
    assert "`ratio_to_floor_one_statement`" in markdown
    assert "`cpu_ratio_to_floor_one_statement`" in markdown
    assert "Informational: the one-statement floor" in markdown
    assert "the program the issue measured and set its targets against" in markdown
    png = (tmp_path / "latest.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) < 60_000

    # A before/after report from two results files, without running again (`python -m bench.report`).
    compared = tmp_path / "compared"
    assert (
        report_main(
            [str(tmp_path / "latest.json"), "--baseline", str(tmp_path / "latest.json"), "--out", str(compared)]
        )
        == 0
    )
    assert "| figure | before (" in (compared / "latest.md").read_text()
    assert (compared / "latest.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
