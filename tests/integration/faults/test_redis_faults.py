"""Redis restarted or flushed under load: PostgreSQL, not Redis, is the record of accepted work.

The stack's Redis is a private server (never the machine's shared one). While it is down, nothing hangs:
authentication needs only PostgreSQL, so transfers are still accepted (202, to settle later) and a logout is
recorded; `/health` says which dependency failed (503). When it comes back (empty) or is
flushed (every queued message and drain request gone), the API recovers by itself and beat's sweeps (sent here
by the test, as beat does every 15 s and every minute) settle every accepted transfer and apply every
acknowledged webhook, each exactly once.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.lib.tasks import TaskName
from tests.support.factories import fund
from tests.support.faults import (
    Stack,
    assert_ledger_ok,
    assert_only_contract_answers,
    assert_transfers_settled_exactly_once,
    balances,
    paid_deposit,
    send_transfers,
    wait_credited_once,
    wait_for,
    wait_until_all_settled,
)
from tests.support.users import add_api_key

pytestmark = pytest.mark.e2e

FUNDS = 50_000


async def _senders(engine: AsyncEngine, db: AsyncSession, make_user, count: int) -> tuple[list, dict[str, dict]]:
    """Funded senders, half of them calling with an API key (which needs no Redis to authenticate)."""
    senders = [await make_user() for _ in range(count)]
    key_headers: dict[str, dict[str, str]] = {}
    for index, sender in enumerate(senders):
        await fund(engine, sender.wallet_id, FUNDS)
        if index % 2:
            key_headers[sender.wallet_number] = await add_api_key(db, sender.user_id, ["transfer", "read"])
    return senders, key_headers


async def _recovered(http: httpx.AsyncClient, user) -> None:
    async def healthy() -> bool:
        health = await http.get("/health")
        balance = await http.get("/wallet/balance", headers=user.headers)
        return health.status_code == 200 and balance.status_code == 200

    await wait_for(healthy, timeout=30, what="the API to recover by itself")


async def test_redis_restarted_under_load_accepts_transfers_while_down_and_every_accepted_transfer_settles_once(
    stack: Stack,
    workers: None,
    http: httpx.AsyncClient,
    engine: AsyncEngine,
    db: AsyncSession,
    make_user,
) -> None:
    stack.start_worker(concurrency=1, name="redis-restart")
    recipient = await make_user()
    senders, key_headers = await _senders(engine, db, make_user, 4)
    key_sender = next(sender for sender in senders if sender.wallet_number in key_headers)
    payer = await make_user()
    deposit, _ = await paid_deposit(stack, http, payer, 8_000)

    stop = asyncio.Event()
    load = asyncio.create_task(
        send_transfers(
            http,
            senders,
            recipient,
            amount=100,
            stop=stop,
            headers_of=lambda sender: key_headers.get(sender.wallet_number, sender.headers),
            pause=0.05,
        )
    )
    await asyncio.sleep(1.0)
    down_at = time.monotonic()
    stack.redis.stop()
    await asyncio.sleep(0.5)
    health, key_read, logout, webhook = await asyncio.gather(
        http.get("/health"),
        http.get("/wallet/balance", headers=key_headers[key_sender.wallet_number]),
        http.post("/auth/logout", headers=payer.headers),
        stack.paystack.deliver_webhook(stack.base_url, stack.paystack.build_charge_success(deposit)),
    )
    assert health.status_code == 503, health.text
    assert health.json()["checks"] == {"database": "ok", "redis": "error"}
    assert key_read.status_code == 200, "an API key needs only PostgreSQL"
    assert logout.status_code == 200, "a logout is recorded in PostgreSQL, which needs no Redis"
    refused = await http.get("/wallet/balance", headers=payer.headers)
    assert (refused.status_code, refused.json()["error_code"]) == (401, "TOKEN_REVOKED")
    assert webhook.status_code == 200, "the event is stored in PostgreSQL before the 200"
    await asyncio.sleep(1.5)
    stack.redis.start()  # back on the same port, empty: every queued message and drain request is gone
    up_at = time.monotonic()
    await asyncio.sleep(1.5)
    stop.set()
    answers = await load

    assert_only_contract_answers(answers, allowed={200, 202, 503})
    during = answers.sent_between(down_at + 0.2, up_at - 0.2)
    # Authentication needs only PostgreSQL (JWTs and keys alike): transfers are still accepted, to settle later.
    assert any(a.status == 202 for a in during), "a transfer is still accepted while Redis is down"
    await _recovered(http, recipient)

    # What beat does: stale transfers every 15 s, events left unprocessed for a minute (made older here).
    await _age_events(engine, deposit)
    stack.send(TaskName.REQUEUE_STALE_TRANSFERS)
    stack.send(TaskName.REQUEUE_UNFINISHED_WEBHOOKS)
    await wait_until_all_settled(engine, senders, timeout=60)
    await wait_credited_once(engine, deposit)
    await assert_transfers_settled_exactly_once(
        engine, senders=senders, recipient=recipient, funded_each=FUNDS, acknowledged=answers.acknowledged
    )
    # (The payer logged out while Redis was down: the balance is read from the database.)
    assert (await balances(engine, [payer.wallet_id]))[payer.wallet_id] == 8_000
    await assert_ledger_ok(engine)


async def _age_events(engine: AsyncEngine, reference: str) -> None:
    """Make the deposit's webhook events look five minutes old, as if beat's minute had passed."""
    async with engine.begin() as connection:
        await connection.exec_driver_sql(
            "UPDATE webhook_events SET updated_at = updated_at - $1::interval WHERE reference = $2",
            (timedelta(minutes=5), reference),
        )


async def test_redis_flushed_under_load_loses_no_accepted_transfer_and_no_acknowledged_webhook(
    stack: Stack,
    workers: None,
    http: httpx.AsyncClient,
    engine: AsyncEngine,
    db: AsyncSession,
    make_user,
) -> None:
    # The worker takes only beat's sweeps at first, so settlement and webhook messages wait in Redis to be lost.
    stack.start_worker(concurrency=1, name="redis-flush", queues="maintenance")
    recipient = await make_user()
    senders, key_headers = await _senders(engine, db, make_user, 4)
    payer = await make_user()
    deposit, _ = await paid_deposit(stack, http, payer, 9_000)

    stop = asyncio.Event()
    load = asyncio.create_task(
        send_transfers(
            http,
            senders,
            recipient,
            amount=100,
            stop=stop,
            headers_of=lambda sender: key_headers.get(sender.wallet_number, sender.headers),
            pause=0.05,
        )
    )
    for _ in range(3):
        await asyncio.sleep(0.7)
        stack.redis.flushdb()
    webhook = await stack.paystack.deliver_webhook(stack.base_url, stack.paystack.build_charge_success(deposit))
    assert webhook.status_code == 200, webhook.text
    await asyncio.sleep(0.7)
    stop.set()
    answers = await load
    stack.redis.flushdb()  # after the last acceptance: no message is left to settle anything
    assert stack.redis.llen("settlement") == 0
    assert stack.redis.llen("webhooks") == 0

    assert_only_contract_answers(answers, allowed={200, 202})
    assert answers.acknowledged
    await _recovered(http, senders[0])

    stack.broker.control.add_consumer("settlement", reply=True, timeout=5, limit=1)
    stack.broker.control.add_consumer("webhooks", reply=True, timeout=5, limit=1)
    # Beat's sweeps: stale transfers at once (STALE_TRANSFER_SECONDS=0 here), events left for a minute.
    await _age_events(engine, deposit)
    stack.send(TaskName.REQUEUE_STALE_TRANSFERS)
    stack.send(TaskName.REQUEUE_UNFINISHED_WEBHOOKS)
    await wait_until_all_settled(engine, senders, timeout=60)
    await wait_credited_once(engine, deposit)
    await assert_transfers_settled_exactly_once(
        engine, senders=senders, recipient=recipient, funded_each=FUNDS, acknowledged=answers.acknowledged
    )
    balance = await http.get("/wallet/balance", headers=payer.headers)
    assert balance.json()["balance"] == 9_000
    await assert_ledger_ok(engine)
