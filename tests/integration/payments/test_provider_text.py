"""Whatever text Paystack echoes (what a customer typed, merchant metadata) can never stop a paid deposit from
being credited: NUL characters and lone surrogates, which PostgreSQL cannot store, are made storable before
anything is written. Real API and worker processes, the stand-in over HTTP."""

from __future__ import annotations

import asyncio
import json

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import models as m
from app.lib.storable import REPLACEMENT
from tests.support.payments import balance_of, start_deposit, wait_for_deposit, wait_for_event
from tests.support.paystack_standin import PaystackStandIn

NUL = "\u0000"
HOSTILE_METADATA = {
    "note": f"gift{NUL}card",
    "nested": {"deep": [f"{NUL}", {"again": f"a{NUL}b"}]},
    f"key{NUL}with{NUL}nul": 1,
}


async def _stored_provider_data(engine: AsyncEngine, reference: str) -> dict:
    async with engine.connect() as connection:
        data = await connection.scalar(select(m.Deposit.provider_data).where(m.Deposit.reference == reference))
    assert isinstance(data, dict)
    return data


async def test_a_signed_charge_success_carrying_nul_characters_is_credited_exactly_once_by_webhook(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    deposit = await start_deposit(api, user, 4_200)
    paystack.set_checkout_input(
        deposit.reference, first_name=f"Ada{NUL}", last_name=f"{NUL}Lovelace", metadata=HOSTILE_METADATA
    )
    paystack.set_status(deposit.reference, "success")
    body = paystack.build_charge_success(deposit.reference)
    assert b"\\u0000" in body  # the NULs travel as JSON escapes, exactly as Paystack would send them

    responses = await asyncio.gather(*(paystack.deliver_webhook(live_api, body) for _ in range(3)))

    assert [r.status_code for r in responses] == [200, 200, 200]
    row = await wait_for_deposit(engine, deposit.reference, lambda r: r.status == "success")
    assert row.credits == 1
    await wait_for_event(engine, body, "processed")
    assert await balance_of(api, user) == 4_200
    stored = await _stored_provider_data(engine, deposit.reference)
    assert stored["customer"]["first_name"] == f"Ada{REPLACEMENT}"
    assert stored["metadata"]["nested"]["deep"][1]["again"] == f"a{REPLACEMENT}b"
    assert f"key{REPLACEMENT}with{REPLACEMENT}nul" in stored["metadata"]


async def test_a_payment_carrying_nul_characters_is_credited_exactly_once_by_verification(
    api: httpx.AsyncClient, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    deposit = await start_deposit(api, user, 7_700)
    paystack.set_checkout_input(deposit.reference, first_name=f"{NUL}", metadata=HOSTILE_METADATA)
    paystack.set_status(deposit.reference, "success")

    # No webhook: polling the status enqueues verifications until one is applied.
    async def polled_until_credited() -> str:
        for _ in range(200):
            answer = await api.get(f"/wallet/deposit/{deposit.reference}/status", headers=user.headers)
            assert answer.status_code == 200, answer.text
            if answer.json()["status"] == "success":
                return "success"
            await asyncio.sleep(0.1)
        return answer.json()["status"]

    assert await polled_until_credited() == "success"
    row = await wait_for_deposit(engine, deposit.reference, lambda r: r.status == "success")
    assert row.credits == 1
    assert await balance_of(api, user) == 7_700
    stored = await _stored_provider_data(engine, deposit.reference)
    assert stored["customer"]["first_name"] == REPLACEMENT


async def test_a_charge_success_with_a_lone_surrogate_in_the_customer_name_is_credited_once(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    deposit = await start_deposit(api, user, 900)
    paystack.set_status(deposit.reference, "success")
    event = json.loads(paystack.build_charge_success(deposit.reference))
    event["data"]["customer"]["first_name"] = "PLACEHOLDER"
    # Valid JSON that no UTF-8 text (and so no PostgreSQL column) can hold.
    body = json.dumps(event).replace('"PLACEHOLDER"', '"\\ud800 and \\u0000"').encode()

    response = await paystack.deliver_webhook(live_api, body)

    assert response.status_code == 200
    row = await wait_for_deposit(engine, deposit.reference, lambda r: r.status == "success")
    assert row.credits == 1
    await wait_for_event(engine, body, "processed")
    stored = await _stored_provider_data(engine, deposit.reference)
    assert stored["customer"]["first_name"] == f"{REPLACEMENT} and {REPLACEMENT}"
