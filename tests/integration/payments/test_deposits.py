"""`POST /wallet/deposit` and `GET /wallet/deposit/{reference}/status`, against the Paystack stand-in over HTTP.

End-to-end tests use the real API process and a real worker; faults (5xx, timeouts) are injected into a
private stand-in behind an in-process app, so they cannot hit another test's traffic.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import httpx
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import models as m
from app.lib.tasks import TaskName, enqueue
from tests.support.payments import (
    DepositRow,
    backdate_deposit,
    balance_of,
    deposit_row,
    eventually,
    in_process,
    start_deposit,
    wait_for_deposit,
    wait_for_event,
)
from tests.support.paystack_standin import PaystackStandIn


def initialisations_for(paystack: PaystackStandIn, email: str) -> list[dict]:
    return [
        body
        for method, path, body in paystack.requests
        if (method, path) == ("POST", "/transaction/initialize") and isinstance(body, dict) and body["email"] == email
    ]


async def deposits_of(engine: AsyncEngine, wallet_id) -> list[tuple[str, str]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(m.Deposit.reference, m.Deposit.status).where(m.Deposit.wallet_id == wallet_id)
        )
        return [tuple(row) for row in rows]


# -- starting a deposit ----------------------------------------------------------------------------------


async def test_deposit_initialises_paystack_in_kobo_and_answers_201_with_the_checkout(
    api: httpx.AsyncClient, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()

    response = await api.post("/wallet/deposit", json={"amount": 5000}, headers=user.headers)

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"reference", "authorization_url", "access_code"}
    assert re.fullmatch(r"[A-Za-z0-9.=-]+", body["reference"])
    [sent] = initialisations_for(paystack, user.email)
    assert sent["amount"] == 5000
    assert type(sent["amount"]) is int
    assert sent["reference"] == body["reference"]
    assert sent["currency"] == "NGN"
    assert sent["metadata"]["wallet_number"] == user.wallet_number
    transaction = paystack.transaction(body["reference"])
    assert (body["access_code"], body["authorization_url"]) == (
        transaction.access_code,
        f"https://checkout.paystack.com/{transaction.access_code}",
    )
    row = await deposit_row(engine, body["reference"])
    assert row is not None
    assert (row.status, row.amount, row.currency, row.access_code, row.credits) == (
        "pending",
        5000,
        "NGN",
        body["access_code"],
        0,
    )


async def test_deposit_below_the_configured_minimum_is_a_validation_error_and_calls_nobody(
    paystack: PaystackStandIn, make_user, settings: Settings
) -> None:
    user = await make_user()

    async with in_process(settings, deposit_min_amount=100) as app:
        response = await app.post("/wallet/deposit", json={"amount": 99}, headers=user.headers)

    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"
    assert "100" in response.json()["detail"]
    assert initialisations_for(paystack, user.email) == []


async def test_the_smallest_amount_the_contract_allows_is_a_deposit_by_default(
    api: httpx.AsyncClient, paystack: PaystackStandIn, make_user
) -> None:
    user = await make_user()
    response = await api.post("/wallet/deposit", json={"amount": 1}, headers=user.headers)
    assert response.status_code == 201, response.text
    assert [i["amount"] for i in initialisations_for(paystack, user.email)] == [1]


async def test_deposit_amount_must_be_an_integer_within_the_contracts_bounds(api: httpx.AsyncClient, make_user) -> None:
    user = await make_user()
    for amount in (0, -5, 10**12 + 1, "5000", 5000.0, None):
        response = await api.post("/wallet/deposit", json={"amount": amount}, headers=user.headers)
        assert response.status_code == 400, (amount, response.text)
        assert response.json()["error_code"] == "VALIDATION_ERROR"


async def test_deposit_with_the_same_idempotency_key_replays_the_first_201_without_a_second_initialise(
    api: httpx.AsyncClient, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": "deposit-once"}

    first = await api.post("/wallet/deposit", json={"amount": 7000}, headers=headers)
    second = await api.post("/wallet/deposit", json={"amount": 7000}, headers=headers)
    other_body = await api.post("/wallet/deposit", json={"amount": 7001}, headers=headers)

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert other_body.status_code == 422
    assert other_body.json()["error_code"] == "IDEMPOTENCY_KEY_REUSED"
    assert len(initialisations_for(paystack, user.email)) == 1
    assert len(await deposits_of(engine, user.wallet_id)) == 1


async def test_paystack_failing_with_5xx_on_initialise_is_502_and_leaves_nothing_pending(
    private_settings: Settings, private_paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    private_paystack.fail_next(10, status_code=503)

    async with in_process(private_settings) as app:
        response = await app.post("/wallet/deposit", json={"amount": 5000}, headers=user.headers)

    assert response.status_code == 502
    assert response.json()["error_code"] == "PAYMENT_PROVIDER_ERROR"
    assert private_settings.paystack.secret_key not in response.text
    [(_, status)] = await deposits_of(engine, user.wallet_id)
    assert status == "failed"


async def test_paystack_timing_out_on_initialise_is_502_and_leaves_nothing_pending(
    private_settings: Settings, private_paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    private_paystack.delay_next(10, 3.0)

    async with in_process(private_settings) as app:
        response = await app.post("/wallet/deposit", json={"amount": 5000}, headers=user.headers)

    assert response.status_code == 502
    assert response.json()["error_code"] == "PAYMENT_PROVIDER_ERROR"
    [(_, status)] = await deposits_of(engine, user.wallet_id)
    assert status == "failed"


async def test_paystack_refusing_the_key_is_502_without_the_secret_in_the_answer(
    private_settings: Settings, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()

    async with in_process(private_settings, paystack_secret_key="sk_test_not_the_accounts_key") as app:
        response = await app.post("/wallet/deposit", json={"amount": 5000}, headers=user.headers)

    assert response.status_code == 502
    assert "sk_test" not in response.text
    [(_, status)] = await deposits_of(engine, user.wallet_id)
    assert status == "failed"


async def test_a_failed_deposit_with_an_idempotency_key_can_be_retried_with_it(
    private_settings: Settings, private_paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": "retry-after-502"}
    private_paystack.fail_next(3, status_code=500)

    async with in_process(private_settings) as app:
        failed = await app.post("/wallet/deposit", json={"amount": 5000}, headers=headers)
        retried = await app.post("/wallet/deposit", json={"amount": 5000}, headers=headers)

    assert failed.status_code == 502
    assert retried.status_code == 201
    assert sorted(status for _, status in await deposits_of(engine, user.wallet_id)) == ["failed", "pending"]


# -- status and verification ----------------------------------------------------------------------------


async def test_status_of_someone_elses_or_an_unknown_reference_is_404(api: httpx.AsyncClient, make_user) -> None:
    owner, stranger = await make_user(), await make_user()
    deposit = await start_deposit(api, owner, 5000)

    for reference in (deposit.reference, "dep-does-not-exist", "x" * 300):
        response = await api.get(f"/wallet/deposit/{reference}/status", headers=stranger.headers)
        assert response.status_code == 404, reference
        assert response.json()["error_code"] == "TRANSACTION_NOT_FOUND"
    mine = await api.get(f"/wallet/deposit/{deposit.reference}/status", headers=owner.headers)
    assert mine.status_code == 200
    assert mine.json() == {"reference": deposit.reference, "status": "pending", "amount": 5000}


async def test_status_polling_never_credits_an_unpaid_deposit(
    api: httpx.AsyncClient, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    deposit = await start_deposit(api, user, 5000)

    async def poll() -> DepositRow | None:
        response = await api.get(f"/wallet/deposit/{deposit.reference}/status", headers=user.headers)
        assert response.json()["status"] == "pending"
        return await deposit_row(engine, deposit.reference)

    # Poll like a client until a worker has verified the deposit at least once (it answered "ongoing").
    row = await eventually(poll, lambda r: r is not None and r.last_verified_at is not None)

    assert row is not None
    assert row.last_verified_at is not None
    assert (row.status, row.credits) == ("pending", 0)
    assert await balance_of(api, user) == 0
    assert any(m == "GET" and p.endswith(deposit.reference) for m, p, _ in paystack.requests)


async def test_a_paid_deposit_whose_webhook_never_arrives_is_credited_by_status_polling(
    api: httpx.AsyncClient, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    deposit = await start_deposit(api, user, 12_345)
    paystack.set_status(deposit.reference, "success")

    async def poll() -> str:
        response = await api.get(f"/wallet/deposit/{deposit.reference}/status", headers=user.headers)
        return str(response.json()["status"])

    assert await eventually(poll, lambda status: status == "success") == "success"
    row = await deposit_row(engine, deposit.reference)
    assert row is not None
    assert (row.credits, row.paid_at is not None) == (1, True)
    assert await balance_of(api, user) == 12_345
    history = (await api.get("/wallet/transactions", headers=user.headers)).json()
    assert [(t["reference"], t["type"], t["amount"], t["status"]) for t in history] == [
        (deposit.reference, "deposit", 12_345, "success")
    ]


async def test_beat_verifies_deposits_pending_too_long_and_credits_the_paid_ones(
    api: httpx.AsyncClient, paystack: PaystackStandIn, engine: AsyncEngine, make_user, redis: Redis
) -> None:
    user = await make_user()
    paid = await start_deposit(api, user, 4_000)
    unpaid = await start_deposit(api, user, 6_000)
    paystack.set_status(paid.reference, "success")
    for deposit in (paid, unpaid):
        await backdate_deposit(engine, deposit.reference, timedelta(hours=1))

    assert await enqueue(redis, TaskName.VERIFY_STALE_DEPOSITS)

    row = await wait_for_deposit(engine, paid.reference, lambda r: r.status == "success")
    assert row.credits == 1
    unpaid_row = await wait_for_deposit(engine, unpaid.reference, lambda r: r.last_verified_at is not None)
    assert (unpaid_row.status, unpaid_row.credits) == ("pending", 0)
    assert await balance_of(api, user) == 4_000


async def test_verification_marks_failed_and_reversed_payments_failed(
    api: httpx.AsyncClient, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    failed, reversed_ = await start_deposit(api, user, 5000), await start_deposit(api, user, 5000)
    paystack.set_status(failed.reference, "failed")
    paystack.set_status(reversed_.reference, "reversed")

    for deposit in (failed, reversed_):
        answer = await eventually(
            lambda d=deposit: api.get(f"/wallet/deposit/{d.reference}/status", headers=user.headers),
            lambda r: r.json()["status"] != "pending",
        )
        assert answer.json()["status"] == "failed"
        row = await deposit_row(engine, deposit.reference)
        assert row is not None
        assert row.credits == 0


async def test_a_success_delivered_after_paystack_reversed_the_payment_credits_nothing(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    deposit = await start_deposit(api, user, 5000)
    paystack.set_status(deposit.reference, "reversed")
    await eventually(
        lambda: api.get(f"/wallet/deposit/{deposit.reference}/status", headers=user.headers),
        lambda r: r.json()["status"] == "failed",
    )
    # Paystack retries webhooks for days: a success it sent before the reversal can arrive after it.
    late = paystack.build_charge_success(deposit.reference)
    assert (await paystack.deliver_webhook(live_api, late)).status_code == 200
    await wait_for_event(engine, late, "review")
    row = await deposit_row(engine, deposit.reference)
    assert row is not None
    # Held as `reversed` (clients see `failed`), flagged for review, nothing credited.
    assert (row.status, row.credits, row.needs_review) == ("reversed", 0, True)
    status = await api.get(f"/wallet/deposit/{deposit.reference}/status", headers=user.headers)
    assert status.json()["status"] == "failed"
    [item] = (await api.get("/wallet/transactions", headers=user.headers)).json()
    assert (item["reference"], item["status"]) == (deposit.reference, "failed")
    assert await balance_of(api, user) == 0


async def test_abandoned_stays_pending_until_the_final_age_then_becomes_abandoned(
    api: httpx.AsyncClient, paystack: PaystackStandIn, engine: AsyncEngine, make_user, settings: Settings
) -> None:
    user = await make_user()
    deposit = await start_deposit(api, user, 5000)
    paystack.set_status(deposit.reference, "abandoned")
    status_url = f"/wallet/deposit/{deposit.reference}/status"

    async def poll() -> DepositRow | None:
        await api.get(status_url, headers=user.headers)
        return await deposit_row(engine, deposit.reference)

    young = await eventually(poll, lambda r: r is not None and r.last_verified_at is not None)
    assert young is not None
    assert young.last_verified_at is not None
    assert young.status == "pending"

    await backdate_deposit(engine, deposit.reference, timedelta(hours=settings.money.deposit_abandoned_final_hours))
    old = await eventually(lambda: api.get(status_url, headers=user.headers), lambda r: r.json()["status"] != "pending")
    assert old.json() == {"reference": deposit.reference, "status": "abandoned", "amount": 5000}


async def test_a_verification_in_flight_is_not_enqueued_twice(
    api: httpx.AsyncClient, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    deposit = await start_deposit(api, user, 5000)
    # Paystack answers slowly: every poll meanwhile finds the first verification still in flight.
    paystack.delay_next(1, 1.5, path=f"/transaction/verify/{deposit.reference}")

    url = f"/wallet/deposit/{deposit.reference}/status"
    await asyncio.gather(*(api.get(url, headers=user.headers) for _ in range(10)))
    await wait_for_deposit(engine, deposit.reference, lambda r: r.last_verified_at is not None)

    verifications = [p for meth, p, _ in paystack.requests if meth == "GET" and p.endswith(deposit.reference)]
    assert len(verifications) == 1
