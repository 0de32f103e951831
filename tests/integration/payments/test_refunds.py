"""Refunds and disputes Paystack reports after a deposit was credited, through the real API and worker.

`refund.processed` takes the refunded amount back out of the wallet exactly once per refund reference (its
`amount` arrives as a string); when the wallet no longer holds it nothing moves and the deposit is flagged.
`charge.dispute.create` flags the deposit and moves nothing. Every test ends with the ledger check.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import models as m
from tests.support.faults import assert_ledger_ok
from tests.support.payments import balance_of, start_deposit, wait_for_deposit, wait_for_event
from tests.support.paystack_standin import PaystackStandIn


async def _credited_deposit(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, user: Any, amount: int
) -> str:
    deposit = await start_deposit(api, user, amount)
    paystack.set_status(deposit.reference, "success")
    assert (
        await paystack.deliver_webhook(live_api, paystack.build_charge_success(deposit.reference))
    ).status_code == 200
    await wait_for_deposit(engine, deposit.reference, lambda r: r.status == "success")
    return deposit.reference


async def _review_items(engine: AsyncEngine, reference: str) -> list[tuple[str, str]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(m.ReviewItem.kind, m.ReviewItem.source).where(m.ReviewItem.reference == reference)
        )
        return sorted((row.kind, row.source) for row in rows)


async def _refunds(engine: AsyncEngine, reference: str) -> list[tuple[str, int, str]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(m.DepositRefund.refund_reference, m.DepositRefund.amount, m.DepositRefund.outcome)
            .join(m.Deposit, m.Deposit.id == m.DepositRefund.deposit_id)
            .where(m.Deposit.reference == reference)
        )
        return sorted((row.refund_reference, row.amount, row.outcome) for row in rows)


async def test_a_refund_delivered_twenty_times_at_once_takes_the_money_back_once_and_marks_the_deposit_refunded(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    reference = await _credited_deposit(api, live_api, paystack, engine, user, 30_000)
    refund_reference = "rfnd-full-" + uuid.uuid4().hex[:8]
    body = paystack.build_refund_processed(reference, refund_reference, 30_000)
    # The same refund in other bytes (Paystack re-sending it): another stored event, still one refund.
    resent = body.replace(b'"domain":"test"', b'"domain":"test","resent":true')
    assert resent != body

    answers = await asyncio.gather(
        *(paystack.deliver_webhook(live_api, body) for _ in range(20)),
        *(paystack.deliver_webhook(live_api, resent) for _ in range(5)),
    )

    assert {answer.status_code for answer in answers} == {200}
    await wait_for_event(engine, body, "processed")
    await wait_for_event(engine, resent, "processed")
    assert await _refunds(engine, reference) == [(refund_reference, 30_000, "debited")]
    await wait_for_deposit(engine, reference, lambda r: r.status == "refunded")
    assert await balance_of(api, user) == 0
    status = await api.get(f"/wallet/deposit/{reference}/status", headers=user.headers)
    assert status.json() == {"reference": reference, "status": "refunded", "amount": 30_000}
    [item] = (await api.get("/wallet/transactions", headers=user.headers)).json()
    assert (item["type"], item["status"]) == ("deposit", "refunded")
    await assert_ledger_ok(engine)


async def test_partial_refunds_each_apply_once_and_the_deposit_stays_a_success_until_refunded_in_full(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    reference = await _credited_deposit(api, live_api, paystack, engine, user, 10_000)
    first = paystack.build_refund_processed(reference, "rfnd-a-" + uuid.uuid4().hex[:8], 4_000)
    second = paystack.build_refund_processed(reference, "rfnd-b-" + uuid.uuid4().hex[:8], 6_000)

    for _ in range(2):  # a redelivery of the first refund is the same refund
        assert (await paystack.deliver_webhook(live_api, first)).status_code == 200
        await wait_for_event(engine, first, "processed")
    assert await balance_of(api, user) == 6_000
    assert (await wait_for_deposit(engine, reference, lambda r: True)).status == "success"

    assert (await paystack.deliver_webhook(live_api, second)).status_code == 200
    await wait_for_deposit(engine, reference, lambda r: r.status == "refunded")
    assert await balance_of(api, user) == 0
    assert [outcome for _, _, outcome in await _refunds(engine, reference)] == ["debited", "debited"]
    await assert_ledger_ok(engine)


async def test_a_refund_the_wallet_no_longer_holds_moves_nothing_and_is_flagged_for_review_once(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user, friend = await make_user(), await make_user()
    reference = await _credited_deposit(api, live_api, paystack, engine, user, 8_000)
    sent = await api.post(
        "/wallet/transfer", json={"wallet_number": friend.wallet_number, "amount": 7_000}, headers=user.headers
    )
    assert sent.status_code in {200, 202}, sent.text
    refund_reference = "rfnd-short-" + uuid.uuid4().hex[:8]
    body = paystack.build_refund_processed(reference, refund_reference, 8_000)

    for _ in range(3):
        assert (await paystack.deliver_webhook(live_api, body)).status_code == 200
        await wait_for_event(engine, body, "review")

    assert await balance_of(api, user) == 1_000, "nothing is taken when the whole refund is not there"
    assert (await wait_for_deposit(engine, reference, lambda r: True)).status == "success"
    assert await _review_items(engine, reference) == [("refund_uncovered", refund_reference)]
    assert await _refunds(engine, reference) == [(refund_reference, 8_000, "uncovered")]
    await assert_ledger_ok(engine)


async def test_a_refund_of_more_than_was_credited_or_of_an_unknown_deposit_moves_nothing(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    reference = await _credited_deposit(api, live_api, paystack, engine, user, 5_000)
    too_much = paystack.build_refund_processed(reference, "rfnd-big-" + uuid.uuid4().hex[:8], 5_001)
    unknown = paystack.build_refund_processed("no-such-deposit-" + uuid.uuid4().hex[:8], "rfnd-x", 100)

    assert (await paystack.deliver_webhook(live_api, too_much)).status_code == 200
    assert (await paystack.deliver_webhook(live_api, unknown)).status_code == 200
    await wait_for_event(engine, too_much, "review")
    await wait_for_event(engine, unknown, "ignored")

    assert await balance_of(api, user) == 5_000
    assert [kind for kind, _ in await _review_items(engine, reference)] == ["refund_uncovered"]
    await assert_ledger_ok(engine)


async def test_a_dispute_flags_the_deposit_for_review_and_moves_nothing(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    reference = await _credited_deposit(api, live_api, paystack, engine, user, 12_000)
    body = paystack.build_dispute_created(reference, 358_950)

    for _ in range(2):
        assert (await paystack.deliver_webhook(live_api, body)).status_code == 200
        await wait_for_event(engine, body, "review")

    assert await balance_of(api, user) == 12_000
    assert await _review_items(engine, reference) == [("dispute", "358950")]
    assert (await wait_for_deposit(engine, reference, lambda r: True)).status == "success"
    await assert_ledger_ok(engine)
