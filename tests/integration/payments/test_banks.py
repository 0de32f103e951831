"""`GET /banks`: Paystack's payout banks for a currency, to a JWT or any API key, cached for a day."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.domain.withdrawals.banks import CACHE_SECONDS
from tests.support.payments import in_process
from tests.support.paystack_standin import PaystackStandIn
from tests.support.users import add_api_key


@pytest.fixture
async def no_cached_banks(redis: Redis) -> None:
    """Each test starts from Paystack, not from a list an earlier test cached."""
    keys = [key async for key in redis.scan_iter("paystack:banks:*")]
    if keys:
        await redis.delete(*keys)


def _bank_requests(paystack: PaystackStandIn) -> int:
    return sum(1 for request in paystack.requests if request.path == "/bank")


async def test_banks_are_paystacks_active_ones_for_the_currency_by_name_for_a_jwt_or_a_key_of_any_permission(
    private_settings: Settings, no_cached_banks: None, db: AsyncSession, make_user
) -> None:
    user = await make_user()
    deposit_only = await add_api_key(db, user.user_id, ["deposit"])
    async with in_process(private_settings) as app:
        by_token = await app.get("/banks", headers=user.headers)
        by_key = await app.get("/banks", headers=deposit_only)
        ghana = await app.get("/banks", params={"currency": "GHS"}, headers=user.headers)

    assert by_token.status_code == 200, by_token.text
    assert by_token.json() == [
        {"name": "Access Bank", "code": "044", "currency": "NGN"},
        {"name": "First Bank of Nigeria", "code": "011", "currency": "NGN"},
        {"name": "Guaranty Trust Bank", "code": "058", "currency": "NGN"},
        {"name": "Zenith Bank", "code": "057", "currency": "NGN"},
    ], "sorted by name, the bank Paystack flags deleted left out"
    assert by_key.status_code == 200
    assert by_key.json() == by_token.json()
    assert ghana.json() == [{"name": "Absa Bank Ghana", "code": "030100", "currency": "GHS"}]


async def test_the_bank_list_is_asked_of_paystack_once_per_currency_and_kept_a_day(
    private_settings: Settings, private_paystack: PaystackStandIn, no_cached_banks: None, redis: Redis, make_user
) -> None:
    user = await make_user()
    async with in_process(private_settings) as app:
        answers = [await app.get("/banks", headers=user.headers) for _ in range(3)]

    assert {answer.status_code for answer in answers} == {200}
    assert _bank_requests(private_paystack) == 1
    assert CACHE_SECONDS - 60 < await redis.ttl("paystack:banks:NGN") <= CACHE_SECONDS


async def test_paystack_failing_with_nothing_cached_is_502_and_a_cached_list_is_served_through_the_failure(
    private_settings: Settings, private_paystack: PaystackStandIn, no_cached_banks: None, make_user
) -> None:
    user = await make_user()
    private_paystack.fail_next(10, status_code=503, path="/bank")
    async with in_process(private_settings) as app:
        failed = await app.get("/banks", headers=user.headers)
        private_paystack.reset()
        listed = await app.get("/banks", headers=user.headers)
        private_paystack.fail_next(10, status_code=503, path="/bank")
        cached = await app.get("/banks", headers=user.headers)

    assert failed.status_code == 502
    assert failed.json()["error_code"] == "PAYMENT_PROVIDER_ERROR"
    assert listed.status_code == 200
    assert cached.json() == listed.json()


async def test_a_currency_paystack_lists_no_banks_for_is_a_validation_error(
    private_settings: Settings, private_paystack: PaystackStandIn, make_user
) -> None:
    user = await make_user()
    async with in_process(private_settings) as app:
        answer = await app.get("/banks", params={"currency": "USD"}, headers=user.headers)

    assert answer.status_code == 400
    assert answer.json()["error_code"] == "VALIDATION_ERROR"
    assert _bank_requests(private_paystack) == 0
