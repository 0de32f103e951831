"""The stand-in speaks Paystack's official OpenAPI description, and its webhooks look like Paystack's."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from app.config import Settings
from app.domain.payments.paystack import PaystackClient, PaystackError, PaystackNotFound, is_valid_signature
from tests.support import paystack_standin
from tests.support.paystack_standin import CHARGE_SUCCESS_PATH, EVENTS_DIR, TRANSFER_STATUSES, PaystackStandIn

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


# Payouts: the service resolves the account, creates a transfer recipient, initiates a transfer and verifies it.
# Its client methods for these endpoints are written elsewhere, so these tests speak plain HTTP.

ACCOUNT = "0123456789"
GTB = "058"


def payout_client(standin: PaystackStandIn, *, timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(
        base_url=standin.base_url,
        headers={"Authorization": f"Bearer {standin.secret_key}"},
        timeout=timeout,
    )


def withdrawal_reference(n: int) -> str:
    return f"wd-{n:032x}"


def create_recipient(client: httpx.Client, account_number: str = ACCOUNT, bank_code: str = GTB) -> httpx.Response:
    return client.post(
        "/transferrecipient",
        json={
            "type": "nuban",
            "name": "Ada Lovelace",
            "account_number": account_number,
            "bank_code": bank_code,
            "currency": "NGN",
        },
    )


def initiate(client: httpx.Client, recipient_code: str, reference: str, amount: int = 50_000) -> httpx.Response:
    return client.post(
        "/transfer",
        json={
            "source": "balance",
            "amount": amount,
            "recipient": recipient_code,
            "reference": reference,
            "reason": "rent",
            "currency": "NGN",
        },
    )


def a_recipient(client: httpx.Client) -> str:
    response = create_recipient(client)
    assert response.status_code == 201, response.text
    return response.json()["data"]["recipient_code"]


def test_a_full_resolve_recipient_transfer_verify_cycle_conforms_to_paystacks_openapi(
    paystack: PaystackStandIn,
) -> None:
    paystack.account_names[(GTB, ACCOUNT)] = "ADA LOVELACE"
    reference = withdrawal_reference(1)
    with payout_client(paystack) as client:
        resolved = client.get("/bank/resolve", params={"account_number": ACCOUNT, "bank_code": GTB})
        recipient = create_recipient(client)
        recipient_code = recipient.json()["data"]["recipient_code"]
        initiated = initiate(client, recipient_code, reference)
        verified: dict[str, httpx.Response] = {}
        for status in sorted(TRANSFER_STATUSES):
            paystack.set_transfer_status(reference, status)
            verified[status] = client.get(f"/transfer/verify/{reference}")

    assert resolved.status_code == 200
    # The leading zero survives, although the spec types `account_number` as an integer.
    assert resolved.json()["data"] == {"account_number": ACCOUNT, "account_name": "ADA LOVELACE", "bank_id": 4}
    assert recipient.status_code == 201
    assert recipient_code.startswith("RCP_")
    assert recipient.json()["data"]["details"] == {
        "authorization_code": None,
        "account_number": ACCOUNT,
        "account_name": "ADA LOVELACE",
        "bank_code": GTB,
        "bank_name": "Guaranty Trust Bank",
    }
    assert initiated.status_code == 200
    assert initiated.json()["message"] == "Transfer has been queued"
    transfer = initiated.json()["data"]
    assert (transfer["reference"], transfer["amount"], transfer["currency"], transfer["status"]) == (
        reference,
        50_000,
        "NGN",
        "pending",
    )
    assert transfer["transfer_code"] == paystack.transfer(reference).transfer_code
    for status, response in verified.items():
        assert response.status_code == 200
        data = response.json()["data"]
        assert (data["reference"], data["status"], data["transfer_code"]) == (
            reference,
            status,
            transfer["transfer_code"],
        )
        assert data["recipient"]["recipient_code"] == recipient_code
    assert verified["success"].json()["data"]["transferred_at"] is not None
    assert paystack.validation_errors == []


def test_verifying_an_unknown_transfer_is_answered_404(paystack: PaystackStandIn) -> None:
    with payout_client(paystack) as client:
        response = client.get(f"/transfer/verify/{withdrawal_reference(404)}")

    assert response.status_code == 404
    assert response.json() == {"status": False, "message": "Transfer not found"}
    with pytest.raises(KeyError):
        paystack.transfer(withdrawal_reference(404))
    assert paystack.validation_errors == []


def test_the_same_account_gets_the_same_recipient_code_back(paystack: PaystackStandIn) -> None:
    with payout_client(paystack) as client:
        first = create_recipient(client)
        again = create_recipient(client)
        other = create_recipient(client, account_number="9876543210")

    assert first.status_code == again.status_code == other.status_code == 201
    assert again.json()["data"]["recipient_code"] == first.json()["data"]["recipient_code"]
    assert other.json()["data"]["recipient_code"] != first.json()["data"]["recipient_code"]
    assert paystack.recipient_count() == 2
    assert paystack.validation_errors == []


def test_a_second_initiation_with_the_same_reference_is_refused_and_creates_nothing(
    paystack: PaystackStandIn,
) -> None:
    reference = withdrawal_reference(2)
    with payout_client(paystack) as client:
        recipient_code = a_recipient(client)
        first = initiate(client, recipient_code, reference)
        paystack.set_next_transfer_answers("success")
        again = initiate(client, recipient_code, reference, amount=99_999)
        after = initiate(client, recipient_code, withdrawal_reference(3))

    assert first.status_code == 200
    assert again.status_code == 400
    assert again.json()["status"] is False
    assert again.json()["message"] == "Transfer reference already exists"
    transfer = paystack.transfer(reference)
    assert (transfer.transfer_code, transfer.amount, transfer.status) == (
        first.json()["data"]["transfer_code"],
        50_000,
        "pending",
    )
    # The refused initiation did not use up the queued answer.
    assert after.json()["data"]["status"] == "success"
    assert paystack.transfer_initiations(reference) == 2
    assert paystack.transfer_initiations(withdrawal_reference(3)) == 1
    assert paystack.validation_errors == []


def test_a_lost_initiation_answer_leaves_a_pending_transfer_that_verify_finds(paystack: PaystackStandIn) -> None:
    reference = withdrawal_reference(4)
    with payout_client(paystack) as client:
        recipient_code = a_recipient(client)
    paystack.delay_next(1, 2.0, after_processing=True, path="/transfer")

    with payout_client(paystack, timeout=0.5) as client, pytest.raises(httpx.TimeoutException):
        initiate(client, recipient_code, reference)
    with payout_client(paystack) as client:
        verified = client.get(f"/transfer/verify/{reference}")

    assert verified.status_code == 200
    assert (verified.json()["data"]["reference"], verified.json()["data"]["status"]) == (reference, "pending")
    assert paystack.transfer_initiations(reference) == 1
    assert paystack.validation_errors == []


def test_an_initiation_failed_by_fail_next_creates_nothing_and_still_counts(paystack: PaystackStandIn) -> None:
    reference = withdrawal_reference(5)
    paystack.fail_next(1, status_code=503, path="/transfer")
    with payout_client(paystack) as client:
        recipient_code = a_recipient(client)
        failed = initiate(client, recipient_code, reference)
        with pytest.raises(KeyError):
            paystack.transfer(reference)
        retried = initiate(client, recipient_code, reference)

    assert (failed.status_code, retried.status_code) == (503, 200)
    assert paystack.transfer(reference).status == "pending"
    assert paystack.transfer_initiations(reference) == 2
    assert paystack.validation_errors == []


@pytest.mark.parametrize(
    ("answer", "status_code", "message", "created_status"),
    [
        ("otp", 200, "Transfer requires OTP to continue", "otp"),
        ("failed", 200, "Transfer has been queued", "failed"),
        ("success", 200, "Transfer has been queued", "success"),
        ("pending", 200, "Transfer has been queued", "pending"),
        ("insufficient_balance", 400, "Your balance is not enough to fulfil this request", None),
    ],
)
def test_each_initiation_answer_is_answered_as_paystack_does(
    paystack: PaystackStandIn, answer: str, status_code: int, message: str, created_status: str | None
) -> None:
    reference = withdrawal_reference(6)
    paystack.set_next_transfer_answers(answer)
    with payout_client(paystack) as client:
        response = initiate(client, a_recipient(client), reference)

    assert response.status_code == status_code
    assert response.json()["message"] == message
    if created_status is None:
        assert response.json()["status"] is False
        with pytest.raises(KeyError):
            paystack.transfer(reference)
    else:
        assert response.json()["data"]["status"] == created_status
        assert paystack.transfer(reference).status == created_status
    assert paystack.validation_errors == []


def test_initiation_answers_are_used_in_order_then_the_default(paystack: PaystackStandIn) -> None:
    paystack.set_next_transfer_answers("insufficient_balance", "otp")
    with payout_client(paystack) as client:
        recipient_code = a_recipient(client)
        statuses = []
        for n in range(3):
            response = initiate(client, recipient_code, withdrawal_reference(10 + n))
            statuses.append(response.json()["data"]["status"] if response.status_code == 200 else response.status_code)
        paystack.default_transfer_answer = "success"
        statuses.append(initiate(client, recipient_code, withdrawal_reference(13)).json()["data"]["status"])

    assert statuses == [400, "otp", "pending", "success"]
    assert paystack.validation_errors == []


def test_unknown_answers_and_statuses_are_refused(paystack: PaystackStandIn) -> None:
    with pytest.raises(ValueError, match="unknown transfer answers"):
        paystack.set_next_transfer_answers("pending", "queued")
    with pytest.raises(ValueError, match="unknown transfer answers"):
        paystack.default_transfer_answer = "ongoing"
    with pytest.raises(ValueError, match="unknown Paystack transfer status"):
        paystack.set_transfer_status(withdrawal_reference(7), "ongoing")
    with pytest.raises(ValueError, match="unknown transfer event"):
        paystack.build_transfer_event(withdrawal_reference(7), "transfer.pending")
    assert paystack.transfer_answers == []


@pytest.mark.parametrize(
    ("account_number", "bank_code"),
    [
        ("1111111111", GTB),  # listed in `unresolvable_accounts`
        ("012345678", GTB),  # nine digits
        ("01234567890", GTB),  # eleven digits
        (ACCOUNT, "000"),  # no such bank
        (ACCOUNT, "999"),  # a deleted bank
    ],
)
def test_an_unresolvable_account_is_answered_422(
    paystack: PaystackStandIn, account_number: str, bank_code: str
) -> None:
    paystack.unresolvable_accounts.add("1111111111")
    with payout_client(paystack) as client:
        response = client.get("/bank/resolve", params={"account_number": account_number, "bank_code": bank_code})

    assert response.status_code == 422
    assert response.json()["status"] is False
    assert response.json()["message"] == "Could not resolve account name. Check parameters or try again."
    assert response.json()["type"] == "validation_error"
    assert paystack.validation_errors == []


def test_an_account_without_a_given_name_resolves_to_a_name_derived_from_its_number(
    paystack: PaystackStandIn,
) -> None:
    with payout_client(paystack) as client:
        response = client.get("/bank/resolve", params={"account_number": "0000004321", "bank_code": "011"})

    assert response.json()["data"] == {
        "account_number": "0000004321",
        "account_name": "STAND-IN ACCOUNT 4321",
        "bank_id": 9,
    }
    assert paystack.validation_errors == []


def test_a_refused_recipient_account_is_answered_400_and_creates_nothing(paystack: PaystackStandIn) -> None:
    paystack.refused_recipient_accounts.add(ACCOUNT)
    with payout_client(paystack) as client:
        refused = create_recipient(client)
        unknown_bank = create_recipient(client, account_number="9876543210", bank_code="000")

    assert refused.status_code == 400
    assert (refused.json()["status"], refused.json()["message"]) == (False, "Account number is invalid")
    assert unknown_bank.status_code == 400
    assert paystack.recipient_count() == 0
    assert paystack.validation_errors == []


def test_a_transfer_to_an_unknown_recipient_is_refused_and_creates_nothing(paystack: PaystackStandIn) -> None:
    reference = withdrawal_reference(8)
    with payout_client(paystack) as client:
        response = initiate(client, "RCP_doesnotexist1", reference)

    assert response.status_code == 400
    assert response.json()["message"] == "Recipient specified is invalid"
    with pytest.raises(KeyError):
        paystack.transfer(reference)
    assert paystack.transfer_initiations(reference) == 1
    assert paystack.validation_errors == []


def test_a_transfer_answer_that_breaks_the_openapi_is_caught(
    paystack: PaystackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_transfer_data = paystack_standin._transfer_data

    def without_transfer_code(transfer: paystack_standin.StandInTransfer) -> dict[str, Any]:
        data = real_transfer_data(transfer)
        del data["transfer_code"]
        return data

    monkeypatch.setattr(paystack_standin, "_transfer_data", without_transfer_code)
    reference = withdrawal_reference(9)
    with payout_client(paystack) as client:
        initiated = initiate(client, a_recipient(client), reference)
        verified = client.get(f"/transfer/verify/{reference}")

    assert (initiated.status_code, verified.status_code) == (500, 500)
    initiate_error, verify_error = paystack.validation_errors
    assert initiate_error.startswith("response POST /transfer:")
    assert verify_error.startswith(f"response GET /transfer/verify/{reference}:")
    assert "'transfer_code' is a required property" in initiate_error
    assert "'transfer_code' is a required property" in verify_error


def test_reset_forgets_payout_state_and_knobs(paystack: PaystackStandIn) -> None:
    reference = withdrawal_reference(20)
    with payout_client(paystack) as client:
        initiate(client, a_recipient(client), reference)
    paystack.account_names[(GTB, ACCOUNT)] = "ADA"
    paystack.unresolvable_accounts.add(ACCOUNT)
    paystack.refused_recipient_accounts.add(ACCOUNT)
    paystack.set_next_transfer_answers("otp")
    paystack.default_transfer_answer = "failed"
    banks = list(paystack.banks)

    paystack.reset()

    with pytest.raises(KeyError):
        paystack.transfer(reference)
    assert paystack.recipient_count() == 0
    assert paystack.transfer_initiations(reference) == 0
    assert (paystack.account_names, paystack.unresolvable_accounts, paystack.refused_recipient_accounts) == (
        {},
        set(),
        set(),
    )
    assert (paystack.transfer_answers, paystack.default_transfer_answer) == ([], "pending")
    assert paystack.banks == banks


@pytest.mark.parametrize(
    ("event_type", "status"),
    [("transfer.success", "success"), ("transfer.failed", "failed"), ("transfer.reversed", "reversed")],
)
def test_transfer_events_carry_the_transfer_and_a_status_matching_the_event(
    paystack: PaystackStandIn, event_type: str, status: str
) -> None:
    reference = withdrawal_reference(30)
    with payout_client(paystack) as client:
        recipient_code = a_recipient(client)
        initiate(client, recipient_code, reference, amount=75_000)
    transfer = paystack.transfer(reference)

    body = paystack.build_transfer_event(reference, event_type, reason="Account is dormant")
    event = json.loads(body)
    template = json.loads((EVENTS_DIR / f"{event_type}.json").read_text(encoding="utf-8"))

    assert event["event"] == event_type
    data = event["data"]
    assert (data["reference"], data["amount"], data["currency"], data["transfer_code"], data["id"]) == (
        reference,
        75_000,
        "NGN",
        transfer.transfer_code,
        transfer.id,
    )
    assert (data["status"], data["domain"], data["reason"], data["gateway_response"]) == (
        status,
        "test",
        "rent",
        "Account is dormant",
    )
    assert data["recipient"]["recipient_code"] == recipient_code
    assert data["recipient"]["details"]["account_number"] == ACCOUNT
    assert set(template["data"]) <= set(data)
    assert is_valid_signature(body, paystack.sign(body), paystack.secret_key)
    # Building an event changes nothing: verify still reports what the stand-in holds.
    assert paystack.transfer(reference).status == "pending"


def test_a_transfer_event_for_an_unknown_reference_is_the_example_with_that_reference(
    paystack: PaystackStandIn,
) -> None:
    template = json.loads((EVENTS_DIR / "transfer.failed.json").read_text(encoding="utf-8"))

    data = json.loads(paystack.build_transfer_event("wd-unknown", "transfer.failed"))["data"]

    assert data["reference"] == "wd-unknown"
    assert data == template["data"] | {"reference": "wd-unknown"}
