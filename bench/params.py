"""The sizes of a `wallet bench` run: the full defaults, the `--smoke` ones, and the command line's overrides."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Parameters:
    """Everything that shapes a run; recorded in the results."""

    wallets: int = 1000
    clients: int = 16
    loadgen_processes: int = 2
    api_workers: int = 2
    worker_concurrency: int = 2
    pool_size: int = 8
    batch_size: int = 500
    warmup_s: float = 5.0
    duration_s: float = 30.0
    read_duration_s: float = 20.0
    webhook_duration_s: float = 15.0
    rounds: int = 3
    """Interleaved rounds of (service uniform, floor, pgbench); the headline figures are their medians."""
    pgbench_scale: int = 16
    pgbench_duration_s: float = 30.0
    profile: bool = True
    profile_duration_s: float = 20.0
    deposit_amount: int = 10_000_000
    """Kobo credited to each wallet before the scenarios (NGN 100,000: transfers never run dry)."""
    max_transfer_amount: int = 100
    drain_timeout_s: float = 180.0
    smoke: bool = False
    python: str = ""
    """The interpreter of the measured processes (service and floor): the deployed environment's, made by the
    run (`stack.deployed_python`); empty until then."""


SMOKE = Parameters(
    wallets=20,
    clients=4,
    loadgen_processes=1,
    api_workers=1,
    worker_concurrency=1,
    pool_size=4,
    warmup_s=0.5,
    duration_s=2.0,
    read_duration_s=2.0,
    webhook_duration_s=2.0,
    pgbench_scale=1,
    pgbench_duration_s=2.0,
    profile=False,
    profile_duration_s=2.0,
    drain_timeout_s=40.0,
    rounds=2,  # the fewest that still interleave: the suite runs the smoke run, and its figures never count
    smoke=True,
)


def parameters_from(args: argparse.Namespace) -> Parameters:
    base = SMOKE if args.smoke else Parameters()
    chosen: dict[str, Any] = {}
    for option, name in (
        ("wallets", "wallets"),
        ("clients", "clients"),
        ("loadgen_processes", "loadgen_processes"),
        ("api_workers", "api_workers"),
        ("worker_concurrency", "worker_concurrency"),
        ("pool_size", "pool_size"),
        ("batch_size", "batch_size"),
        ("warmup", "warmup_s"),
        ("duration", "duration_s"),
        ("rounds", "rounds"),
        ("pgbench_duration", "pgbench_duration_s"),
        ("profile_duration", "profile_duration_s"),
    ):
        value = getattr(args, option, None)
        if value is not None:
            chosen[name] = value
    if "duration_s" in chosen:
        chosen["read_duration_s"] = min(base.read_duration_s, chosen["duration_s"])
        chosen["webhook_duration_s"] = min(base.webhook_duration_s, chosen["duration_s"])
    if "clients" in chosen and not args.smoke:
        chosen["pgbench_scale"] = chosen["clients"]
    if args.pgbench_scale is not None:
        chosen["pgbench_scale"] = args.pgbench_scale
    if args.profile:
        chosen["profile"] = True
    if args.no_profile:
        chosen["profile"] = False
    params = replace(base, **chosen)
    if params.wallets < 2 or params.clients < 1 or params.loadgen_processes < 1 or params.rounds < 1:
        msg = "need at least 2 wallets, 1 client, 1 load generator process and 1 round"
        raise SystemExit(msg)
    return params
