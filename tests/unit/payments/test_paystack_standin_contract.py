"""The stand-in speaks Paystack's official OpenAPI description, and its webhooks look like Paystack's."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from app.config import Settings
from app.domain.payments.paystack import PaystackClient, PaystackError, PaystackNotFound, is_valid_signature
from tests.support import paystack_standin
from tests.support.paystack_standin import CHARGE_SUCCESS_PATH, PaystackStandIn

if TYPE_CHECKING:
    from collections.abc import Iterator, MutableMapping


@pytest.fixture(scope="module")
def running_standin() -> Iterator[PaystackStandIn]:
    with PaystackStandIn() as standin:
        yield standin


@pytest.fixture
def paystack(running_standin: PaystackStandIn) -> PaystackStandIn:
    running_standin.reset()
    return running_standin


def client_for(standin: PaystackStandIn, *, secret_key: str | None = None) -> PaystackClient:
    settings = Settings().replaced(
        paystack_base_url=standin.base_url,
        paystack_secret_key=standin.secret_key if secret_key is None else secret_key,
        paystack_timeout_seconds=5.0,
    )
    return PaystackClient(settings.paystack, max_attempts=1)


def raw_post(standin: PaystackStandIn, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{standin.base_url}/transaction/initialize",
        json=body,
        headers={"Authorization": f"Bearer {standin.secret_key}"},
    )


@pytest.mark.asyncio
async def test_a_full_initialize_and_verify_cycle_conforms_to_paystacks_openapi(paystack: PaystackStandIn) -> None:
    async with client_for(paystack) as client:
        await client.initialize(
            email="ada@example.com",
            amount=5000,
            reference="dep-contract-1",
            currency="NGN",
            callback_url="https://wallet.example.com/done",
            metadata={"user_id": "u-1"},
        )
        await client.verify("dep-contract-1")
        for status in ("success", "failed", "abandoned", "reversed"):
            paystack.set_status("dep-contract-1", status)
            await client.verify("dep-contract-1")
        with pytest.raises(PaystackError):
            await client.initialize(
                email="ada@example.com", amount=5000, reference="dep-contract-1", currency="NGN", metadata=None
            )
        with pytest.raises(PaystackNotFound):
            await client.verify("dep-contract-unknown")
    async with client_for(paystack, secret_key="sk_test_wrong") as client:
        with pytest.raises(PaystackError):
            await client.verify("dep-contract-1")

    assert len(paystack.requests) == 9
    assert paystack.validation_errors == []


@pytest.mark.asyncio
async def test_injected_failures_conform_to_paystacks_openapi(paystack: PaystackStandIn) -> None:
    paystack.fail_next(1, status_code=503)
    async with client_for(paystack) as client:
        with pytest.raises(PaystackError):
            await client.verify("dep-anything")
    assert paystack.validation_errors == []


def test_a_request_without_amount_is_caught_by_the_openapi_validator(paystack: PaystackStandIn) -> None:
    response = raw_post(paystack, {"email": "ada@example.com", "reference": "dep-no-amount"})

    assert response.status_code == 500
    [error] = paystack.validation_errors
    assert error.startswith("request POST /transaction/initialize")
    assert "'amount' is a required property" in error
    with pytest.raises(KeyError):
        paystack.transaction("dep-no-amount")


@pytest.mark.parametrize("amount", ["5000", 50.5])
def test_an_amount_that_is_not_an_integer_is_caught_by_the_openapi_validator(
    paystack: PaystackStandIn, amount: object
) -> None:
    response = raw_post(paystack, {"email": "ada@example.com", "amount": amount, "reference": "dep-bad-amount"})

    assert response.status_code == 500
    assert any("is not of type 'integer'" in error for error in paystack.validation_errors)


def test_an_unsupported_currency_is_caught_by_the_openapi_validator(paystack: PaystackStandIn) -> None:
    response = raw_post(paystack, {"email": "ada@example.com", "amount": 5000, "currency": "EUR"})

    assert response.status_code == 500
    assert any("'EUR' is not one of" in error for error in paystack.validation_errors)


def test_an_answer_that_breaks_the_openapi_is_caught(
    paystack: PaystackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_verify_data = paystack_standin._verify_data

    def without_amount(transaction: paystack_standin.StandInTransaction) -> dict[str, Any]:
        data = real_verify_data(transaction)
        del data["amount"]
        return data

    monkeypatch.setattr(paystack_standin, "_verify_data", without_amount)
    raw_post(paystack, {"email": "ada@example.com", "amount": 5000, "reference": "dep-bad-answer"})
    response = httpx.get(
        f"{paystack.base_url}/transaction/verify/dep-bad-answer",
        headers={"Authorization": f"Bearer {paystack.secret_key}"},
    )

    assert response.status_code == 500
    [error] = paystack.validation_errors
    assert error.startswith("response GET /transaction/verify/dep-bad-answer")
    assert "'amount' is a required property" in error


def test_a_request_to_an_endpoint_paystack_does_not_have_is_caught(paystack: PaystackStandIn) -> None:
    response = httpx.post(
        f"{paystack.base_url}/transaction/initialise",
        json={"email": "ada@example.com", "amount": 5000},
        headers={"Authorization": f"Bearer {paystack.secret_key}"},
    )
    assert response.status_code == 500
    # openapi-core says OperationNotFound here, as `/transaction/{id}` matches the path for GET only.
    [error] = paystack.validation_errors
    assert "NotFound" in error
    assert "/transaction/initialise" in error


def test_a_request_without_credentials_is_answered_401_invalid_key(paystack: PaystackStandIn) -> None:
    response = httpx.get(f"{paystack.base_url}/transaction/verify/dep-x")

    assert response.status_code == 401
    assert response.json() == {"status": False, "message": "Invalid key"}


@pytest.mark.asyncio
async def test_charge_success_webhook_carries_the_transaction_as_initialised(paystack: PaystackStandIn) -> None:
    async with client_for(paystack) as client:
        await client.initialize(
            email="ada@example.com",
            amount=7500,
            reference="dep-webhook-1",
            currency="NGN",
            metadata={"user_id": "u-1"},
        )
    paystack.set_status("dep-webhook-1", "success")

    body = paystack.build_charge_success("dep-webhook-1")
    event = json.loads(body)
    template = json.loads(CHARGE_SUCCESS_PATH.read_text(encoding="utf-8"))

    assert event["event"] == "charge.success"
    data = event["data"]
    assert (data["reference"], data["status"], data["amount"], data["currency"]) == (
        "dep-webhook-1",
        "success",
        7500,
        "NGN",
    )
    assert data["customer"]["email"] == "ada@example.com"
    assert data["metadata"] == {"user_id": "u-1"}
    assert data["paid_at"] == paystack.transaction("dep-webhook-1").paid_at
    assert data.keys() == template["data"].keys()
    assert is_valid_signature(body, paystack.sign(body), paystack.secret_key)


def test_charge_success_webhook_can_claim_another_amount_or_currency(paystack: PaystackStandIn) -> None:
    data = json.loads(paystack.build_charge_success("dep-unknown", amount=1, currency="USD"))["data"]
    assert (data["reference"], data["amount"], data["currency"]) == ("dep-unknown", 1, "USD")


class _RecordingApp:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        message = await receive()
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen.append((scope["method"], scope["path"], headers, message.get("body", b"")))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"status":true}'})


@pytest.mark.asyncio
async def test_deliver_webhook_posts_the_raw_body_signed_to_the_apps_webhook_endpoint(
    paystack: PaystackStandIn,
) -> None:
    app = _RecordingApp()
    transport = httpx.ASGITransport(app=app)
    body = paystack.build_charge_success("dep-webhook-2", amount=100)

    signed = await paystack.deliver_webhook("http://wallet.test", body, transport=transport)
    await paystack.deliver_webhook("http://wallet.test", body, signature=None, transport=transport)
    await paystack.deliver_webhook("http://wallet.test", body, signature="0" * 128, transport=transport)

    assert signed.json() == {"status": True}
    (method, path, headers, sent), unsigned, forged = app.seen
    assert (method, path, sent) == ("POST", "/wallet/paystack/webhook", body)
    assert headers["x-paystack-signature"] == paystack.sign(body)
    assert "x-paystack-signature" not in unsigned[2]
    assert forged[2]["x-paystack-signature"] == "0" * 128


@pytest.mark.asyncio
async def test_faults_aimed_at_one_path_leave_other_traffic_alone(paystack: PaystackStandIn) -> None:
    paystack.fail_next(1, status_code=503, path="/transaction/verify/dep-target")
    async with client_for(paystack) as client:
        for reference in ("dep-target", "dep-bystander"):
            await client.initialize(email="ada@example.com", amount=5000, reference=reference, currency="NGN")
        assert (await client.verify("dep-bystander")).reference == "dep-bystander"
        with pytest.raises(PaystackError):
            await client.verify("dep-target")
        assert (await client.verify("dep-target")).reference == "dep-target"
    assert paystack.validation_errors == []


@pytest.mark.asyncio
async def test_a_stand_in_can_take_the_key_and_address_the_app_is_configured_with() -> None:
    from app.lib.infra import free_port

    port = free_port()
    with PaystackStandIn(secret_key="sk_test_configured_elsewhere", port=port) as standin:
        assert standin.base_url == f"http://127.0.0.1:{port}"
        async with client_for(standin, secret_key="sk_test_configured_elsewhere") as client:
            await client.initialize(email="ada@example.com", amount=100, reference="dep-port", currency="NGN")
        body = standin.build_charge_success("dep-port")
        assert is_valid_signature(body, standin.sign(body), "sk_test_configured_elsewhere")
