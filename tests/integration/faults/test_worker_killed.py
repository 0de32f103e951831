"""A worker SIGKILLed in the middle of its work: another worker process finishes it, exactly once.

Two ways a worker dies. Its pool process alone, with `WORKER_POOL=prefork` (the out-of-memory killer's
favourite): Celery's parent sees it die and, since tasks are acknowledged late and rejected when their worker
is lost, hands the message back to the queue at once. The whole worker (a machine gone; with the default
threads pool, the only way it dies): its message stays unacknowledged in Redis, and beat's sweep (sent here by
the test, as beat does) re-enqueues the work from PostgreSQL. In both cases the killed transaction leaves
nothing behind, and the second run moves the money exactly once.

`tests/integration/wallets/test_settlement_recovery.py` already covers a lone worker killed during settlement
with its messages lost; these cover, under a stream of API transfers, a pool process killed during settlement
and a worker killed beside a live one, and both deaths during webhook processing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from datetime import timedelta

import httpx
import psutil
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.lib.tasks import TaskName
from tasks.runtime import TEST_COMMIT_PAUSE_ENV
from tests.support.factories import fund
from tests.support.faults import (
    Stack,
    assert_ledger_ok,
    assert_only_contract_answers,
    assert_transfers_settled_exactly_once,
    deposit_state,
    event_status,
    paid_deposit,
    send_transfers,
    transfers_from,
    wait_credited_once,
    wait_until_all_settled,
)
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.e2e


def kill_pool_processes(worker: ServiceProcess) -> list[int]:
    """SIGKILL the worker's pool processes, leaving its parent (the consumer) alive."""
    children = psutil.Process(worker.pid).children(recursive=False)
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
    return [child.pid for child in children]


async def wait_for_output(process: ServiceProcess, text: str, *, timeout: float = 30) -> None:
    await asyncio.to_thread(process.wait_for_output, text, timeout)


async def test_a_pool_process_killed_mid_settlement_under_load_is_replaced_and_every_transfer_settles_exactly_once(
    stack: Stack, workers: None, http: httpx.AsyncClient, engine: AsyncEngine, make_user
) -> None:
    # Every settlement batch pauses before its commit, so the kill lands inside the transaction.
    worker = stack.start_worker(concurrency=1, name="settler", pool="prefork", **{TEST_COMMIT_PAUSE_ENV: "2.5"})
    recipient = await make_user()
    senders = [await make_user() for _ in range(4)]
    for sender in senders:
        await fund(engine, sender.wallet_id, 10_000)

    stop = asyncio.Event()
    load = asyncio.create_task(send_transfers(http, senders, recipient, amount=300, stop=stop, pause=0.1))
    await wait_for_output(worker, "TEST HOOK")
    killed = kill_pool_processes(worker)
    assert killed, "the worker had no pool process to kill"
    unsettled = await transfers_from(engine, [s.wallet_id for s in senders])
    assert unsettled, "transfers were accepted before the kill"
    assert {status for status, _, _ in unsettled.values()} == {"pending"}, "killed before any commit"
    await asyncio.sleep(1.0)  # transfers keep arriving while the pool process is replaced
    stop.set()
    answers = await load

    assert_only_contract_answers(answers, allowed={200, 202})
    await wait_until_all_settled(engine, senders, timeout=60)
    assert worker.alive()
    assert "SIGKILL" in worker.output() or "WorkerLostError" in worker.output(), worker.output()[-3000:]
    await assert_transfers_settled_exactly_once(
        engine, senders=senders, recipient=recipient, funded_each=10_000, acknowledged=answers.acknowledged
    )
    await assert_ledger_ok(engine)


async def test_a_worker_killed_mid_settlement_beside_a_live_one_leaves_its_batch_to_the_other_exactly_once(
    stack: Stack, workers: None, http: httpx.AsyncClient, engine: AsyncEngine, make_user
) -> None:
    """Two workers share the settlement queue, as deployed; one dies (parent and pool) in the middle of a
    batch. Its transaction dies with it, and the live worker settles that batch and everything accepted
    meanwhile, each transfer once, when beat's sweep (or the next transfer, once the dead run's drain request
    has expired) asks for a run."""
    victim, survivor = await asyncio.gather(
        asyncio.to_thread(stack.start_worker, concurrency=1, name="settle-victim", **{TEST_COMMIT_PAUSE_ENV: "60"}),
        asyncio.to_thread(stack.start_worker, concurrency=1, name="settle-survivor"),
    )
    recipient = await make_user()
    senders = [await make_user() for _ in range(4)]
    for sender in senders:
        await fund(engine, sender.wallet_id, 10_000)

    stop = asyncio.Event()
    load = asyncio.create_task(send_transfers(http, senders, recipient, amount=200, stop=stop, pause=0.1))
    await wait_for_output(victim, "TEST HOOK", timeout=60)
    victim.kill()
    await asyncio.sleep(1.5)  # transfers keep arriving after the death
    stop.set()
    answers = await load

    assert_only_contract_answers(answers, allowed={200, 202})
    stack.send(TaskName.REQUEUE_STALE_TRANSFERS)  # what beat does every 15 s
    await wait_until_all_settled(engine, senders, timeout=60)
    assert survivor.alive()
    await assert_transfers_settled_exactly_once(
        engine, senders=senders, recipient=recipient, funded_each=10_000, acknowledged=answers.acknowledged
    )
    await assert_ledger_ok(engine)


async def _deliver(stack: Stack, body: bytes) -> None:
    answer = await stack.paystack.deliver_webhook(stack.base_url, body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": True}


async def test_a_worker_killed_while_processing_a_webhook_is_finished_by_another_worker_via_the_sweep_exactly_once(
    stack: Stack, workers: None, http: httpx.AsyncClient, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    reference, body = await paid_deposit(stack, http, user, 7_500)
    # Started together to save time; the rescuer takes only beat's sweeps until the victim is dead.
    victim, rescuer = await asyncio.gather(
        asyncio.to_thread(stack.start_worker, concurrency=1, name="webhook-victim", **{TEST_COMMIT_PAUSE_ENV: "60"}),
        asyncio.to_thread(stack.start_worker, concurrency=1, name="webhook-rescuer", queues="maintenance"),
    )

    await _deliver(stack, body)
    await wait_for_output(victim, "TEST HOOK")  # the credit is written, its commit not yet sent
    victim.kill()  # the whole worker, parent and pool, as when its machine dies
    assert await deposit_state(engine, reference) == ("pending", 0)
    assert await event_status(engine, body) == "received"

    assert stack.broker.control.add_consumer("webhooks", reply=True, timeout=5, limit=1), "the rescuer did not answer"
    # Beat's sweep takes events left unprocessed for a minute; the event is made older instead of waiting.
    async with engine.begin() as connection:
        await connection.exec_driver_sql(
            "UPDATE webhook_events SET created_at = created_at - $1::interval, updated_at = updated_at - $1::interval "
            "WHERE reference = $2",
            (timedelta(minutes=5), reference),
        )
    stack.send(TaskName.REQUEUE_UNFINISHED_WEBHOOKS)
    await wait_credited_once(engine, reference)
    assert await event_status(engine, body) == "processed"
    assert rescuer.alive()

    # Paystack's redelivery is the same event: acknowledged, nothing more credited.
    await _deliver(stack, body)
    assert await event_status(engine, body) == "processed"
    assert await deposit_state(engine, reference) == ("success", 1)
    balance = await http.get("/wallet/balance", headers=user.headers)
    assert balance.json()["balance"] == 7_500
    await assert_ledger_ok(engine)


async def test_a_pool_process_killed_while_processing_webhooks_is_replaced_and_each_deposit_is_credited_once(
    stack: Stack, workers: None, http: httpx.AsyncClient, engine: AsyncEngine, make_user
) -> None:
    users = [await make_user() for _ in range(2)]
    paid = [await paid_deposit(stack, http, user, 2_000 + i) for i, user in enumerate(users)]
    worker = stack.start_worker(concurrency=1, name="webhook-worker", pool="prefork", **{TEST_COMMIT_PAUSE_ENV: "2"})

    await asyncio.gather(*(_deliver(stack, body) for _, body in paid))
    await wait_for_output(worker, "TEST HOOK")
    assert kill_pool_processes(worker), "the worker had no pool process to kill"
    assert {await deposit_state(engine, reference) for reference, _ in paid} <= {("pending", 0), ("success", 1)}

    for reference, _ in paid:
        await wait_credited_once(engine, reference)
    assert worker.alive()
    for i, user in enumerate(users):
        balance = await http.get("/wallet/balance", headers=user.headers)
        assert balance.json()["balance"] == 2_000 + i
    await assert_ledger_ok(engine)
