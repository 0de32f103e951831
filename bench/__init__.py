"""`wallet bench`: the whole stack under load, measured against a floor and PostgreSQL's own TPC-B-like roofline.

One command starts the API (`uvicorn app.main:app --workers K`) and a Celery worker (`celery -A tasks worker
-c C`) on a fresh database and a Redis of their own, funds wallets through the real deposit path, then runs
interleaved rounds of the service's uniform transfers, the floor (`bench/floor.py`: the same settled transfer
on bare Litestar + asyncpg + PyJWT) and `pgbench -b tpcb-like`, then the other scenarios, and writes
`bench/results/latest.{json,md,png}`. See the README's "Benchmark" section.

This module only declares the command's options (imported by `app/cli.py` when it builds its parser); the
run's order is in `bench.runner`, the processes in `bench.stack`, the loads in `bench.scenarios` and
`bench.loadgen`, the headline figures in `bench.headline`, the outputs in `bench.report` and `bench.chart`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `wallet bench`; every size left unset takes the full (or `--smoke`) default."""
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (20 wallets, 2 s scenarios): a quick check")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where latest.{json,md,png} go")
    parser.add_argument(
        "--keep", action="store_true", help="keep the benchmark and floor databases (dropped by default)"
    )
    parser.add_argument("--wallets", type=int, help="funded wallets (default 1000)")
    parser.add_argument("--clients", type=int, help="concurrent connections of the load and of pgbench (default 16)")
    parser.add_argument(
        "--duration",
        type=float,
        help="measured seconds of each transfer scenario (default 30; read mix and webhook burst: at most 20, 15)",
    )
    parser.add_argument("--warmup", type=float, help="warm-up seconds before each scenario (default 5)")
    parser.add_argument(
        "--rounds", type=int, help="interleaved rounds of service, floor and pgbench; medians reported (default 3)"
    )
    parser.add_argument("--api-workers", type=int, help="uvicorn --workers (default 2)")
    parser.add_argument("--worker-concurrency", type=int, help="celery worker -c (default 2)")
    parser.add_argument("--pool-size", type=int, help="DATABASE_POOL_SIZE of each process (default 8)")
    parser.add_argument("--batch-size", type=int, help="SETTLEMENT_BATCH_SIZE (default 500)")
    parser.add_argument("--loadgen-processes", type=int, help="load generator processes (default 2)")
    parser.add_argument("--pgbench-scale", type=int, help="pgbench -i -s (default: the client count)")
    parser.add_argument("--pgbench-duration", type=float, help="pgbench -T seconds of each round (default 30)")
    parser.add_argument("--profile-duration", type=float, help="seconds of the profiled run (default 20)")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run of the API and worker")
    parser.add_argument("--profile", action="store_true", help="do the cProfile run even with --smoke")
    parser.add_argument(
        "--database-url", help="PostgreSQL server to use (its database name is ignored); default: DATABASE_URL's"
    )
    parser.add_argument("--redis-url", help="a Redis database to use instead of a private redis-server")
    parser.add_argument(
        "--baseline", type=Path, help="an older latest.json: latest.md and latest.png show it beside the new figures"
    )
