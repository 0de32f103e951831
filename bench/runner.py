"""`wallet bench`: the order of a run, and `main`, the command's entry point (`app/cli.py` calls it).

1. a private `redis-server` (or `--redis-url`), a fresh `wallet_bench_<stamp>` database migrated with
   `app.lib.migrations.upgrade`, the Paystack stand-in, then the API and a Celery worker (`bench/stack.py`);
2. funding through the real deposit path (`bench/funding.py`);
3. the floor (`bench/floor.py`, the plain transaction program) on its own `wallet_floor_<stamp>` database and
   pgbench's scratch database;
4. interleaved rounds: service uniform transfers, the floor, pgbench, repeated `--rounds` times (medians); in
   the first round only, right after the floor, its informational one-statement variant, served for that one
   window on a `wallet_floor_one_statement_<stamp>` database of its own;
5. the other scenarios (hot recipient, half load, read mix, webhook burst; `bench/scenarios.py`), then
   unless `--no-profile` the service restarted under cProfile (`bench/profiles.py`);
6. the headline figures (`bench/headline.py`) and `latest.{json,md,png}` (`bench/report.py`); the databases
   are dropped (unless `--keep`) and every process we started is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import socket
import sys
import tempfile
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import redis

from app.config import Settings, get_settings, load_settings
from app.lib.infra import free_port
from bench import floor as floor_program
from bench import procfs
from bench.funding import fund
from bench.headline import summarize
from bench.loadgen import READ, TRANSFER, WEBHOOK, WEBHOOK_REFERENCE_PLACEHOLDER
from bench.params import Parameters, parameters_from
from bench.pgbench import PgBench
from bench.profiles import profiled_loads, profiling_env
from bench.scenarios import Scenarios, poll
from bench.stack import (
    FloorServer,
    PgServer,
    Service,
    Stack,
    deployed_python,
    service_env,
    start_private_redis,
    stop_private_redis,
)

if TYPE_CHECKING:
    import subprocess

    from tests.support.paystack_standin import PaystackStandIn

__all__ = ["Bench", "main", "parameters_from"]


class Bench:
    def __init__(self, params: Parameters, args: argparse.Namespace) -> None:
        self.params = params
        self.args = args
        self.stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S") + "_" + secrets.token_hex(2)
        server_url = args.database_url or get_settings().database.url
        self.pg = PgServer.from_url(server_url)
        self.database = f"wallet_bench_{self.stamp}"
        self.database_url = self.pg.url(self.database)
        self.floor_database = f"wallet_floor_{self.stamp}"
        self.floor_one_statement_database = f"wallet_floor_one_statement_{self.stamp}"
        self.work_dir = Path(tempfile.mkdtemp(prefix="wallet-bench-"))
        self.log_dir = self.work_dir / "logs"
        self.notes: list[str] = []
        self.environment = "development"
        self.redis_process: subprocess.Popen[bytes] | None = None
        self.redis_version = ""
        self.redis: redis.Redis | None = None
        self.standin: PaystackStandIn | None = None
        self.env: dict[str, str] = {}
        self.settings: Settings | None = None
        self.stack: Stack | None = None
        self.floor: FloorServer | None = None
        self.scenarios: Scenarios | None = None

    def run(self) -> dict[str, Any]:
        from app.lib.infra import create_database_if_missing, drop_database
        from app.lib.migrations import upgrade
        from tests.support.paystack_standin import PaystackStandIn

        started = time.time()
        machine = procfs.machine()
        self.log_dir.mkdir()
        print(f"wallet bench: {self.params}\n  work dir {self.work_dir}", flush=True)
        try:
            if self.args.redis_url:
                redis_url = self.args.redis_url
                self.redis_version = "configured"
            else:
                redis_url, self.redis_process, self.redis_version = start_private_redis(self.work_dir)
            self.redis = redis.Redis.from_url(redis_url)
            create_database_if_missing(self.database_url)
            upgrade(self.database_url)
            print(f"  database {self.database} migrated; redis {redis_url}", flush=True)
            python, environment = deployed_python()
            self.params = replace(self.params, python=python)
            self.environment = environment
            print(f"  service environment: {environment}", flush=True)
            self.standin = PaystackStandIn(validate=False).start()
            self.env = service_env(self.params, self.work_dir, self.database_url, redis_url, self.standin)
            self.settings = load_settings(environ=self.env, dotenv=self.work_dir / "no.env")
            results = asyncio.run(self._run_async())
        finally:
            for process in (self.floor, self.stack):
                if process is not None:
                    process.stop()
            if self.standin is not None:
                self.standin.stop()
            if self.redis_process is not None:
                stop_private_redis(self.redis_process)
            if not self.args.keep:
                with contextlib.suppress(Exception):
                    drop_database(self.database_url)
            else:
                print(
                    f"  kept databases {self.database}, {self.floor_database} and {self.floor_one_statement_database}",
                    flush=True,
                )
        results["machine"] = machine | {"load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
        results["parameters"] = asdict(self.params) | {
            "transfer_wait_ms": 0,
            "rate_limit_per_minute": 0,
            "log_level": "WARNING",
            "redis": self.redis_version,
            "postgres_server": f"{self.pg.host}:{self.pg.port}",
            "service_environment": self.environment,
        }
        results["started_at"] = datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds")
        results["duration_s"] = round(time.time() - started, 1)
        results["command"] = "wallet bench" + (" --smoke" if self.params.smoke else "")
        results["notes"] = self.notes + results.pop("crowding_notes", [])
        return results

    async def _run_async(self) -> dict[str, Any]:
        assert self.redis is not None
        db = await asyncpg.connect(self.pg.dsn(self.database))
        redis_pid = self.redis_process.pid if self.redis_process else None
        self.scenarios = Scenarios(
            self.params, self.stamp, db, redis_client=self.redis, redis_pid=redis_pid, notes=self.notes
        )
        try:
            await self.check_connection_budget(db)
            return await self._measure(self.scenarios)
        finally:
            for target in self.scenarios.targets.values():
                target.close()
            await db.close()

    async def _measure(self, scenarios: Scenarios) -> dict[str, Any]:
        params = self.params
        assert self.redis is not None
        assert self.settings is not None
        assert self.standin is not None
        self.stack = Stack(self.env, params, self.log_dir, self.redis)
        await asyncio.to_thread(self.stack.start)
        scenarios.targets["service"] = self.stack.target(self.database)
        print(f"  stack up at {self.stack.base_url}", flush=True)
        wallets, funding = await fund(params, self.settings, self.standin, self.stack, scenarios)
        print(f"  funded {params.wallets} wallets: {funding}", flush=True)

        rounds, floor_details = await self._rounds(scenarios, wallets)

        numbers = [number for _, number in wallets]
        others: dict[str, Any] = {}
        hot = numbers[0]
        others["hot_recipient"] = await scenarios.scenario(
            "hot_recipient",
            TRANSFER,
            "every transfer to one wallet, closed loop",
            scenarios.split(wallets[1:], hot_recipient=hot),
            duration=params.duration_s,
        )
        peak = sorted(r["accepted_per_s"] for r in rounds["service"])[(len(rounds["service"]) - 1) // 2] or 1.0
        half_rate = peak / 2
        others["uniform_half_load"] = await scenarios.scenario(
            "uniform_half_load",
            TRANSFER,
            f"uniform transfers, open loop at 50% of the peak accepted rate ({half_rate:.0f}/s)",
            scenarios.split(wallets, recipients=tuple(numbers), rate=half_rate),
            duration=params.duration_s,
        )
        others["uniform_half_load"]["target_rate_per_s"] = round(half_rate, 1)
        others["read_mix"] = await scenarios.scenario(
            "read_mix",
            READ,
            "GET /wallet/balance and GET /wallet/transactions?limit=20, half each, closed loop",
            scenarios.split(wallets),
            duration=params.read_duration_s,
        )
        template = self.standin.build_charge_success(WEBHOOK_REFERENCE_PLACEHOLDER)
        others["webhook_burst"] = await scenarios.scenario(
            "webhook_burst",
            WEBHOOK,
            "distinct signed charge.success events (unknown references) posted as fast as possible",
            [
                scenarios.spec(
                    WEBHOOK,
                    (),
                    index,
                    webhook_template=template,
                    webhook_secret=self.standin.secret_key,
                    reference_prefix=f"bench-{self.stamp}",
                )
                for index in range(params.loadgen_processes)
            ],
            duration=params.webhook_duration_s,
            # Processing a burst takes the worker far longer than receiving it; what it managed in this
            # time gives the processing rate, the rest would only make the run longer.
            drain_timeout_s=min(params.drain_timeout_s, 45.0),
        )
        others["uniform_with_subscribers"] = await self._with_subscribers(scenarios, wallets)
        profile = None
        if params.profile:
            try:
                profile = await self._profile(scenarios, wallets)
            except Exception as exc:  # noqa: BLE001 - the measured figures stand without the profile
                print(f"  profiling failed: {exc!r}", flush=True)
                self.notes.append(f"the profiled run failed: {exc!r}")
        return summarize(rounds, others, funding, profile, floor_details)

    async def _with_subscribers(self, scenarios: Scenarios, wallets: list[tuple[str, str]]) -> dict[str, Any]:
        """The uniform load again with every wallet subscribed to every event: what the outbox and the
        deliveries cost settlement, and how long an event takes to reach its receiver."""
        assert self.stack is not None
        port = free_port()
        command = [sys.executable, "-m", "bench.receiver", str(port)]
        receiver = await asyncio.to_thread(Service, "receiver", command, dict(os.environ), self.log_dir)
        endpoints: list[tuple[str, str]] = []
        try:
            await poll(lambda: asyncio.to_thread(_accepts, port), timeout_s=30)
            gate = asyncio.Semaphore(16)
            async with httpx.AsyncClient(base_url=self.stack.base_url, timeout=30) as http:

                async def subscribe(token: str) -> tuple[str, str]:
                    async with gate:
                        answer = await http.post(
                            "/webhooks",
                            json={"url": f"http://127.0.0.1:{port}/hooks", "events": ["*"]},
                            headers={"Authorization": f"Bearer {token}"},
                        )
                    answer.raise_for_status()
                    return token, str(answer.json()["id"])

                endpoints = list(await asyncio.gather(*(subscribe(token) for token, _ in wallets)))
                print(f"  {len(endpoints)} endpoints subscribed to every event at 127.0.0.1:{port}", flush=True)
                report = await scenarios.scenario(
                    "uniform_with_subscribers",
                    TRANSFER,
                    "uniform transfers, closed loop, every wallet's endpoint subscribed to every event "
                    "(a local receiver answering 204)",
                    scenarios.uniform(wallets, self.stack.port),
                    duration=self.params.duration_s,
                )

                async def unsubscribe(token: str, endpoint_id: str) -> None:
                    async with gate:
                        await http.delete(f"/webhooks/{endpoint_id}", headers={"Authorization": f"Bearer {token}"})

                await asyncio.gather(*(unsubscribe(token, endpoint_id) for token, endpoint_id in endpoints))
        finally:
            await asyncio.to_thread(receiver.stop)
        return report

    async def _rounds(
        self, scenarios: Scenarios, wallets: list[tuple[str, str]]
    ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
        """The headline comparison: service, floor and pgbench windows, interleaved, `rounds` times.

        Interleaved so that a change in what else the machine does (it is shared) lands on all three rather
        than on whichever happened to run then. The floor and pgbench are set up before the first round and
        torn down after the last; the stack that is not measured idles meanwhile (its CPU is reported). The
        floor's one-statement variant is informational: one window, in the first round after the floor, to
        keep the run short (`_floor_one_statement`).
        """
        params = self.params
        assert self.stack is not None
        pgbench = PgBench(params, self.pg, self.stamp, scenarios)
        secret = secrets.token_urlsafe(48)
        floor_db: asyncpg.Connection | None = None
        problems: list[str] = []
        deadlocks = 0
        one_statement: dict[str, Any] = {}
        await scenarios.db.execute(f'CREATE DATABASE "{self.floor_database}"')
        rounds: dict[str, list[dict[str, Any]]] = {
            "service": [],
            "floor": [],
            "floor_one_statement": [],
            "pgbench": [],
        }
        try:
            floor_db = await asyncpg.connect(self.pg.dsn(self.floor_database))
            floor_wallets = await floor_program.create_schema(
                floor_db, params.wallets, params.deposit_amount, secret, seed=hash(self.stamp)
            )
            floor = self.floor = FloorServer(params, self.log_dir, self.pg.dsn(self.floor_database), secret)
            await asyncio.to_thread(floor.start)
            scenarios.targets["floor"] = floor.target(self.floor_database)
            print(f"  floor up at {floor.base_url} on {self.floor_database}", flush=True)
            await pgbench.prepare()
            for index in range(params.rounds):
                service = await scenarios.scenario(
                    f"uniform round {index + 1}",
                    TRANSFER,
                    "transfers between random wallets, closed loop",
                    scenarios.uniform(wallets, self.stack.port, index),
                    duration=params.duration_s,
                )
                rounds["service"].append(service | {"round": index + 1})
                rounds["floor"].append(await scenarios.floor_round(index, floor_wallets, floor_db))
                if index == 0:
                    one_round, one_statement = await self._floor_one_statement(scenarios, index, secret)
                    rounds["floor_one_statement"].append(one_round)
                rounds["pgbench"].append(await pgbench.run(index))
            # Stopped first: its backends report their statistics (the deadlock count) as they exit.
            scenarios.targets.pop("floor").close()
            await asyncio.to_thread(floor.stop)
            self.floor = None
            problems = [
                row["problem"]
                for row in await floor_program.check_ledger(floor_db, params.wallets, params.deposit_amount)
            ]
            await asyncio.sleep(1.0)
            deadlocks = await floor_program.deadlocks(floor_db)
            if problems:
                self.notes.append(f"the floor's ledger check failed: {sorted(set(problems))}")
        finally:
            with contextlib.suppress(Exception):
                await pgbench.drop()
            await self._tear_down_floor(scenarios, self.floor, floor_db, self.floor_database)
            self.floor = None
        details = {
            "program": "bench/floor.py, FLOOR_PROGRAM=transaction",
            "server": f"uvicorn --factory bench.floor:create_app --workers {params.api_workers}",
            "pool_size_per_process": params.pool_size,
            "wallets": params.wallets,
            "balance_each": params.deposit_amount,
            "schema": floor_program.SCHEMA.strip(),
            "shape": (
                "a pooled connection (asyncpg's defaults), one explicit transaction of three statements: the debit "
                "with the balance check in its WHERE, the credit, one INSERT of the two entries; the whole "
                "transaction retried when PostgreSQL breaks a deadlock (SQLSTATE 40P01)"
            ),
            "statement": floor_program.TRANSACTION.strip(),
            "deadlocks_detected": deadlocks,
            "ledger_check_problems": problems,
            "one_statement": one_statement,
        }
        return rounds, details

    async def _tear_down_floor(
        self,
        scenarios: Scenarios,
        server: FloorServer | None,
        db: asyncpg.Connection | None,
        database: str,
    ) -> None:
        """Stop a floor program, close its connection and drop its database (unless `--keep`)."""
        if server is not None:
            if server.name in scenarios.targets:
                scenarios.targets.pop(server.name).close()
            await asyncio.to_thread(server.stop)
        if db is not None:
            await db.close()
        if not self.args.keep:
            await scenarios.db.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    async def _floor_one_statement(
        self, scenarios: Scenarios, round_index: int, secret: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The floor's informational variant (the whole transfer in one statement): one window, then gone.

        On a database of its own, with the same wallets and tokens, so that its ledger is checked on its own and
        the backends measured are its own; the plain floor idles meanwhile (its CPU is reported with the
        service's as the idle stack).
        """
        params = self.params
        database = self.floor_one_statement_database
        await scenarios.db.execute(f'CREATE DATABASE "{database}"')
        server: FloorServer | None = None
        db: asyncpg.Connection | None = None
        try:
            db = await asyncpg.connect(self.pg.dsn(database))
            floor_wallets = await floor_program.create_schema(
                db, params.wallets, params.deposit_amount, secret, seed=hash(self.stamp)
            )
            server = FloorServer(params, self.log_dir, self.pg.dsn(database), secret, program="one_statement")
            await asyncio.to_thread(server.start)
            scenarios.targets[server.name] = server.target(database)
            report = await scenarios.floor_round(
                round_index,
                floor_wallets,
                db,
                server.name,
                "the floor's one-statement variant (informational): uniform transfers, closed loop, settled at commit",
            )
            problems = [
                row["problem"] for row in await floor_program.check_ledger(db, params.wallets, params.deposit_amount)
            ]
            if problems:
                self.notes.append(f"the one-statement floor's ledger check failed: {sorted(set(problems))}")
        finally:
            await self._tear_down_floor(scenarios, server, db, database)
        details = {
            "program": "bench/floor.py, FLOOR_PROGRAM=one_statement",
            "measured": f"once, in round {round_index + 1}, right after the floor",
            "shape": "the whole transfer in one CTE statement (lock both rows in id order, debit, credit, insert "
            "the entries): one round trip, one implicit transaction",
            "statement": floor_program.ONE_STATEMENT.strip(),
            "ledger_check_problems": problems,
        }
        return report, details

    async def _profile(self, scenarios: Scenarios, wallets: list[tuple[str, str]]) -> dict[str, Any]:
        """Restart the service under cProfile, run its profiled loads, stop it."""
        assert self.stack is not None
        assert self.standin is not None
        directory = self.work_dir / "profile"
        directory.mkdir()
        print("  profiling: restarting the stack under cProfile", flush=True)
        scenarios.targets.pop("service").close()
        await asyncio.to_thread(self.stack.stop)
        self.stack = Stack(self.env, self.params, self.log_dir, self.stack.redis)
        await asyncio.to_thread(self.stack.start, profiling_env(directory))
        scenarios.targets["service"] = self.stack.target(self.database)
        profile = await profiled_loads(scenarios, wallets, self.standin, directory)
        scenarios.targets.pop("service").close()
        await asyncio.to_thread(self.stack.stop)
        self.stack = None
        return profile

    async def check_connection_budget(self, db: asyncpg.Connection) -> None:
        """Warn when PostgreSQL has fewer free connections than the stack, the floor and pgbench may open."""
        params = self.params
        # A full pool per process (overflow can add as many again), the floor's pools (open while the service
        # idles; both programs' during the one-statement window), pgbench's clients, and a few of our own.
        needed = params.pool_size * (3 * params.api_workers + params.worker_concurrency) + params.clients + 5
        limit = int(await db.fetchval("SELECT setting::int FROM pg_settings WHERE name = 'max_connections'"))
        used = int(await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"))
        if limit - used < needed:
            note = (
                f"PostgreSQL has {limit - used} free connections (max_connections {limit}, {used} in use by other "
                f"programs) and this run may need {needed}: expect 'too many clients' errors (503s) under load"
            )
            print(f"  WARNING: {note}", flush=True)
            self.notes.append(note)


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def main(args: argparse.Namespace) -> int:
    """`wallet bench`: run, write the results, print where they are."""
    from bench.report import read_results, write_results

    params = parameters_from(args)
    baseline = read_results(args.baseline) if getattr(args, "baseline", None) else None
    results = Bench(params, args).run()
    paths = write_results(results, Path(args.results_dir), baseline)
    print("\n" + paths["md"].read_text())
    print("results: " + ", ".join(str(path) for path in paths.values()))
    return 0
