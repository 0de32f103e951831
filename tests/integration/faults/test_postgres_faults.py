"""PostgreSQL connections killed under load, and PostgreSQL unreachable.

Connections are terminated with `pg_terminate_backend`, only those of this run's database that serve this
stack's API and worker (matched by client port), never the machine's other databases. A request caught by it
is a 503 `SERVICE_UNAVAILABLE` or succeeds, never a 500; no money is lost or moved twice, and the processes
recover by themselves. The shared PostgreSQL is never stopped: an unreachable database is an API process
pointed at a closed port, then at a port that accepts connections and never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.lib.infra import free_port
from app.lib.tasks import TaskName
from tests.support.factories import fund
from tests.support.faults import (
    Stack,
    assert_ledger_ok,
    assert_only_contract_answers,
    assert_transfers_settled_exactly_once,
    send_transfers,
    terminate_backends_of,
    wait_until_all_settled,
)

pytestmark = pytest.mark.e2e

FUNDS = 50_000
HANG_SECONDS = 10.0
"""Far above the 5 s connect timeout, far below the client's 30 s: an answer later than this is a hang."""


async def test_backends_terminated_under_load_give_503_or_success_never_500_and_lose_no_money(
    stack: Stack, workers: None, http: httpx.AsyncClient, engine: AsyncEngine, make_user
) -> None:
    worker = stack.start_worker(concurrency=1, name="pg-terminate")
    recipient = await make_user()
    senders = [await make_user() for _ in range(4)]
    for sender in senders:
        await fund(engine, sender.wallet_id, FUNDS)
    assert stack.api_process is not None

    stop = asyncio.Event()
    load = asyncio.create_task(send_transfers(http, senders, recipient, amount=100, stop=stop, pause=0.02))
    await asyncio.sleep(0.5)
    terminated = 0
    for _ in range(10):
        terminated += await terminate_backends_of(engine, [stack.api_process, worker])
        await asyncio.sleep(0.3)
    stop.set()
    answers = await load

    assert terminated > 0, "no backend of the stack was terminated: the fault never happened"
    assert_only_contract_answers(answers, allowed={200, 202, 503}, hang_seconds=HANG_SECONDS)
    assert answers.acknowledged, "transfers were accepted while connections were being killed"

    # Recovered by itself: once the database is back, the very next requests succeed, even those that meet
    # pooled connections that died while idle (a database restart or failover between two requests).
    await asyncio.sleep(0.5)
    assert await terminate_backends_of(engine, [stack.api_process]) > 0, "the API keeps idle connections"
    for sender in senders:
        balance = await http.get("/wallet/balance", headers=sender.headers)
        assert balance.status_code == 200, balance.text
    stack.send(TaskName.REQUEUE_STALE_TRANSFERS)  # a settlement whose connection was killed is left to beat's sweep
    await wait_until_all_settled(engine, senders, timeout=60)
    await assert_transfers_settled_exactly_once(
        engine, senders=senders, recipient=recipient, funded_each=FUNDS, acknowledged=answers.acknowledged
    )
    await assert_ledger_ok(engine)


@contextlib.contextmanager
def silent_server(port: int) -> Iterator[None]:
    """A TCP port that accepts connections (the kernel completes the handshake) and never says a word."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    try:
        yield
    finally:
        listener.close()


async def test_an_unreachable_database_is_a_quick_503_service_unavailable_on_every_route_that_needs_it(
    stack: Stack, workers: None, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    recipient = await make_user()
    port = free_port()
    unreachable = make_url(engine.url.render_as_string(hide_password=False)).set(host="127.0.0.1", port=port)
    base_url = stack.start_api(DATABASE_URL=unreachable.render_as_string(hide_password=False))
    body = stack.paystack.build_charge_success("dep-unreachable-database")

    async def every_route(client: httpx.AsyncClient) -> list[tuple[str, httpx.Response, float]]:
        async def timed(name: str, call) -> tuple[str, httpx.Response, float]:
            started = time.monotonic()
            response = await call
            return name, response, time.monotonic() - started

        return list(
            await asyncio.gather(
                timed("balance", client.get("/wallet/balance", headers=user.headers)),
                timed(
                    "transfer",
                    client.post(
                        "/wallet/transfer",
                        json={"wallet_number": recipient.wallet_number, "amount": 100},
                        headers=user.headers,
                    ),
                ),
                timed("transactions", client.get("/wallet/transactions", headers=user.headers)),
                timed(
                    "webhook",
                    client.post(
                        "/wallet/paystack/webhook",
                        content=body,
                        headers={"content-type": "application/json", "x-paystack-signature": stack.paystack.sign(body)},
                    ),
                ),
            )
        )

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        # Nothing listens: connections are refused.
        refused = await every_route(client)
        health = await client.get("/health")
        # Something listens and never answers, like a server behind a dropped route.
        with silent_server(port):
            silent = await every_route(client)

    for name, response, seconds in refused + silent:
        assert response.status_code == 503, (name, response.status_code, response.text)
        assert response.json()["error_code"] == "SERVICE_UNAVAILABLE", (name, response.text)
        assert response.headers.get("retry-after"), name
        assert seconds < HANG_SECONDS, f"{name} took {seconds:.1f}s: the request hung"
    assert health.status_code == 503
    assert health.json()["checks"] == {"database": "error", "redis": "ok"}
    await assert_ledger_ok(engine)
