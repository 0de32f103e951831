"""`POST /wallet/transfer` and `GET /wallet/balance`: the contract's answers, with a real worker settling."""

from __future__ import annotations

import time

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.db import models as m
from app.lib.db import session_maker
from app.lib.tasks import TaskName, enqueue
from app.main import create_app
from tests.support.factories import fund
from tests.support.processes import ServiceProcess
from tests.support.users import add_api_key
from tests.support.waiting import balance_of, wait_until_settled


async def _transfers_from(db: AsyncSession, wallet_id) -> int:
    await db.rollback()
    return int(
        await db.scalar(select(func.count()).select_from(m.Transfer).where(m.Transfer.sender_wallet_id == wallet_id))
        or 0
    )


async def test_a_settled_transfer_answers_200_completed_and_moves_the_money(
    client: AsyncTestClient, worker: ServiceProcess, engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    sender, recipient = await make_user(), await make_user()
    await fund(engine, sender.wallet_id, 5_000)
    response = await client.post(
        "/wallet/transfer", json={"wallet_number": recipient.wallet_number, "amount": 3_000}, headers=sender.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success"
    assert body["message"] == "Transfer completed"
    assert body["reference"].startswith("trf_")
    assert await balance_of(db, sender.wallet_id) == 2_000
    assert await balance_of(db, recipient.wallet_id) == 3_000
    balance = await client.get("/wallet/balance", headers=recipient.headers)
    assert balance.status_code == 200
    assert balance.json() == {"balance": 3_000, "currency": "NGN", "wallet_number": recipient.wallet_number}


async def test_a_transfer_not_settled_within_the_wait_answers_202_and_settles_later(
    settings: Settings, worker: ServiceProcess, engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    sender, recipient = await make_user(), await make_user()
    await fund(engine, sender.wallet_id, 1_000)
    app = create_app(settings.replaced(transfer_wait_ms=300))
    # Hold the recipient's row lock: settlement must wait for it, acceptance must not.
    async with session_maker(engine)() as blocker, AsyncTestClient(app=app) as client:
        await blocker.execute(
            text("SELECT 1 FROM wallets WHERE id = :id FOR NO KEY UPDATE"), {"id": recipient.wallet_id}
        )
        response = await client.post(
            "/wallet/transfer", json={"wallet_number": recipient.wallet_number, "amount": 400}, headers=sender.headers
        )
        assert response.status_code == 202, response.text
        assert response.json() == {
            "status": "pending",
            "message": "Transfer accepted",
            "reference": response.json()["reference"],
        }
        assert await balance_of(db, sender.wallet_id) == 600
        assert await balance_of(db, recipient.wallet_id) == 0
        await blocker.rollback()
    await wait_until_settled(db, [response.json()["reference"]])
    assert await balance_of(db, recipient.wallet_id) == 400


@pytest.mark.parametrize(
    "body",
    [
        {"wallet_number": "1234567890123", "amount": 0},
        {"wallet_number": "1234567890123", "amount": -5},
        {"wallet_number": "1234567890123", "amount": 10**12 + 1},
        {"wallet_number": "1234567890123", "amount": 10.0},
        {"wallet_number": "1234567890123", "amount": 10.5},
        {"wallet_number": "1234567890123", "amount": "100"},
        {"wallet_number": "1234567890123", "amount": True},
        {"wallet_number": "1234567890123", "amount": None},
        {"wallet_number": "1234567890123"},
        {"amount": 100},
        {"wallet_number": 1234567890123, "amount": 100},
        {"wallet_number": "123456789012", "amount": 100},
        {"wallet_number": "12345678901234", "amount": 100},
        {"wallet_number": "12345678901ab", "amount": 100},
        {"wallet_number": "", "amount": 100},
        [],
        "transfer",
    ],
)
async def test_a_malformed_transfer_is_a_400_validation_error_and_moves_nothing(
    client: AsyncTestClient, engine: AsyncEngine, db: AsyncSession, make_user, body: object
) -> None:
    sender = await make_user()
    await fund(engine, sender.wallet_id, 1_000)
    response = await client.post("/wallet/transfer", json=body, headers=sender.headers)
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "VALIDATION_ERROR"
    assert await balance_of(db, sender.wallet_id) == 1_000


async def test_invalid_json_is_a_400_validation_error(client: AsyncTestClient, make_user) -> None:
    sender = await make_user()
    response = await client.post(
        "/wallet/transfer", content=b"{not json", headers={**sender.headers, "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"


async def test_transfer_refusals_follow_the_contract_and_move_nothing(
    client: AsyncTestClient, engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    sender, recipient = await make_user(), await make_user()
    await fund(engine, sender.wallet_id, 500)

    unknown = await client.post(
        "/wallet/transfer", json={"wallet_number": "1000000000001", "amount": 100}, headers=sender.headers
    )
    assert unknown.status_code == 404
    assert unknown.json()["error_code"] == "WALLET_NOT_FOUND"

    own = await client.post(
        "/wallet/transfer", json={"wallet_number": sender.wallet_number, "amount": 100}, headers=sender.headers
    )
    assert own.status_code == 400
    assert own.json()["error_code"] == "SELF_TRANSFER"

    short = await client.post(
        "/wallet/transfer", json={"wallet_number": recipient.wallet_number, "amount": 501}, headers=sender.headers
    )
    assert short.status_code == 400
    assert short.json()["error_code"] == "INSUFFICIENT_BALANCE"

    anonymous = await client.post("/wallet/transfer", json={"wallet_number": recipient.wallet_number, "amount": 1})
    assert anonymous.status_code == 401
    assert anonymous.json()["error_code"] == "NOT_AUTHENTICATED"

    assert await balance_of(db, sender.wallet_id) == 500
    assert await _transfers_from(db, sender.wallet_id) == 0


async def test_an_api_key_needs_the_transfer_permission_to_send_and_read_to_look(
    client: AsyncTestClient, worker: ServiceProcess, engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    sender, recipient = await make_user(), await make_user()
    await fund(engine, sender.wallet_id, 1_000)
    reader = await add_api_key(db, sender.user_id, ["read"])
    payer = await add_api_key(db, sender.user_id, ["transfer"])
    body = {"wallet_number": recipient.wallet_number, "amount": 250}

    refused = await client.post("/wallet/transfer", json=body, headers=reader)
    assert refused.status_code == 403
    assert refused.json()["error_code"] == "PERMISSION_DENIED"
    assert await _transfers_from(db, sender.wallet_id) == 0

    sent = await client.post("/wallet/transfer", json=body, headers=payer)
    assert sent.status_code in {200, 202}, sent.text
    assert await balance_of(db, sender.wallet_id) == 750

    assert (await client.get("/wallet/balance", headers=payer)).status_code == 403
    seen = await client.get("/wallet/balance", headers=reader)
    assert seen.status_code == 200
    assert seen.json()["balance"] == 750
    assert (await client.get("/wallet/transactions", headers=payer)).status_code == 403
    assert (await client.get("/wallet/transactions", headers=reader)).status_code == 200


async def test_a_transfer_is_accepted_at_once_with_202_while_redis_is_unreachable_and_settles_once_redis_is_back(
    settings: Settings, worker: ServiceProcess, engine: AsyncEngine, db: AsyncSession, make_user, redis: Redis
) -> None:
    """Redis unreachable: the committed transfer is still accepted (202, no hang); it settles once a run is asked
    for, which beat's sweep does (here the test asks, as beat would)."""
    sender, recipient = await make_user(), await make_user()
    await fund(engine, sender.wallet_id, 900)
    headers = await add_api_key(db, sender.user_id, ["transfer"])
    app = create_app(settings.replaced(redis_url="redis://127.0.0.1:1/0", transfer_wait_ms=2_000))
    async with AsyncTestClient(app=app) as client:
        started = time.monotonic()
        response = await client.post(
            "/wallet/transfer", json={"wallet_number": recipient.wallet_number, "amount": 900}, headers=headers
        )
        answered_in = time.monotonic() - started
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"
    assert answered_in < 5, "no hang waiting for a Redis that is not there"
    assert await balance_of(db, sender.wallet_id) == 0
    assert await enqueue(redis, TaskName.SETTLE_TRANSFERS)
    await wait_until_settled(db, [response.json()["reference"]])
    assert await balance_of(db, recipient.wallet_id) == 900
