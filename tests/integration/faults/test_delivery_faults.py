"""Event deliveries survive a worker killed mid-delivery and a Redis that lost every message.

PostgreSQL is the record of what is due: a delivery a killed worker held is leased, not lost, and sent again
with the same event id once the lease (`WEBHOOK_LEASE_SECONDS`, 2 s here) expires; after Redis lost every
message, beat's sweep (sent by the test, as beat does every 15 s) finds the due deliveries and starts a run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.lib.tasks import TaskName
from tests.support.factories import fund
from tests.support.faults import Stack, assert_ledger_ok
from tests.support.receiver import Receiver
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


async def _subscribed_transfer(http: httpx.AsyncClient, engine: AsyncEngine, make_user, receiver: Receiver) -> str:
    """A transfer whose sender's endpoint is subscribed to `transfer.sent`; the endpoint's id."""
    alice, bob = await make_user(), await make_user()
    await fund(engine, alice.wallet_id, 500)
    registered = await http.post(
        "/webhooks", json={"url": receiver.url(), "events": ["transfer.sent"]}, headers=alice.headers
    )
    assert registered.status_code == 201, registered.text
    sent = await http.post(
        "/wallet/transfer", json={"wallet_number": bob.wallet_number, "amount": 100}, headers=alice.headers
    )
    assert sent.status_code in {200, 202}, sent.text
    return f"{registered.json()['id']}:{alice.headers['Authorization']}"


async def _arrivals(receiver: Receiver, count: int, timeout: float = 30) -> list[str]:
    got = await eventually(lambda: asyncio.sleep(0, receiver.events()), lambda r: len(r) >= count, timeout=timeout)
    assert len(got) >= count, f"{len(got)} deliveries arrived"
    return [r.event["id"] for r in got]


async def _delivery_once(http: httpx.AsyncClient, endpoint: str, done) -> dict:
    """The endpoint's one delivery, once `done(delivery)` holds."""
    endpoint_id, authorization = endpoint.split(":", 1)
    log = await eventually(
        lambda: http.get(f"/webhooks/{endpoint_id}/deliveries", headers={"Authorization": authorization}),
        lambda r: done(r.json()[0]),
    )
    [delivery] = log.json()
    assert done(delivery), delivery
    return delivery


async def _delivered(http: httpx.AsyncClient, endpoint: str) -> dict:
    return await _delivery_once(http, endpoint, lambda d: d["status"] == "delivered")


async def test_a_worker_killed_mid_delivery_leaves_it_to_another_which_sends_the_same_event(
    stack: Stack, workers: None, http: httpx.AsyncClient, engine: AsyncEngine, make_user, receiver: Receiver
) -> None:
    victim = stack.start_worker(name="victim")
    receiver.answer_next(200, delay=30.0)  # the first delivery hangs: the worker is killed while it waits
    endpoint = await _subscribed_transfer(http, engine, make_user, receiver)
    [first] = await _arrivals(receiver, 1)

    victim.kill()
    stack.start_worker(name="rescuer")
    await asyncio.sleep(2.5)  # the dead worker's lease expires
    stack.send(TaskName.REQUEST_DUE_DELIVERIES)

    ids = await _arrivals(receiver, 2)
    assert ids == [first, first], "the same event, sent again"
    delivery = await _delivered(http, endpoint)
    assert delivery["event_id"] == first
    await assert_ledger_ok(engine)


async def test_deliveries_pending_when_redis_lost_every_message_are_found_by_beat_and_delivered(
    stack: Stack, workers: None, http: httpx.AsyncClient, engine: AsyncEngine, make_user, receiver: Receiver
) -> None:
    worker = stack.start_worker(name="first")
    receiver.answer_next(503)  # the first attempt fails: a retry is due a second later
    endpoint = await _subscribed_transfer(http, engine, make_user, receiver)
    [first] = await _arrivals(receiver, 1)
    # The 503 arriving is not yet the attempt recorded: killing the worker in between would leave an
    # attempt nobody counted, which is the other test's case.
    await _delivery_once(http, endpoint, lambda d: (d["attempts"], d["last_status_code"]) == (1, 503))

    worker.kill()  # with it, the run it had scheduled for the retry
    stack.redis.flushdb()
    stack.start_worker(name="second")
    await asyncio.sleep(1.5)
    assert len(receiver.events()) == 1, "nothing knows of the retry but PostgreSQL"
    stack.send(TaskName.REQUEST_DUE_DELIVERIES)

    assert await _arrivals(receiver, 2) == [first, first]
    delivery = await _delivered(http, endpoint)
    assert (delivery["attempts"], delivery["last_status_code"]) == (2, 200)
    await assert_ledger_ok(engine)
