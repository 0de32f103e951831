"""`Idempotency-Key` on `POST /wallet/transfer`: a retry replays the first answer and never sends twice."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from litestar.testing import AsyncTestClient
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db import models as m
from app.lib.idempotency import request_fingerprint
from tests.support.factories import fund
from tests.support.processes import ServiceProcess
from tests.support.waiting import balance_of


async def _transfer_count(db: AsyncSession, wallet_id: uuid.UUID) -> int:
    await db.rollback()
    return int(
        await db.scalar(select(func.count()).select_from(m.Transfer).where(m.Transfer.sender_wallet_id == wallet_id))
        or 0
    )


def _key() -> dict[str, str]:
    return {"Idempotency-Key": f"key-{uuid.uuid4()}"}


async def test_a_retry_with_the_same_key_and_body_replays_the_first_answer_and_sends_nothing(
    client: AsyncTestClient, worker: ServiceProcess, engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    sender, recipient = await make_user(), await make_user()
    await fund(engine, sender.wallet_id, 1_000)
    headers = {**sender.headers, **_key()}
    body = {"wallet_number": recipient.wallet_number, "amount": 300}
    first = await client.post("/wallet/transfer", json=body, headers=headers)
    assert first.status_code in {200, 202}, first.text
    for _ in range(3):
        again = await client.post("/wallet/transfer", json=body, headers=headers)
        assert again.status_code == first.status_code
        assert again.json() == first.json()
        assert again.headers.get("idempotent-replayed") == "true"
    assert await _transfer_count(db, sender.wallet_id) == 1
    assert await balance_of(db, sender.wallet_id) == 700


async def test_the_same_key_with_another_body_is_422_and_sends_nothing(
    client: AsyncTestClient, engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    sender, recipient = await make_user(), await make_user()
    await fund(engine, sender.wallet_id, 1_000)
    headers = {**sender.headers, **_key()}
    first = await client.post(
        "/wallet/transfer", json={"wallet_number": recipient.wallet_number, "amount": 100}, headers=headers
    )
    assert first.status_code in {200, 202}
    other = await client.post(
        "/wallet/transfer", json={"wallet_number": recipient.wallet_number, "amount": 101}, headers=headers
    )
    assert other.status_code == 422
    assert other.json()["error_code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await _transfer_count(db, sender.wallet_id) == 1
    assert await balance_of(db, sender.wallet_id) == 900


async def test_a_concurrent_burst_on_one_key_makes_one_transfer(
    client: AsyncTestClient, worker: ServiceProcess, engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    sender, recipient = await make_user(), await make_user()
    await fund(engine, sender.wallet_id, 1_000)
    headers = {**sender.headers, **_key()}
    body = {"wallet_number": recipient.wallet_number, "amount": 250}
    responses = await asyncio.gather(*(client.post("/wallet/transfer", json=body, headers=headers) for _ in range(12)))
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 202, 409}, [r.text for r in responses]
    assert statuses[200] + statuses[202] >= 1
    conflicts = [r.json()["error_code"] for r in responses if r.status_code == 409]
    assert set(conflicts) <= {"IDEMPOTENCY_KEY_IN_USE"}
    assert len({r.json()["reference"] for r in responses if r.status_code != 409}) == 1
    assert await _transfer_count(db, sender.wallet_id) == 1
    assert await balance_of(db, sender.wallet_id) == 750


async def test_an_error_answer_is_stored_and_replayed(
    client: AsyncTestClient, engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    sender, recipient = await make_user(), await make_user()
    headers = {**sender.headers, **_key()}
    body = {"wallet_number": recipient.wallet_number, "amount": 500}
    first = await client.post("/wallet/transfer", json=body, headers=headers)
    assert first.status_code == 400
    assert first.json()["error_code"] == "INSUFFICIENT_BALANCE"
    await fund(engine, sender.wallet_id, 1_000)
    again = await client.post("/wallet/transfer", json=body, headers=headers)
    assert again.status_code == 400
    assert again.json() == first.json()
    assert await _transfer_count(db, sender.wallet_id) == 0
    fresh = await client.post("/wallet/transfer", json=body, headers={**sender.headers, **_key()})
    assert fresh.status_code in {200, 202}


async def test_keys_are_scoped_to_the_user(
    client: AsyncTestClient, engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    await fund(engine, alice.wallet_id, 100)
    await fund(engine, bob.wallet_id, 100)
    key = _key()
    body = {"wallet_number": carol.wallet_number, "amount": 100}
    assert (await client.post("/wallet/transfer", json=body, headers={**alice.headers, **key})).status_code in {
        200,
        202,
    }
    assert (await client.post("/wallet/transfer", json=body, headers={**bob.headers, **key})).status_code in {200, 202}
    assert await _transfer_count(db, alice.wallet_id) == 1
    assert await _transfer_count(db, bob.wallet_id) == 1


async def test_a_key_longer_than_255_characters_is_a_400_and_255_is_fine(
    client: AsyncTestClient, engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    sender, recipient = await make_user(), await make_user()
    await fund(engine, sender.wallet_id, 100)
    body = {"wallet_number": recipient.wallet_number, "amount": 10}
    too_long = await client.post(
        "/wallet/transfer", json=body, headers={**sender.headers, "Idempotency-Key": "k" * 256}
    )
    assert too_long.status_code == 400
    assert too_long.json()["error_code"] == "VALIDATION_ERROR"
    assert await _transfer_count(db, sender.wallet_id) == 0
    longest = "k" * 250 + uuid.uuid4().hex[:5]
    ok = await client.post("/wallet/transfer", json=body, headers={**sender.headers, "Idempotency-Key": longest})
    assert ok.status_code in {200, 202}


async def test_a_key_whose_first_request_is_still_running_is_409(
    client: AsyncTestClient, db: AsyncSession, make_user
) -> None:
    sender, recipient = await make_user(), await make_user()
    key = f"running-{uuid.uuid4()}"
    raw = f'{{"wallet_number":"{recipient.wallet_number}","amount":10}}'.encode()
    await db.execute(
        insert(m.IdempotencyRecord).values(
            user_id=sender.user_id, key=key, request_fingerprint=request_fingerprint("POST", "/wallet/transfer", raw)
        )
    )
    await db.commit()
    response = await client.post(
        "/wallet/transfer",
        content=raw,
        headers={**sender.headers, "Idempotency-Key": key, "content-type": "application/json"},
    )
    assert response.status_code == 409
    assert response.json()["error_code"] == "IDEMPOTENCY_KEY_IN_USE"


async def test_a_claim_abandoned_by_a_dead_request_is_taken_over_after_its_lease(
    client: AsyncTestClient, engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    sender, recipient = await make_user(), await make_user()
    await fund(engine, sender.wallet_id, 100)
    key = f"abandoned-{uuid.uuid4()}"
    raw = f'{{"wallet_number":"{recipient.wallet_number}","amount":10}}'.encode()
    await db.execute(
        insert(m.IdempotencyRecord).values(
            user_id=sender.user_id, key=key, request_fingerprint=request_fingerprint("POST", "/wallet/transfer", raw)
        )
    )
    await db.execute(
        update(m.IdempotencyRecord)
        .where(m.IdempotencyRecord.key == key)
        .values(updated_at=datetime.now(UTC) - timedelta(hours=1))
    )
    await db.commit()
    response = await client.post(
        "/wallet/transfer",
        content=raw,
        headers={**sender.headers, "Idempotency-Key": key, "content-type": "application/json"},
    )
    assert response.status_code in {200, 202}, response.text
    assert await _transfer_count(db, sender.wallet_id) == 1
