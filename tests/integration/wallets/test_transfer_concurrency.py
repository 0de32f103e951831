"""Transfers under concurrency, through the real API (uvicorn) and a real worker.

The sender's balance never goes below zero however many requests race for it, opposing transfers never
surface a deadlock, and a recipient paid by many senders is credited in batches.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db import models as m
from app.domain.wallets.checks import check_ledger
from tests.support.factories import fund
from tests.support.processes import ServiceProcess
from tests.support.waiting import balance_of, wait_until_settled

pytestmark = pytest.mark.e2e


def _outcome(response: httpx.Response) -> str:
    if response.status_code in {200, 202}:
        return "accepted"
    if response.status_code == 400:
        return response.json()["error_code"]
    return f"{response.status_code}: {response.text}"


async def test_two_hundred_concurrent_transfers_never_overdraw_the_sender(
    api: httpx.AsyncClient, worker: ServiceProcess, engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    sender, recipient = await make_user(), await make_user()
    await fund(engine, sender.wallet_id, 5_000)
    body = {"wallet_number": recipient.wallet_number, "amount": 100}
    lowest_seen: list[int] = []

    async def watch_balance(stop: asyncio.Event) -> None:
        while not stop.is_set():
            lowest_seen.append(await balance_of(db, sender.wallet_id))
            await asyncio.sleep(0.01)

    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_balance(stop))
    responses = await asyncio.gather(
        *(api.post("/wallet/transfer", json=body, headers=sender.headers) for _ in range(200))
    )
    stop.set()
    await watcher

    outcomes = Counter(_outcome(r) for r in responses)
    assert outcomes == {"accepted": 50, "INSUFFICIENT_BALANCE": 150}, outcomes
    references = [r.json()["reference"] for r in responses if r.status_code in {200, 202}]
    assert len(set(references)) == 50
    assert await balance_of(db, sender.wallet_id) == 0
    assert min(lowest_seen) >= 0
    await wait_until_settled(db, references)
    assert await balance_of(db, recipient.wallet_id) == 5_000
    assert (await check_ledger(db)).violations == []


async def test_opposing_concurrent_transfers_conserve_money_and_never_surface_a_deadlock(
    api: httpx.AsyncClient, worker: ServiceProcess, engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    alice, bob = await make_user(), await make_user()
    await fund(engine, alice.wallet_id, 3_000)
    await fund(engine, bob.wallet_id, 3_000)
    rng = random.Random(4)
    requests = [(alice, bob, rng.randint(1, 400)) for _ in range(40)] + [
        (bob, alice, rng.randint(1, 400)) for _ in range(40)
    ]
    rng.shuffle(requests)
    responses = await asyncio.gather(
        *(
            api.post(
                "/wallet/transfer",
                json={"wallet_number": recipient.wallet_number, "amount": amount},
                headers=sender.headers,
            )
            for sender, recipient, amount in requests
        )
    )
    outcomes = Counter(_outcome(r) for r in responses)
    assert set(outcomes) <= {"accepted", "INSUFFICIENT_BALANCE"}, outcomes
    accepted = [r.json()["reference"] for r in responses if r.status_code in {200, 202}]
    await wait_until_settled(db, accepted)
    sent = {alice.user_id: 0, bob.user_id: 0}
    for (sender, _, amount), response in zip(requests, responses, strict=True):
        if response.status_code in {200, 202}:
            sent[sender.user_id] += amount
    alice_balance, bob_balance = await balance_of(db, alice.wallet_id), await balance_of(db, bob.wallet_id)
    assert alice_balance + bob_balance == 6_000
    assert alice_balance == 3_000 - sent[alice.user_id] + sent[bob.user_id]
    assert bob_balance == 3_000 - sent[bob.user_id] + sent[alice.user_id]
    assert (await check_ledger(db)).violations == []


async def test_many_senders_paying_one_recipient_all_settle_in_batches(
    api: httpx.AsyncClient, worker: ServiceProcess, engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    merchant = await make_user()
    senders = [await make_user() for _ in range(30)]
    for sender in senders:
        await fund(engine, sender.wallet_id, 300)
    body = {"wallet_number": merchant.wallet_number, "amount": 100}
    responses = await asyncio.gather(
        *(api.post("/wallet/transfer", json=body, headers=sender.headers) for sender in senders for _ in range(3))
    )
    assert all(r.status_code in {200, 202} for r in responses), Counter(_outcome(r) for r in responses)
    references = [r.json()["reference"] for r in responses]
    await wait_until_settled(db, references)
    assert await balance_of(db, merchant.wallet_id) == 9_000
    journals = await db.scalar(
        select(func.count(func.distinct(m.Transfer.settlement_journal_id))).where(m.Transfer.reference.in_(references))
    )
    assert journals is not None
    assert journals < len(references), "a hot recipient must be credited per batch, not per transfer"
    for sender in senders:
        assert await balance_of(db, sender.wallet_id) == 0
    assert (await check_ledger(db)).violations == []
