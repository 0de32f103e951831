"""Forged and replayed Paystack webhooks.

A signature made any other way than HMAC-SHA512 of the exact raw body with the webhook secret is a 401
`INVALID_SIGNATURE` and stores nothing; a valid event replayed after it was applied, byte for byte or
re-serialised, is acknowledged and credits nothing more. tests/integration/payments/test_webhooks.py covers
missing, empty, foreign-key and tampered signatures and concurrent byte-identical redeliveries.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from litestar.testing import AsyncTestClient
from sqlalchemy import func, insert, select

from app.db import models as m
from app.lib.db import session_maker
from tests.support.payments import deposit_row, events_with_body, eventually
from tests.support.paystack_standin import PaystackStandIn

if TYPE_CHECKING:
    from litestar import Litestar
    from sqlalchemy.ext.asyncio import AsyncEngine

    from app.config import Settings
    from tests.support.hostile import Footprint
    from tests.support.processes import ServiceProcess
    from tests.support.users import TestUser

AMOUNT = 12_345
WEBHOOK = "/wallet/paystack/webhook"


async def _pending_deposit(engine: AsyncEngine, user: TestUser) -> str:
    reference = f"dep-{uuid.uuid4().hex}"
    async with session_maker(engine)() as session:
        await session.execute(
            insert(m.Deposit).values(reference=reference, wallet_id=user.wallet_id, amount=AMOUNT, currency="NGN")
        )
        await session.commit()
    return reference


async def _events_about(engine: AsyncEngine, reference: str) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(
            select(func.count()).select_from(m.WebhookEvent).where(m.WebhookEvent.reference == reference)
        )
    return int(count or 0)


async def _deposit_credits(engine: AsyncEngine, reference: str) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(
            select(func.count())
            .select_from(m.LedgerJournal)
            .where(m.LedgerJournal.kind == m.JournalKind.DEPOSIT.value, m.LedgerJournal.reference == reference)
        )
    return int(count or 0)


def _paystack(settings: Settings) -> PaystackStandIn:
    """Only to build Paystack's own event body and sign it with the secret the app checks; nothing is served."""
    return PaystackStandIn(secret_key=settings.paystack.webhook_secret)


async def test_signatures_made_any_other_way_are_401_and_store_nothing(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    engine: AsyncEngine,
    make_user: Callable[..., Awaitable[TestUser]],
    footprint: Callable[[TestUser], Awaitable[Footprint]],
) -> None:
    user = await make_user()
    reference = await _pending_deposit(engine, user)
    paystack = _paystack(settings)
    body = paystack.build_charge_success(reference, amount=AMOUNT, currency="NGN")
    secret = settings.paystack.webhook_secret.encode()
    valid = paystack.sign(body)
    before = await footprint(user)

    forgeries = {
        "hmac-sha256 with the secret": hmac.new(secret, body, hashlib.sha256).hexdigest(),
        "plain sha-512 of the body": hashlib.sha512(body).hexdigest(),
        "sha-512 of secret and body": hashlib.sha512(secret + body).hexdigest(),
        "hmac-sha512 with the public key": hmac.new(
            (settings.paystack.public_key or "pk_test_public").encode(), body, hashlib.sha512
        ).hexdigest(),
        "hmac-sha512 of the parsed and re-serialised body": hmac.new(
            secret, json.dumps(json.loads(body)).encode(), hashlib.sha512
        ).hexdigest(),
        "the valid signature truncated": valid[:64],
        "the valid signature with a prefix": f"sha512={valid}",
        "the valid signature in base64": base64.b64encode(hmac.new(secret, body, hashlib.sha512).digest()).decode(),
    }
    for name, signature in forgeries.items():
        assert signature != valid, name
        response = await client.post(
            WEBHOOK, content=body, headers={"content-type": "application/json", "x-paystack-signature": signature}
        )
        assert response.status_code == 401, (name, response.text)
        assert response.json()["error_code"] == "INVALID_SIGNATURE", name

    assert await events_with_body(engine, body) == []
    assert await _events_about(engine, reference) == 0
    assert await footprint(user) == before


async def test_a_valid_event_replayed_after_it_was_applied_changes_nothing(
    client: AsyncTestClient[Litestar],
    worker: ServiceProcess,
    settings: Settings,
    engine: AsyncEngine,
    make_user: Callable[..., Awaitable[TestUser]],
    footprint: Callable[[TestUser], Awaitable[Footprint]],
) -> None:
    user = await make_user()
    reference = await _pending_deposit(engine, user)
    paystack = _paystack(settings)
    body = paystack.build_charge_success(reference, amount=AMOUNT, currency="NGN")
    # The same event as Paystack might send it again with other bytes (key order, spacing): validly signed.
    reserialised = json.dumps(json.loads(body), indent=2, sort_keys=True).encode()
    assert reserialised != body

    async def deliver(raw: bytes) -> None:
        response = await client.post(
            WEBHOOK,
            content=raw,
            headers={"content-type": "application/json", "x-paystack-signature": paystack.sign(raw)},
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"status": True}

    await deliver(body)
    credited = await eventually(
        lambda: deposit_row(engine, reference), lambda row: row is not None and row.status == "success"
    )
    assert credited is not None
    assert (credited.status, credited.credits) == ("success", 1)
    after_first = await footprint(user)
    assert after_first.balance == AMOUNT

    for raw in (body, reserialised, body, reserialised):
        await deliver(raw)
    # Let the worker pick up whatever the replays enqueued before looking.
    await eventually(lambda: _unfinished_events(engine, reference), lambda unfinished: unfinished == 0, timeout=30)
    await asyncio.sleep(0.3)

    assert await footprint(user) == after_first
    assert await _deposit_credits(engine, reference) == 1
    # One stored event per distinct body: byte-identical replays are the same row.
    assert await _events_about(engine, reference) == 2
    assert len(await events_with_body(engine, body)) == 1


async def _unfinished_events(engine: AsyncEngine, reference: str) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(
            select(func.count())
            .select_from(m.WebhookEvent)
            .where(m.WebhookEvent.reference == reference, m.WebhookEvent.status.in_(["received", "failed"]))
        )
    return int(count or 0)
