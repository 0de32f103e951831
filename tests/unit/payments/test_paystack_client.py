"""The Paystack client against the stand-in over real HTTP, and the webhook signature rule."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import socket
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from app.config import Settings
from app.domain.payments.paystack import (
    PaystackClient,
    PaystackError,
    PaystackNotFound,
    is_valid_signature,
    sign_webhook,
)
from app.domain.payments.paystack.client import DUPLICATE_REFERENCE
from tests.support.paystack_standin import PaystackStandIn

if TYPE_CHECKING:
    from collections.abc import Iterator

BACKOFF_BASE = 0.005
BACKOFF_MAX = 0.02


@pytest.fixture(scope="module")
def running_standin() -> Iterator[PaystackStandIn]:
    with PaystackStandIn() as standin:
        yield standin


@pytest.fixture
def paystack(running_standin: PaystackStandIn) -> Iterator[PaystackStandIn]:
    running_standin.reset()
    yield running_standin
    assert running_standin.validation_errors == []


def client_for(
    standin: PaystackStandIn,
    *,
    secret_key: str | None = None,
    timeout: float = 5.0,
    base_url: str | None = None,
    max_attempts: int = 3,
) -> PaystackClient:
    settings = Settings().replaced(
        paystack_base_url=base_url or standin.base_url,
        paystack_secret_key=standin.secret_key if secret_key is None else secret_key,
        paystack_timeout_seconds=timeout,
    )
    return PaystackClient(
        settings.paystack, max_attempts=max_attempts, backoff_base_seconds=BACKOFF_BASE, backoff_max_seconds=BACKOFF_MAX
    )


def new_reference() -> str:
    return f"dep-{secrets.token_hex(8)}"


async def initialize(client: PaystackClient, reference: str, amount: int = 5000) -> None:
    await client.initialize(
        email="ada@example.com",
        amount=amount,
        reference=reference,
        currency="NGN",
        callback_url=None,
        metadata={},
    )


def requests_for(standin: PaystackStandIn, reference: str) -> list[tuple[str, str, Any]]:
    return [
        (method, path, body)
        for method, path, body in standin.requests
        if reference in path or (isinstance(body, dict) and body.get("reference") == reference)
    ]


# initialize


@pytest.mark.asyncio
async def test_initialize_sends_integer_kobo_amount_reference_email_currency_callback_and_metadata(
    paystack: PaystackStandIn,
) -> None:
    reference = new_reference()
    async with client_for(paystack) as client:
        await client.initialize(
            email="ada@example.com",
            amount=500_000,
            reference=reference,
            currency="NGN",
            callback_url="https://wallet.example.com/deposits/done",
            metadata={"user_id": "u-1", "wallet_number": "4566678954356"},
        )

    [(method, path, body)] = paystack.requests
    assert (method, path) == ("POST", "/transaction/initialize")
    assert body == {
        "email": "ada@example.com",
        "amount": 500_000,
        "reference": reference,
        "currency": "NGN",
        "callback_url": "https://wallet.example.com/deposits/done",
        "metadata": {"user_id": "u-1", "wallet_number": "4566678954356"},
    }
    assert type(body["amount"]) is int


@pytest.mark.asyncio
async def test_initialize_returns_the_access_code_and_checkout_url_paystack_created(paystack: PaystackStandIn) -> None:
    reference = new_reference()
    async with client_for(paystack) as client:
        created = await client.initialize(
            email="ada@example.com", amount=5000, reference=reference, currency="NGN", callback_url=None, metadata={}
        )

    stored = paystack.transaction(reference)
    assert created.reference == reference
    assert created.access_code == stored.access_code
    assert created.authorization_url.endswith(stored.access_code)
    assert (stored.email, stored.amount, stored.currency) == ("ada@example.com", 5000, "NGN")


@pytest.mark.asyncio
@pytest.mark.parametrize("amount", [0, -100, 50.0, True, "5000"])
async def test_initialize_refuses_an_amount_that_is_not_a_positive_integer_before_calling_paystack(
    paystack: PaystackStandIn, amount: Any
) -> None:
    async with client_for(paystack) as client:
        with pytest.raises(ValueError, match="amount"):
            await initialize(client, new_reference(), amount=amount)
    assert paystack.requests == []


@pytest.mark.asyncio
async def test_initialize_is_retried_with_the_same_reference_after_5xx(paystack: PaystackStandIn) -> None:
    reference = new_reference()
    paystack.fail_next(2, status_code=502)
    async with client_for(paystack, max_attempts=3) as client:
        created = await client.initialize(
            email="ada@example.com", amount=5000, reference=reference, currency="NGN", callback_url=None, metadata={}
        )

    posts = requests_for(paystack, reference)
    assert len(posts) == 3
    assert {body["reference"] for _, _, body in posts} == {reference}
    assert created.access_code == paystack.transaction(reference).access_code


@pytest.mark.asyncio
async def test_initialize_is_retried_with_the_same_reference_after_a_timeout(paystack: PaystackStandIn) -> None:
    reference = new_reference()
    paystack.delay_next(1, 1.0)
    async with client_for(paystack, timeout=0.2, max_attempts=3) as client:
        created = await client.initialize(
            email="ada@example.com", amount=5000, reference=reference, currency="NGN", callback_url=None, metadata={}
        )

    posts = requests_for(paystack, reference)
    assert len(posts) == 2
    assert {body["reference"] for _, _, body in posts} == {reference}
    assert created.reference == reference


@pytest.mark.asyncio
async def test_initialize_retry_that_meets_duplicate_reference_is_a_failure_not_a_second_transaction(
    paystack: PaystackStandIn,
) -> None:
    reference = new_reference()
    # The first attempt creates the transaction but its answer is lost: the retry can only learn the reference
    # is taken, and Paystack never hands out that access code again.
    paystack.delay_next(1, 1.0, after_processing=True)
    async with client_for(paystack, timeout=0.2, max_attempts=3) as client:
        with pytest.raises(PaystackError) as caught:
            await initialize(client, reference)

    assert caught.value.code == DUPLICATE_REFERENCE
    assert caught.value.status_code == 400
    assert len(requests_for(paystack, reference)) == 2


@pytest.mark.asyncio
async def test_initialize_with_a_reference_already_used_fails_without_retry(paystack: PaystackStandIn) -> None:
    reference = new_reference()
    async with client_for(paystack) as client:
        await initialize(client, reference)
        with pytest.raises(PaystackError) as caught:
            await initialize(client, reference)

    assert caught.value.code == DUPLICATE_REFERENCE
    assert caught.value.status_code == 400
    assert len(requests_for(paystack, reference)) == 2


@pytest.mark.asyncio
async def test_wrong_secret_key_is_a_401_paystack_error_without_retry(paystack: PaystackStandIn) -> None:
    async with client_for(paystack, secret_key="sk_test_not_the_right_one") as client:
        with pytest.raises(PaystackError) as caught:
            await initialize(client, new_reference())

    assert caught.value.status_code == 401
    assert caught.value.message == "Invalid key"
    assert len(paystack.requests) == 1


@pytest.mark.asyncio
async def test_repeated_5xx_end_as_paystack_error_after_the_bounded_attempts(paystack: PaystackStandIn) -> None:
    reference = new_reference()
    paystack.fail_next(10, status_code=503)
    async with client_for(paystack, max_attempts=3) as client:
        with pytest.raises(PaystackError) as caught:
            await initialize(client, reference)

    assert caught.value.status_code == 503
    assert len(requests_for(paystack, reference)) == 3


@pytest.mark.asyncio
async def test_repeated_timeouts_end_as_paystack_error_within_a_bounded_time(paystack: PaystackStandIn) -> None:
    paystack.delay_next(10, 2.0)
    started = time.monotonic()
    async with client_for(paystack, timeout=0.1, max_attempts=3) as client:
        with pytest.raises(PaystackError) as caught:
            await client.verify(new_reference())

    # Three 0.1 s attempts plus two short pauses; the stand-in would have held each for 2 s.
    assert time.monotonic() - started < 1.0
    assert caught.value.status_code is None
    assert isinstance(caught.value.__cause__, httpx.TimeoutException)
    assert len(paystack.requests) == 3


@pytest.mark.asyncio
async def test_unreachable_paystack_is_retried_then_a_paystack_error(paystack: PaystackStandIn) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    client = client_for(paystack, base_url=f"http://127.0.0.1:{closed_port}", max_attempts=2)
    async with client:
        with pytest.raises(PaystackError) as caught:
            await client.verify(new_reference())
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


# verify


@pytest.mark.asyncio
async def test_verify_reports_the_status_amount_and_currency_paystack_holds(paystack: PaystackStandIn) -> None:
    reference = new_reference()
    async with client_for(paystack) as client:
        await initialize(client, reference, amount=7500)
        pending = await client.verify(reference)
        paystack.set_status(reference, "success")
        paid = await client.verify(reference)

    assert pending.status == "ongoing"
    assert pending.paid_at is None
    assert (paid.reference, paid.status, paid.amount, paid.currency) == (reference, "success", 7500, "NGN")
    assert paid.paid_at is not None
    assert paid.data["customer"]["email"] == "ada@example.com"


@pytest.mark.asyncio
async def test_verify_reports_an_amount_that_differs_from_the_initialised_one(paystack: PaystackStandIn) -> None:
    reference = new_reference()
    async with client_for(paystack) as client:
        await initialize(client, reference, amount=7500)
        paystack.set_status(reference, "success", amount=100, currency="USD")
        paid = await client.verify(reference)

    assert (paid.amount, paid.currency) == (100, "USD")


@pytest.mark.asyncio
@pytest.mark.parametrize("status", ["failed", "abandoned", "reversed", "pending"])
async def test_verify_reports_non_success_statuses_verbatim(paystack: PaystackStandIn, status: str) -> None:
    reference = new_reference()
    async with client_for(paystack) as client:
        await initialize(client, reference)
        paystack.set_status(reference, status)
        verified = await client.verify(reference)
    assert verified.status == status


@pytest.mark.asyncio
async def test_verify_of_an_unknown_reference_raises_transaction_not_found_without_retry(
    paystack: PaystackStandIn,
) -> None:
    async with client_for(paystack) as client:
        with pytest.raises(PaystackNotFound) as caught:
            await client.verify("never-initialised")

    assert caught.value.status_code == 404
    assert len(paystack.requests) == 1


@pytest.mark.asyncio
async def test_verify_is_retried_after_5xx(paystack: PaystackStandIn) -> None:
    reference = new_reference()
    async with client_for(paystack) as client:
        await initialize(client, reference)
        paystack.fail_next(1)
        verified = await client.verify(reference)
    assert verified.reference == reference
    assert [m for m, _, _ in requests_for(paystack, reference)] == ["POST", "GET", "GET"]


# Answers Paystack should never give, but might through a proxy or an incident.


def _client_answering(status_code: int, content: bytes) -> PaystackClient:
    settings = Settings().replaced(paystack_base_url="https://api.paystack.co", paystack_secret_key="sk_test_x")
    transport = httpx.MockTransport(lambda _: httpx.Response(status_code, content=content))
    return PaystackClient(
        settings.paystack, transport=transport, backoff_base_seconds=BACKOFF_BASE, backoff_max_seconds=BACKOFF_MAX
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status_code", "content"),
    [
        (200, b"<html>gateway</html>"),
        (200, b'{"status": false, "message": "Something went wrong"}'),
        (200, b'{"status": true, "message": "ok", "data": {"reference": "r", "status": "success"}}'),
        (
            200,
            b'{"status": true, "message": "ok", "data": {"reference": "r", "status": "success", '
            b'"amount": "5000", "currency": "NGN"}}',
        ),
        (404, b"<html>not here</html>"),
        (302, b""),
    ],
)
async def test_unreadable_or_unsuccessful_answers_end_as_paystack_error(status_code: int, content: bytes) -> None:
    async with _client_answering(status_code, content) as client:
        with pytest.raises(PaystackError) as caught:
            await client.verify("r")
    assert type(caught.value) is PaystackError
    assert caught.value.status_code == status_code


@pytest.mark.asyncio
async def test_initialize_answer_for_another_reference_is_a_paystack_error() -> None:
    body = b'{"status":true,"message":"ok","data":{"authorization_url":"u","access_code":"c","reference":"other"}}'
    async with _client_answering(200, body) as client:
        with pytest.raises(PaystackError):
            await initialize(client, "mine")


@pytest.mark.asyncio
async def test_the_secret_key_never_appears_in_log_records(
    paystack: PaystackStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reference = new_reference()
    async with client_for(paystack, timeout=0.5) as client:
        await initialize(client, reference)
        paystack.fail_next(3)
        with pytest.raises(PaystackError):
            await client.verify(reference)
    async with client_for(paystack, timeout=0.05, max_attempts=2) as client:
        paystack.delay_next(2, 1.0)
        with pytest.raises(PaystackError):
            await client.verify(reference)
    async with client_for(paystack, secret_key=paystack.secret_key[:-1]) as client:
        with pytest.raises(PaystackError):
            await client.verify(reference)

    assert any(record.name.startswith("app.domain.payments.paystack") for record in caplog.records)
    secret_part = paystack.secret_key.removeprefix("sk_test_standin_")
    for logged in [caplog.text, *(f"{record.getMessage()} {record.args!r}" for record in caplog.records)]:
        assert secret_part not in logged
        assert "Bearer" not in logged


# Webhook signatures


def test_signature_is_the_lowercase_hex_hmac_sha512_of_the_raw_body() -> None:
    body = b'{"event":"charge.success","data":{"reference":"r"}}'
    signature = sign_webhook(body, "sk_test_secret")
    assert signature == hmac.new(b"sk_test_secret", body, hashlib.sha512).hexdigest()
    assert len(signature) == 128
    assert signature == signature.lower()


def test_signature_of_the_exact_body_is_valid() -> None:
    body = b'{"event":"charge.success","data":{"amount":10000}}'
    assert is_valid_signature(body, sign_webhook(body, "sk_test_secret"), "sk_test_secret")


def test_signature_over_a_tampered_body_is_invalid() -> None:
    body = b'{"event":"charge.success","data":{"amount":10000}}'
    signature = sign_webhook(body, "sk_test_secret")
    assert not is_valid_signature(body.replace(b"10000", b"99999"), signature, "sk_test_secret")
    # Re-serialising changes the bytes, so it must not be what gets checked.
    assert not is_valid_signature(
        b'{"event": "charge.success", "data": {"amount": 10000}}', signature, "sk_test_secret"
    )


def test_signature_made_with_another_secret_is_invalid() -> None:
    body = b'{"event":"charge.success"}'
    assert not is_valid_signature(body, sign_webhook(body, "sk_test_attacker"), "sk_test_secret")


@pytest.mark.parametrize("signature", [None, ""])
def test_missing_signature_is_invalid(signature: str | None) -> None:
    assert not is_valid_signature(b"{}", signature, "sk_test_secret")


def test_no_body_is_valid_when_the_secret_is_empty() -> None:
    body = b"{}"
    assert not is_valid_signature(body, sign_webhook(body, ""), "")
