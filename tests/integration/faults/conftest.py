"""Fixtures of the fault tests: the folder's private stack (`tests.support.faults`), started once per package.

Every process shares the run's PostgreSQL database, so each test ends with the run's ledger check.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.support.faults import PrivateRedis, Stack
from tests.support.paystack_standin import PaystackStandIn
from tests.support.processes import service_env


@pytest.fixture(scope="package")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def fault_paystack() -> Iterator[PaystackStandIn]:
    with PaystackStandIn() as standin:
        yield standin


@pytest.fixture(scope="package")
def stack(private_redis: PrivateRedis, fault_paystack: PaystackStandIn) -> Iterator[Stack]:
    """The folder's stack: one API process; workers are started by each test as it needs them."""
    env = service_env(
        REDIS_URL=private_redis.url,
        PAYSTACK_BASE_URL=fault_paystack.base_url,
        PAYSTACK_SECRET_KEY=fault_paystack.secret_key,
        PAYSTACK_TIMEOUT_SECONDS="0.5",
        # Every pending transfer counts as stale, so one sweep (sent by the test, as beat would) settles them.
        STALE_TRANSFER_SECONDS="0",
        TRANSFER_WAIT_MS="300",
        # The limiter on (with a limit no test reaches), so every request also meets Redis through it.
        RATE_LIMIT_PER_MINUTE="1000000",
        # A delivery a killed worker held is due again after 2 s (not a minute); retries after about a second.
        WEBHOOK_LEASE_SECONDS="2",
        WEBHOOK_RETRY_BASE_SECONDS="1",
    )
    stack = Stack(redis=private_redis, paystack=fault_paystack, env=env)
    try:
        stack.start_api()
        yield stack
    finally:
        stack.close()


@pytest.fixture
def workers(stack: Stack) -> Iterator[None]:
    """Processes a test starts (`stack.start_worker`, `stack.start_api`) end with it, whatever happened.

    Each test starts from an empty broker: a drain request left by a worker an earlier test killed would
    otherwise hold off this test's runs until it expires.
    """
    stack.redis.flushdb()
    before = len(stack.processes)
    yield
    for process in stack.processes[before:]:
        # Killed, not stopped: each test has checked its outcome, and a warm shutdown costs seconds per worker.
        process.kill()
        process.stop()
    del stack.processes[before:]


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30, limits=limits) as client:
        yield client
