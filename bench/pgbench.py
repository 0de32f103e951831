"""The roofline: `pgbench -b tpcb-like` with the load's client count, on a scratch database of its own.

Initialised once (`-i -s <scale>`) and run once per round, between the service's and the floor's windows,
so that all three figures of a round see the same machine. Its CPU is read from `/proc` like the rest.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

from bench import procfs
from bench.scenarios import load_average

if TYPE_CHECKING:
    from bench.params import Parameters
    from bench.scenarios import Scenarios
    from bench.stack import PgServer


class PgBench:
    def __init__(self, params: Parameters, pg: PgServer, stamp: str, scenarios: Scenarios) -> None:
        binary = shutil.which("pgbench")
        if binary is None:
            msg = "pgbench is not installed (apt-get install postgresql-client)"
            raise RuntimeError(msg)
        self.binary = binary
        self.params = params
        self.pg = pg
        self.database = f"wallet_bench_pgbench_{stamp}"
        self.scenarios = scenarios
        self.created = False

    async def prepare(self) -> None:
        """`CREATE DATABASE` and `pgbench -i -q -s <scale>`."""
        await self.scenarios.db.execute(f'CREATE DATABASE "{self.database}"')
        self.created = True
        init = await asyncio.to_thread(
            subprocess.run,
            [self.binary, "-i", "-q", "-s", str(self.params.pgbench_scale), *self.pg.libpq_args(), self.database],
            capture_output=True,
            text=True,
            env=self.pg.libpq_env(),
            check=False,
        )
        if init.returncode != 0:
            msg = f"pgbench -i failed: {init.stderr[-2000:]}"
            raise RuntimeError(msg)

    async def drop(self) -> None:
        if self.created:
            await self.scenarios.db.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            self.created = False

    async def run(self, round_index: int = 0) -> dict[str, Any]:
        """`pgbench -b tpcb-like -c <clients> -T <duration>`, its CPU measured from /proc meanwhile."""
        params = self.params
        threads = max(1, min(params.clients, os.cpu_count() or 1))
        command = [
            self.binary,
            "-b",
            "tpcb-like",
            "-c",
            str(params.clients),
            "-j",
            str(threads),
            "-T",
            str(max(round(params.pgbench_duration_s), 1)),
            *self.pg.libpq_args(),
            self.database,
        ]
        print(f"  pgbench round {round_index + 1}", flush=True)
        backends: list[int] = []
        groups = [
            procfs.Group("postgres", lambda: backends),
            procfs.Group("postgres_all", lambda: procfs.pids_named("postgres")),
            procfs.Group("pgbench", lambda: procfs.pids_named("pgbench")),
            procfs.Group("idle_stack", self.scenarios.stack_pids),
        ]
        process = await asyncio.create_subprocess_exec(
            *command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.pg.libpq_env(),
        )
        await asyncio.sleep(0.5)
        backends[:] = await self.scenarios.backends_of(self.database)
        before = procfs.snapshot_cpu(groups)
        await asyncio.sleep(max(params.pgbench_duration_s - 1.0, 0.5))
        after = procfs.snapshot_cpu(groups)
        load_avg = load_average()
        out, err = await process.communicate()
        text = out.decode() + err.decode()
        if process.returncode != 0:
            msg = f"pgbench failed: {text[-2000:]}"
            raise RuntimeError(msg)
        tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", text)
        latency = re.search(r"latency average = ([0-9.]+) ms", text)
        transactions = re.search(r"number of transactions actually processed: (\d+)", text)
        cpu = procfs.cpu_between(before, after)
        tps_value = round(float(tps.group(1)), 1) if tps else None
        postgres_cores = cpu["cores_used"].get("postgres", 0.0)  # type: ignore[attr-defined]
        print(f"    {tps_value} tps", flush=True)
        return {
            "round": round_index + 1,
            "tps": tps_value,
            "latency_avg_ms": float(latency.group(1)) if latency else None,
            "transactions": int(transactions.group(1)) if transactions else None,
            "cpu_ms_per_transaction": round(1000 * postgres_cores / tps_value, 3) if tps_value else None,
            "command": " ".join(["pgbench", *command[1 : -1 - len(self.pg.libpq_args())], "<db>"]),
            "scale": params.pgbench_scale,
            "clients": params.clients,
            "threads": threads,
            "duration_s": params.pgbench_duration_s,
            "cpu": cpu,
            "load_average": load_avg,
        }
