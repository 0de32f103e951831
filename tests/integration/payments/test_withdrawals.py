"""Withdrawals through the real API and worker, paid out by the Paystack stand-in over HTTP.

The money is reserved in the request (the balance drops at once), a worker initiates the Paystack transfer
with our reference, and the `transfer.*` webhook finishes it: a success completes it, a failure or reversal
gives the money back once. Every test ends with the ledger check.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.factories import fund
from tests.support.faults import assert_ledger_ok
from tests.support.payments import balance_of, wait_for_event
from tests.support.paystack_standin import PaystackStandIn
from tests.support.processes import ServiceProcess, service_env, start_api
from tests.support.waiting import eventually
from tests.support.withdrawals import accepted_withdrawal, review_kinds, wait_for_withdrawal, withdraw


async def test_a_withdrawal_reserves_at_once_is_paid_out_with_our_reference_and_completed_by_transfer_success(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    await fund(engine, user.wallet_id, 80_000)

    response = await withdraw(api, user, 50_000, narration="rent")

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert (body["amount"], body["bank_code"], body["bank_name"]) == (50_000, "058", "Guaranty Trust Bank")
    assert body["account_number_last4"] == "6789"
    assert body["account_name"] == "STAND-IN ACCOUNT 6789"
    reference = body["reference"]
    assert await balance_of(api, user) == 30_000, "reserved in the request"
    await wait_for_withdrawal(engine, reference, lambda r: r.status == "processing")
    transfer = paystack.transfer(reference)
    assert (transfer.amount, transfer.reference) == (50_000, reference)

    paystack.set_transfer_status(reference, "success")
    event = paystack.build_transfer_event(reference, "transfer.success")
    assert (await paystack.deliver_webhook(live_api, event)).status_code == 200
    row = await wait_for_withdrawal(engine, reference, lambda r: r.status == "success")

    assert row.journals == {"withdrawal": 1, "payout": 1}
    assert await balance_of(api, user) == 30_000
    shown = (await api.get(f"/wallet/withdrawals/{reference}", headers=user.headers)).json()
    assert shown["status"] == "success"
    assert shown["completed_at"] is not None
    assert shown["failure_reason"] is None
    item = (await api.get(f"/wallet/transactions/{reference}", headers=user.headers)).json()
    assert (item["type"], item["status"], item["counterparty_wallet_number"]) == ("withdrawal", "success", None)
    listed = (await api.get("/wallet/transactions", headers=user.headers)).json()
    assert listed[0] == item, "newest first"
    await assert_ledger_ok(engine)


async def test_a_failed_transfer_gives_the_money_back_once_with_its_reason(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    await fund(engine, user.wallet_id, 10_000)
    reference = await accepted_withdrawal(api, user, 10_000)
    await wait_for_withdrawal(engine, reference, lambda r: r.status == "processing")

    paystack.set_transfer_status(reference, "failed")
    event = paystack.build_transfer_event(reference, "transfer.failed", reason="Account closed")
    for _ in range(3):
        assert (await paystack.deliver_webhook(live_api, event)).status_code == 200
        await wait_for_event(engine, event, "processed")

    row = await wait_for_withdrawal(engine, reference, lambda r: r.status == "failed")
    assert row.journals == {"withdrawal": 1, "payout_return": 1}
    assert row.failure_reason == "Account closed"
    assert await balance_of(api, user) == 10_000
    await assert_ledger_ok(engine)


async def test_a_reversal_after_a_success_returns_the_money_from_paystack_once(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    await fund(engine, user.wallet_id, 7_000)
    reference = await accepted_withdrawal(api, user, 7_000)
    await wait_for_withdrawal(engine, reference, lambda r: r.status == "processing")
    success = paystack.build_transfer_event(reference, "transfer.success")
    reversal = paystack.build_transfer_event(reference, "transfer.reversed", reason="Beneficiary bank reversed it")

    assert (await paystack.deliver_webhook(live_api, success)).status_code == 200
    await wait_for_withdrawal(engine, reference, lambda r: r.status == "success")
    assert await balance_of(api, user) == 0
    for _ in range(2):
        assert (await paystack.deliver_webhook(live_api, reversal)).status_code == 200
        await wait_for_event(engine, reversal, "processed")

    row = await wait_for_withdrawal(engine, reference, lambda r: r.status == "reversed")
    assert row.journals == {"withdrawal": 1, "payout": 1, "payout_return": 1}
    assert row.failure_reason == "Beneficiary bank reversed it"
    assert await balance_of(api, user) == 7_000
    await assert_ledger_ok(engine)


async def test_contradictory_outcomes_move_nothing_and_are_flagged_for_review(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    await fund(engine, user.wallet_id, 9_000)
    failed_first = await accepted_withdrawal(api, user, 4_000)
    reversed_first = await accepted_withdrawal(api, user, 5_000)
    for reference in (failed_first, reversed_first):
        await wait_for_withdrawal(engine, reference, lambda r: r.status == "processing")

    failure = paystack.build_transfer_event(failed_first, "transfer.failed")
    late_success = paystack.build_transfer_event(failed_first, "transfer.success")
    reversal = paystack.build_transfer_event(reversed_first, "transfer.reversed")
    late_failure = paystack.build_transfer_event(reversed_first, "transfer.failed")
    for first, then in ((failure, late_success), (reversal, late_failure)):
        assert (await paystack.deliver_webhook(live_api, first)).status_code == 200
        await wait_for_event(engine, first, "processed")
        assert (await paystack.deliver_webhook(live_api, then)).status_code == 200
        await wait_for_event(engine, then, "review")

    assert (await wait_for_withdrawal(engine, failed_first, lambda r: True)).status == "failed"
    assert (await wait_for_withdrawal(engine, reversed_first, lambda r: True)).status == "reversed"
    assert await review_kinds(engine, failed_first) == ["payout_contradiction"]
    assert await review_kinds(engine, reversed_first) == ["payout_contradiction"]
    assert await balance_of(api, user) == 9_000, "each came back once, and nothing moved on the contradiction"
    await assert_ledger_ok(engine)


async def test_the_same_transfer_failed_delivered_twenty_times_at_once_returns_the_money_once(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    await fund(engine, user.wallet_id, 12_000)
    reference = await accepted_withdrawal(api, user, 12_000)
    await wait_for_withdrawal(engine, reference, lambda r: r.status == "processing")
    body = paystack.build_transfer_event(reference, "transfer.failed")
    resent = body.replace(b'"domain":"test"', b'"domain":"test","resent":true')
    assert resent != body

    answers = await asyncio.gather(
        *(paystack.deliver_webhook(live_api, body) for _ in range(20)),
        *(paystack.deliver_webhook(live_api, resent) for _ in range(5)),
    )

    assert {answer.status_code for answer in answers} == {200}
    await wait_for_event(engine, body, "processed")
    await wait_for_event(engine, resent, "processed")
    row = await wait_for_withdrawal(engine, reference, lambda r: r.status == "failed")
    assert row.journals == {"withdrawal": 1, "payout_return": 1}
    assert await balance_of(api, user) == 12_000
    await assert_ledger_ok(engine)


async def test_an_otp_answer_fails_the_withdrawal_returns_the_money_and_says_to_disable_transfer_otp(
    api: httpx.AsyncClient, paystack: PaystackStandIn, worker: ServiceProcess, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    await fund(engine, user.wallet_id, 3_000)
    paystack.set_next_transfer_answers("otp")

    reference = await accepted_withdrawal(api, user, 3_000)

    row = await wait_for_withdrawal(engine, reference, lambda r: r.status == "failed")
    assert row.failure_reason is not None
    assert "disable transfer OTP" in row.failure_reason
    assert row.journals == {"withdrawal": 1, "payout_return": 1}
    assert await balance_of(api, user) == 3_000
    shown = (await api.get(f"/wallet/withdrawals/{reference}", headers=user.headers)).json()
    assert shown["status"] == "failed"
    assert "OTP" in shown["failure_reason"]
    logged = await eventually(
        lambda: asyncio.sleep(0, worker.output()), lambda out: f"withdrawal {reference}: Paystack asks" in out
    )
    assert "ERROR" in next(line for line in logged.splitlines() if f"withdrawal {reference}: Paystack asks" in line)
    await assert_ledger_ok(engine)


@pytest.mark.parametrize(
    ("knob", "reason"),
    [
        ("insufficient_balance", "Your balance is not enough"),
        ("refused_recipient", "refused the bank account"),
    ],
)
async def test_a_payout_paystack_refuses_fails_with_its_reason_and_returns_the_money(
    api: httpx.AsyncClient, paystack: PaystackStandIn, engine: AsyncEngine, make_user, knob: str, reason: str
) -> None:
    user = await make_user()
    await fund(engine, user.wallet_id, 6_000)
    account = f"{uuid.uuid4().int % 10**10:010d}"
    if knob == "insufficient_balance":
        paystack.set_next_transfer_answers("insufficient_balance")
    else:
        paystack.refused_recipient_accounts.add(account)

    reference = await accepted_withdrawal(api, user, 6_000, account_number=account)

    row = await wait_for_withdrawal(engine, reference, lambda r: r.status == "failed")
    assert row.failure_reason is not None
    assert reason in row.failure_reason
    assert row.journals == {"withdrawal": 1, "payout_return": 1}
    assert await balance_of(api, user) == 6_000
    if knob == "refused_recipient":
        assert paystack.transfer_initiations(reference) == 0, "no transfer without a recipient"
    await assert_ledger_ok(engine)


async def test_a_recipient_is_created_once_per_user_bank_and_account_and_reused(
    api: httpx.AsyncClient, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    await fund(engine, user.wallet_id, 2_000)
    account = f"{uuid.uuid4().int % 10**10:010d}"
    first = await accepted_withdrawal(api, user, 1_000, account_number=account)
    await wait_for_withdrawal(engine, first, lambda r: r.status == "processing")
    second = await accepted_withdrawal(api, user, 1_000, account_number=account)
    await wait_for_withdrawal(engine, second, lambda r: r.status == "processing")

    creations = [r for r in paystack.requests if r.path == "/transferrecipient" and r.json["account_number"] == account]
    assert len(creations) == 1
    assert paystack.transfer(first).recipient_code == paystack.transfer(second).recipient_code
    await assert_ledger_ok(engine)


async def test_bad_requests_are_refused_with_the_contracts_codes_and_reserve_nothing(
    api: httpx.AsyncClient, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    await fund(engine, user.wallet_id, 5_000)
    unresolvable = f"{uuid.uuid4().int % 10**10:010d}"
    paystack.unresolvable_accounts.add(unresolvable)
    cases = [
        ({"bank_code": "000"}, 400, "VALIDATION_ERROR"),
        ({"bank_code": "999"}, 400, "VALIDATION_ERROR"),  # deleted at Paystack: not in GET /banks
        ({"account_number": "012345678"}, 400, "VALIDATION_ERROR"),
        ({"account_number": "01234567890"}, 400, "VALIDATION_ERROR"),
        ({"account_number": 123456789}, 400, "VALIDATION_ERROR"),
        ({"narration": "x" * 101}, 400, "VALIDATION_ERROR"),
        ({"amount": 0}, 400, "VALIDATION_ERROR"),
        ({"amount": "100"}, 400, "VALIDATION_ERROR"),
        ({"account_number": unresolvable}, 400, "BANK_ACCOUNT_INVALID"),
        ({"amount": 5_001}, 400, "INSUFFICIENT_BALANCE"),
    ]
    for change, status, code in cases:
        body = {"amount": 1_000, "bank_code": "058", "account_number": "0123456789"} | change
        response = await api.post("/wallet/withdrawals", json=body, headers=user.headers)
        assert (response.status_code, response.json()["error_code"]) == (status, code), (change, response.text)

    paystack.fail_next(3, 503, path="/bank/resolve")
    failing = await withdraw(api, user, 1_000)
    assert (failing.status_code, failing.json()["error_code"]) == (502, "PAYMENT_PROVIDER_ERROR")

    assert await balance_of(api, user) == 5_000
    assert (await api.get("/wallet/withdrawals", headers=user.headers)).json() == []
    await assert_ledger_ok(engine)


async def test_an_idempotent_retry_replays_the_answer_and_reserves_once(
    api: httpx.AsyncClient, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    await fund(engine, user.wallet_id, 4_000)
    headers = {**user.headers, "Idempotency-Key": f"wd-{uuid.uuid4()}"}

    first = await withdraw(api, user, 3_000, headers=headers)
    again = await withdraw(api, user, 3_000, headers=headers)
    other = await withdraw(api, user, 2_000, headers=headers)

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert (other.status_code, other.json()["error_code"]) == (422, "IDEMPOTENCY_KEY_REUSED")
    assert await balance_of(api, user) == 1_000
    await assert_ledger_ok(engine)


async def test_withdrawals_are_listed_newest_first_page_by_page_and_only_to_their_owner(
    api: httpx.AsyncClient, engine: AsyncEngine, make_user
) -> None:
    user, stranger = await make_user(), await make_user()
    await fund(engine, user.wallet_id, 3_000)
    references = [await accepted_withdrawal(api, user, 1_000) for _ in range(3)]

    first = await api.get("/wallet/withdrawals", params={"limit": 2}, headers=user.headers)
    assert first.status_code == 200
    assert [item["reference"] for item in first.json()] == references[::-1][:2]
    next_url = first.headers["link"].split(";")[0].strip("<>")
    second = await api.get(next_url, headers=user.headers)
    assert [item["reference"] for item in second.json()] == references[:1]
    assert "link" not in second.headers

    foreign = await api.get(f"/wallet/withdrawals/{references[0]}", headers=stranger.headers)
    assert (foreign.status_code, foreign.json()["error_code"]) == (404, "WITHDRAWAL_NOT_FOUND")
    assert (await api.get("/wallet/withdrawals", headers=stranger.headers)).json() == []
    await assert_ledger_ok(engine)


async def test_a_transfer_event_for_a_reference_that_is_not_ours_is_recorded_and_ignored(
    live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, worker: ServiceProcess
) -> None:
    body = paystack.build_transfer_event(f"wd-{uuid.uuid4().hex}", "transfer.success")

    assert (await paystack.deliver_webhook(live_api, body)).status_code == 200

    await wait_for_event(engine, body, "ignored")
    await assert_ledger_ok(engine)


@pytest.fixture(scope="module")
def limited_api() -> Iterator[str]:
    """An API process with a daily withdrawal limit of 10,000 kobo."""
    process, base_url = start_api(service_env(WITHDRAWAL_DAILY_LIMIT="10000"))
    yield base_url
    process.stop()


async def test_the_daily_limit_counts_pending_and_paid_withdrawals_but_not_failed_ones(
    limited_api: str, paystack: PaystackStandIn, live_api: str, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    await fund(engine, user.wallet_id, 30_000)
    async with httpx.AsyncClient(base_url=limited_api, timeout=30) as limited:
        first = await accepted_withdrawal(limited, user, 6_000)
        over = await withdraw(limited, user, 4_001)
        assert (over.status_code, over.json()["error_code"]) == (400, "LIMIT_EXCEEDED")

        await wait_for_withdrawal(engine, first, lambda r: r.status == "processing")
        failure = paystack.build_transfer_event(first, "transfer.failed")
        assert (await paystack.deliver_webhook(live_api, failure)).status_code == 200
        await wait_for_withdrawal(engine, first, lambda r: r.status == "failed")

        assert (await withdraw(limited, user, 10_000)).status_code == 202, "a failed withdrawal frees its share"
        again = await withdraw(limited, user, 1)
        assert (again.status_code, again.json()["error_code"]) == (400, "LIMIT_EXCEEDED")
    await assert_ledger_ok(engine)
