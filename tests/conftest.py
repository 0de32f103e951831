"""The test run's infrastructure: a fresh PostgreSQL database built by the migrations, a Redis database
of its own, and fixtures for the app in-process, the real API and real Celery workers.

PostgreSQL and Redis are found as `wallet up` finds them (configured, local, else embedded).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.processes import ServiceProcess, service_env, start_api, start_worker

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.testing import AsyncTestClient
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from app.config import Settings
    from app.lib.infra import Infrastructure
    from tests.support.users import TestUser

TEST_JWT_SECRET = "test-secret-" + "x" * 40
_infra: Infrastructure | None = None


def _redis_url_with_db(url: str, db: int) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{db}" if url.count("/") > 2 else f"{url}/{db}"


def pytest_configure(config: pytest.Config) -> None:
    """Create this run's database and pick its Redis database before any app module reads settings."""
    global _infra  # noqa: PLW0603
    if os.environ.get("WALLET_TEST_CHILD"):
        return
    from app.lib.infra import free_port, resolve_infrastructure

    run_id = uuid.uuid4().hex[:10]
    data_dir = Path(tempfile.gettempdir()) / "wallet-test-data"
    environ = {k: v for k, v in os.environ.items() if k in {"DATABASE_URL", "REDIS_URL"}}
    if "DATABASE_URL" in environ:
        base, _, _ = environ["DATABASE_URL"].rpartition("/")
        environ["DATABASE_URL"] = f"{base}/wallet_test_{run_id}"
    environ |= {k: v for k, v in os.environ.items() if k.startswith("WALLET_LOCAL_")}
    _infra = resolve_infrastructure(data_dir, database=f"wallet_test_{run_id}", environ=environ)
    redis_db = int(os.environ.get("WALLET_TEST_REDIS_DB") or _lease_redis_db(_infra.redis_url, run_id))
    log_dir = Path(tempfile.mkdtemp(prefix="wallet-test-logs-"))
    os.environ.update(
        {
            "WALLET_TEST_CHILD": "1",
            "WALLET_ENV_FILE": str(log_dir / "no.env"),
            "APP_ENV": "test",
            "DATABASE_URL": _infra.database_url,
            "REDIS_URL": _redis_url_with_db(_infra.redis_url, redis_db),
            "JWT_SECRET": TEST_JWT_SECRET,
            "LOG_FILE": str(log_dir / "app.log"),
            "LOG_LEVEL": "INFO",
            "TRANSFER_WAIT_MS": os.environ.get("TRANSFER_WAIT_MS", "2000"),
            "RATE_LIMIT_PER_MINUTE": "0",
            # Event deliveries retried after about a second (not 30): a test sees three attempts in seconds.
            "WEBHOOK_RETRY_BASE_SECONDS": "1",
            "PAYSTACK_SECRET_KEY": "sk_test_wallet_suite_secret",
            # Payments (issue 5): a free loopback port reserved for the run's Paystack stand-in, so every API
            # and worker process of the run, whichever test starts it, verifies deposits against the one
            # stand-in that tests/integration/payments/conftest.py serves there (connections are refused
            # until it starts, as they were at the old placeholder http://127.0.0.1:9).
            "PAYSTACK_BASE_URL": f"http://127.0.0.1:{free_port()}",
        }
    )
    from app.config import get_settings
    from app.lib.migrations import upgrade

    get_settings.cache_clear()
    upgrade(_infra.database_url)
    config.stash[_run_key] = run_id


_run_key = pytest.StashKey[str]()
REDIS_LEASE_PREFIX = "wallet-test:redis-db:"
REDIS_LEASE_SECONDS = 3600


def _lease_redis_db(redis_url: str, run_id: str) -> int:
    """Claim a Redis database (1-15) no other concurrent run holds: runs sharing one would steal each
    other's Celery tasks. The lease lives in database 0, expires by itself if a run dies, and is released at
    the end of the run."""
    import redis

    client = redis.Redis.from_url(_redis_url_with_db(redis_url, 0))
    try:
        start = int(run_id[:4], 16)
        for offset in range(15):
            db = 1 + (start + offset) % 15
            if client.set(f"{REDIS_LEASE_PREFIX}{db}", run_id, nx=True, ex=REDIS_LEASE_SECONDS):
                return db
    finally:
        client.close()
    msg = "all 15 Redis test databases are leased by other test runs; wait for one to finish"
    raise RuntimeError(msg)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _infra is None:
        return
    import redis

    from app.lib.infra import drop_database

    try:
        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        client.flushdb()
        db = client.connection_pool.connection_kwargs.get("db", 0)
        lease = redis.Redis.from_url(_redis_url_with_db(_infra.redis_url, 0))
        if lease.get(f"{REDIS_LEASE_PREFIX}{db}") == config.stash.get(_run_key, "").encode():
            lease.delete(f"{REDIS_LEASE_PREFIX}{db}")
    except redis.RedisError:
        pass
    if not os.environ.get("WALLET_KEEP_TEST_DB"):
        try:
            drop_database(_infra.database_url)
        except Exception:
            pass
    _infra.stop()


@pytest.fixture(scope="session")
def settings() -> Settings:
    from app.config import get_settings

    return get_settings()


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = settings.database.create_engine()
    yield engine
    await engine.dispose()


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A database session for arranging and checking state directly."""
    from app.lib.db import session_maker

    async with session_maker(engine)() as session:
        yield session


@pytest.fixture(scope="session")
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    from app.lib.redis import create_redis

    client = create_redis(settings.redis.url)
    yield client
    await client.aclose()


@pytest.fixture
def app() -> Litestar:
    from app.main import create_app

    return create_app()


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The app in-process, over ASGI."""
    from litestar.testing import AsyncTestClient

    async with AsyncTestClient(app=app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def live_api() -> Iterator[str]:
    """The real API under uvicorn, as a user runs it; yields its base URL."""
    api, base_url = start_api(service_env())
    yield base_url
    api.stop()


@pytest.fixture(scope="session")
def worker() -> Iterator[ServiceProcess]:
    """A real Celery worker consuming every queue."""
    process = start_worker(service_env(), concurrency=2, name="suite-worker")
    yield process
    process.stop()


@pytest.fixture
def make_user(engine: AsyncEngine, settings: Settings) -> Callable[..., Awaitable[TestUser]]:
    """`await make_user()`: a user with a wallet, made through the sign-in path, and a JWT for them."""

    from tests.support.users import make_user as make_user_with

    async def make(email: str | None = None, **identity: Any) -> TestUser:
        return await make_user_with(engine, settings, email, **identity)

    return make


E2E_FIXTURES = frozenset({"live_api", "worker", "stack", "small_api", "limited_api"})
"""Fixtures that start real API or worker processes: a test that uses one (however indirectly) is e2e."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that drives real processes `e2e`, so `make test-fast` (`-m "not e2e"`) leaves them out."""
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
