"""Recovery without anyone's help: lost settlement messages and a worker killed mid-batch.

The scenario runs against a Redis server of its own (so flushing it touches no other test): transfers are
accepted (committed, then their settlement enqueued) while no worker listens, Redis is flushed (the
messages are gone), a worker is SIGKILLed in the middle of a settlement batch, and then the beat task that
re-enqueues stale transfers lets a fresh worker settle every transfer exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db import models as m
from app.domain.wallets.checks import check_ledger
from app.lib.db import session_maker
from app.lib.infra import start_embedded_redis
from app.lib.tasks import TaskName
from tasks.runtime import TEST_COMMIT_PAUSE_ENV
from tests.support.factories import accept_transfer, fund
from tests.support.processes import ServiceProcess, service_env, start_worker
from tests.support.waiting import balance_of, wait_until_settled

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    url, stop = start_embedded_redis(tmp_path)
    yield url
    stop()


def _broker(url: str) -> Celery:
    """A Celery client configured like the service, publishing to this Redis."""
    client = Celery("recovery-test")
    client.config_from_object("celeryconfig")
    client.conf.broker_url = url
    return client


async def _statuses(db: AsyncSession, references: list[str]) -> set[str]:
    await db.rollback()
    return set((await db.scalars(select(m.Transfer.status).where(m.Transfer.reference.in_(references)))).all())


async def test_lost_messages_and_a_worker_killed_mid_batch_still_settle_every_transfer_exactly_once(
    own_redis: str, engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    env = service_env(REDIS_URL=own_redis)
    broker = _broker(own_redis)
    victim_queue = f"victim-{uuid.uuid4().hex[:8]}"
    processes: list[ServiceProcess] = []

    def launch(worker_env: dict[str, str], queues: str, name: str) -> ServiceProcess:
        process = start_worker(worker_env, queues=queues, concurrency=1, pool="solo", name=name)
        processes.append(process)  # stopped in `finally`, whatever happens to the test meanwhile
        return process

    # Started together to save time. The victim listens only to its own queue; the rescuer listens to
    # `maintenance` (beat's sweep) and is told to take `settlement` only once the victim is dead.
    starting = asyncio.gather(
        asyncio.to_thread(launch, {**env, TEST_COMMIT_PAUSE_ENV: "60"}, victim_queue, "victim"),
        asyncio.to_thread(launch, {**env, "STALE_TRANSFER_SECONDS": "0"}, "maintenance", "rescuer"),
    )
    try:
        merchant = await make_user()
        senders = [await make_user() for _ in range(8)]
        references = []
        for sender in senders:
            await fund(engine, sender.wallet_id, 500)
            for _ in range(2):
                # Acceptance exactly as the API does it: commit, then enqueue settlement.
                async with session_maker(engine)() as session:
                    accepted = await accept_transfer(
                        session,
                        actor="test:sender",
                        sender_user_id=sender.user_id,
                        recipient_wallet_number=merchant.wallet_number,
                        amount=250,
                    )
                broker.send_task(TaskName.SETTLE_TRANSFERS)
                references.append(accepted.reference)
        store = redis.Redis.from_url(own_redis)
        assert store.llen("settlement") == 16
        store.flushall()  # every settlement message is lost
        assert store.llen("settlement") == 0

        victim, rescuer = await starting
        # A settlement task reaches a worker that dies in the middle of its batch.
        broker.send_task(TaskName.SETTLE_TRANSFERS, queue=victim_queue)
        victim.wait_for_output("TEST HOOK", timeout=30)
        victim.kill()
        assert await _statuses(db, references) == {"pending"}
        assert await balance_of(db, merchant.wallet_id) == 0
        assert (await check_ledger(db)).violations == []

        # Beat's sweep finds them stale and re-enqueues settlement; a fresh worker settles them.
        replies = broker.control.add_consumer("settlement", reply=True, timeout=10)
        assert replies, "the rescuer did not answer"
        broker.send_task(TaskName.REQUEUE_STALE_TRANSFERS)
        await wait_until_settled(db, references, timeout=60)
        assert "re-enqueueing settlement" in rescuer.output()
    finally:
        with contextlib.suppress(Exception):
            await starting
        for process in reversed(processes):
            process.stop()
        broker.close()

    assert await balance_of(db, merchant.wallet_id) == 16 * 250
    await db.rollback()
    journals = await db.scalar(
        select(func.count(func.distinct(m.Transfer.settlement_journal_id))).where(m.Transfer.reference.in_(references))
    )
    credits = await db.scalar(
        select(func.count())
        .select_from(m.LedgerEntry)
        .join(m.Wallet, m.Wallet.ledger_account_id == m.LedgerEntry.account_id)
        .where(m.Wallet.id == merchant.wallet_id)
    )
    assert credits == journals, "one credit entry per settlement journal: nothing was credited twice"
    for sender in senders:
        assert await balance_of(db, sender.wallet_id) == 0
    assert (await check_ledger(db)).violations == []


async def test_the_stale_sweep_does_nothing_when_nothing_is_stale(
    worker: ServiceProcess, engine: AsyncEngine, db: AsyncSession, make_user, redis: Redis
) -> None:
    """Run through the shared worker: the sweep and the scheduled ledger check both run and log."""
    from app.lib.tasks import TaskName, enqueue

    marker = uuid.uuid4().hex
    assert await enqueue(redis, TaskName.REQUEUE_STALE_TRANSFERS)
    assert await enqueue(redis, TaskName.CHECK_LEDGER)
    deadline = asyncio.get_running_loop().time() + 30
    while "ledger OK" not in worker.output() or "requeue_stale_transfers" not in worker.output():
        assert asyncio.get_running_loop().time() < deadline, worker.output()[-3000:]
        await asyncio.sleep(0.1)
    assert "ledger invariant violated" not in worker.output(), marker
