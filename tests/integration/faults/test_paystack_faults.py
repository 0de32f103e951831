"""Paystack timing out or failing, on the real stack (API process, worker, the stack's private stand-in).

`tests/integration/payments/test_deposits.py` covers initialise failing with 5xx or timing out before Paystack
acts, in-process. These cover what it does not: the verification path (a deposit stays pending while Paystack
fails or times out, and a later verification credits it exactly once), and an initialise whose answer is lost
after Paystack created the transaction (502, nothing pending; if the customer pays anyway, the payment is
credited once).
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import models as m
from tests.support.faults import Stack, assert_ledger_ok, deposit_state, event_status, wait_for

pytestmark = pytest.mark.e2e

PAYSTACK_ATTEMPTS = 3
"""Attempts the Paystack client makes per call before it gives up (`PaystackClient`'s bound)."""


def _verifications(stack: Stack, reference: str) -> int:
    return sum(1 for method, path, _ in stack.paystack.requests if method == "GET" and path.endswith(reference))


async def test_paystack_failing_or_timing_out_during_verification_leaves_the_deposit_pending_then_credits_it_once(
    stack: Stack, workers: None, http: httpx.AsyncClient, engine: AsyncEngine, make_user
) -> None:
    stack.start_worker(concurrency=2, name="verifier")
    user = await make_user()
    references = []
    for _ in range(2):
        response = await http.post("/wallet/deposit", json={"amount": 6_000}, headers=user.headers)
        assert response.status_code == 201, response.text
        references.append(response.json()["reference"])
    failing, slow = references
    for reference in references:
        stack.paystack.set_status(reference, "success")  # paid; its webhook never arrives
    # Every attempt of the first verification of each fails: 5xx for one, no answer in time for the other.
    stack.paystack.fail_next(PAYSTACK_ATTEMPTS, 502, path=f"/transaction/verify/{failing}")
    stack.paystack.delay_next(PAYSTACK_ATTEMPTS, 3.0, path=f"/transaction/verify/{slow}")

    for reference in references:
        status = await http.get(f"/wallet/deposit/{reference}/status", headers=user.headers)
        assert status.json() == {"reference": reference, "status": "pending", "amount": 6_000}

    async def first_verifications_failed() -> bool:
        return all(_verifications(stack, reference) >= PAYSTACK_ATTEMPTS for reference in references)

    await wait_for(first_verifications_failed, timeout=30, what="the first verifications to fail")
    for reference in references:
        assert await deposit_state(engine, reference) == ("pending", 0)
        status = await http.get(f"/wallet/deposit/{reference}/status", headers=user.headers)
        assert status.json()["status"] == "pending"

    async def credited() -> bool:
        return all([await deposit_state(engine, reference) == ("success", 1) for reference in references])

    # The verification task tries again by itself once Paystack answers.
    await wait_for(credited, timeout=60, what="a later verification to credit both deposits")

    # The webhook arriving late is applied as "already credited": nothing more is credited.
    late = [stack.paystack.build_charge_success(reference) for reference in references]
    for body in late:
        answer = await stack.paystack.deliver_webhook(stack.base_url, body)
        assert answer.status_code == 200

    async def late_webhooks_applied() -> bool:
        return all([await event_status(engine, body) == "processed" for body in late])

    await wait_for(late_webhooks_applied, timeout=30, what="the late webhooks to be applied")
    for reference in references:
        assert await deposit_state(engine, reference) == ("success", 1)
        status = await http.get(f"/wallet/deposit/{reference}/status", headers=user.headers)
        assert status.json()["status"] == "success"
    balance = await http.get("/wallet/balance", headers=user.headers)
    assert balance.json()["balance"] == 12_000
    assert stack.paystack.validation_errors == []
    await assert_ledger_ok(engine)


async def test_an_initialise_whose_answer_never_comes_back_is_502_with_nothing_pending_and_a_late_payment_is_credited_once(
    stack: Stack, workers: None, http: httpx.AsyncClient, engine: AsyncEngine, make_user
) -> None:
    stack.start_worker(concurrency=1, name="late-payment")
    user = await make_user()
    # Paystack creates the transaction, then its answer is lost; the client's retries meet the same reference.
    stack.paystack.delay_next(PAYSTACK_ATTEMPTS, 3.0, after_processing=True, path="/transaction/initialize")

    response = await http.post("/wallet/deposit", json={"amount": 4_000}, headers=user.headers)

    assert response.status_code == 502, response.text
    assert response.json()["error_code"] == "PAYMENT_PROVIDER_ERROR"
    assert stack.paystack.secret_key not in response.text
    async with engine.connect() as connection:
        deposits = (
            await connection.execute(
                select(m.Deposit.reference, m.Deposit.status).where(m.Deposit.wallet_id == user.wallet_id)
            )
        ).all()
    assert [status for _, status in deposits] == ["failed"], "nothing is left pending"
    [(reference, _)] = deposits
    stack.paystack.transaction(reference)  # Paystack did create it

    # The customer pays on Paystack's page anyway: the payment is credited once, however often it is reported.
    stack.paystack.set_status(reference, "success")
    body = stack.paystack.build_charge_success(reference)
    for _ in range(2):
        answer = await stack.paystack.deliver_webhook(stack.base_url, body)
        assert answer.status_code == 200

    async def credited() -> bool:
        return await deposit_state(engine, reference) == ("success", 1)

    await wait_for(credited, timeout=30, what="the late payment to be credited")
    balance = await http.get("/wallet/balance", headers=user.headers)
    assert balance.json()["balance"] == 4_000
    await assert_ledger_ok(engine)
