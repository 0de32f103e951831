"""One caller cannot take a process's database pool from everyone else: not by dribbling request bodies (read
whole before anything takes a connection, 408 after `REQUEST_BODY_TIMEOUT_SECONDS`), nor with fast requests
(at most `MAX_REQUESTS_IN_FLIGHT_PER_CALLER` of theirs run at once). A real API process with a tiny pool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.processes import service_env, start_api

pytestmark = pytest.mark.e2e

POOL_SIZE = 2
"""With its overflow, the API process may open 4 connections."""
BODY_TIMEOUT_SECONDS = 2.0
SLOW_CLIENTS = 6 * POOL_SIZE


@pytest.fixture(scope="module")
def small_api() -> Iterator[str]:
    api, base_url = start_api(
        service_env(
            DATABASE_POOL_SIZE=str(POOL_SIZE),
            REQUEST_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT_SECONDS),
            MAX_REQUESTS_IN_FLIGHT_PER_CALLER="2",
            TRANSFER_WAIT_MS="0",
        )
    )
    yield base_url
    api.stop()


@pytest.fixture
async def client(small_api: str) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    async with httpx.AsyncClient(base_url=small_api, timeout=30, limits=limits) as http:
        yield http


async def _dribble(base_url: str, token: str) -> tuple[bytes, float]:
    """Send a transfer's headers and a tenth of its body, then nothing; what came back, and after how long."""
    url = httpx.URL(base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    started = time.monotonic()
    writer.write(
        b"POST /wallet/transfer HTTP/1.1\r\nHost: wallet\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: 100\r\n\r\n" + b'{"wallet_n'
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=30)  # read() returns once the server closes
    elapsed = time.monotonic() - started
    writer.close()
    return answer, elapsed


async def _timed_balance(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[int, float]:
    started = time.monotonic()
    response = await client.get("/wallet/balance", headers=headers)
    return response.status_code, time.monotonic() - started


async def _idle_in_transaction(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(
            await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state = 'idle in transaction' AND state_change < now() - interval '1 second'"
                )
            )
            or 0
        )


async def test_slow_bodies_from_one_caller_get_408_while_others_are_served_and_hold_no_connection(
    small_api: str, client: httpx.AsyncClient, engine: AsyncEngine, make_user
) -> None:
    attacker, bystander = await make_user(), await make_user()
    slow = [asyncio.create_task(_dribble(small_api, attacker.token)) for _ in range(SLOW_CLIENTS)]
    await asyncio.sleep(0.3)  # every slow request is in, waiting for the rest of its body

    served = [await _timed_balance(client, bystander.headers) for _ in range(10)]
    assert await _idle_in_transaction(engine) == 0

    assert [status for status, _ in served] == [200] * 10
    assert max(seconds for _, seconds in served) < 1.0, served
    for answer, elapsed in await asyncio.gather(*slow):
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b'"error_code":"REQUEST_TIMEOUT"' in answer
        assert BODY_TIMEOUT_SECONDS - 0.5 <= elapsed <= BODY_TIMEOUT_SECONDS + 5, elapsed
    assert await _idle_in_transaction(engine) == 0


async def test_a_flood_of_fast_requests_from_one_caller_waits_its_turn_and_others_are_still_served(
    client: httpx.AsyncClient, make_user
) -> None:
    flooder, bystander = await make_user(), await make_user()
    flood = [asyncio.create_task(client.get("/wallet/transactions", headers=flooder.headers)) for _ in range(60)]
    await asyncio.sleep(0.05)
    served = [await _timed_balance(client, bystander.headers) for _ in range(5)]
    flooded = await asyncio.gather(*flood)

    assert [status for status, _ in served] == [200] * 5
    assert max(seconds for _, seconds in served) < 2.0, served
    # The flood is served in turn, never refused or failed for want of a connection.
    assert {response.status_code for response in flooded} == {200}
