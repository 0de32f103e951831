"""The local Paystack sandbox run as `wallet up` runs it: `python -m app.sandbox`, a process of its own.

A small HTTP receiver stands in for the service's webhook endpoint, so what the sandbox sends can be checked
byte for byte: the signature over the raw body, the event, and its retries.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from app.domain.payments.paystack import is_valid_signature
from app.lib.infra import free_port
from app.sandbox import command_line
from app.sandbox.emulation import EVENTS_DIR as PACKAGED_EVENTS_DIR
from tests.support.paystack_standin import EVENTS_DIR
from tests.support.processes import PROJECT_ROOT, ServiceProcess
from tests.support.receiver import Receiver

SECRET_KEY = "sk_test_sandbox_suite_secret"
WEBHOOK_PATH = "/wallet/paystack/webhook"
HTML = {"Accept": "text/html,application/xhtml+xml"}
T = TypeVar("T")


def sandbox_env(**overrides: str) -> dict[str, str]:
    return {**os.environ, "WALLET_ENV_FILE": str(Path(os.devnull)), "APP_ENV": "development", **overrides}


def start_sandbox(service_url: str, *extra: str) -> tuple[ServiceProcess, str]:
    port = free_port()
    process = ServiceProcess(command_line(port, service_url, SECRET_KEY, *extra), sandbox_env(), "paystack-sandbox")
    process.wait_for_output("Paystack sandbox on")
    return process, f"http://127.0.0.1:{port}"


def eventually(check: Callable[[], T | None], timeout: float = 10) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            msg = f"not true within {timeout}s"
            raise AssertionError(msg)
        time.sleep(0.05)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as service:
        yield service


@pytest.fixture(scope="module")
def sandbox(receiver: Receiver) -> Iterator[str]:
    """A sandbox whose payouts succeed on their own after 0.3 s."""
    process, base_url = start_sandbox(receiver.base_url, "--payout-delay", "0.3")
    yield base_url
    process.stop()


@pytest.fixture(scope="module")
def manual_sandbox(receiver: Receiver) -> Iterator[str]:
    process, base_url = start_sandbox(receiver.base_url, "--payout-outcome", "manual")
    yield base_url
    process.stop()


def paystack(base_url: str) -> httpx.Client:
    """A client calling the sandbox the way the service calls Paystack."""
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {SECRET_KEY}"}, timeout=10)


def initialize(base_url: str, reference: str, **fields: Any) -> dict[str, Any]:
    with paystack(base_url) as client:
        body = {"email": "ada@example.com", "amount": 500_000, "reference": reference, **fields}
        response = client.post("/transaction/initialize", json=body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def verified_status(base_url: str, reference: str) -> str:
    with paystack(base_url) as client:
        response = client.get(f"/transaction/verify/{reference}")
    assert response.status_code == 200, response.text
    status: str = response.json()["data"]["status"]
    return status


def webhooks(receiver: Receiver, event: str, reference: str) -> list[dict[str, Any]]:
    """The signed-and-verified events of type `event` about `reference` the service received."""
    found = []
    for received in receiver.events(WEBHOOK_PATH):
        if (received.event["event"], received.event["data"]["reference"]) == (event, reference):
            assert is_valid_signature(received.body, received.headers.get("x-paystack-signature"), SECRET_KEY)
            found.append(received.event)
    return found


def initiate_payout(base_url: str, reference: str, amount: int = 250_000) -> dict[str, Any]:
    with paystack(base_url) as client:
        recipient = client.post(
            "/transferrecipient",
            json={
                "type": "nuban",
                "name": "Ada Lovelace",
                "account_number": "0123456789",
                "bank_code": "058",
                "currency": "NGN",
            },
        )
        assert recipient.status_code == 201, recipient.text
        body = {
            "source": "balance",
            "amount": amount,
            "recipient": recipient.json()["data"]["recipient_code"],
            "reference": reference,
            "reason": "rent",
        }
        initiated = client.post("/transfer", json=body)
    assert initiated.status_code == 200, initiated.text
    data: dict[str, Any] = initiated.json()["data"]
    return data


def transfer_status(base_url: str, reference: str) -> str:
    with paystack(base_url) as client:
        response = client.get(f"/transfer/verify/{reference}")
    assert response.status_code == 200, response.text
    status: str = response.json()["data"]["status"]
    return status


def test_paying_at_checkout_sends_a_signed_charge_success_and_verify_reports_success(
    sandbox: str, receiver: Receiver
) -> None:
    started = initialize(sandbox, "dep-sandbox-pay", metadata={"wallet": "w-1"})
    assert started["authorization_url"] == f"{sandbox}/checkout/{started['access_code']}"

    page = httpx.get(started["authorization_url"], headers=HTML)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert ">Pay</button>" in page.text
    assert ">Fail</button>" in page.text
    assert "dep-sandbox-pay" in page.text
    assert "ada@example.com" in page.text
    assert "NGN 5,000.00" in page.text
    assert "<script" not in page.text
    assert "http" not in page.text.replace(sandbox, "")  # nothing fetched from elsewhere

    paid = httpx.post(f"{started['authorization_url']}/pay")

    assert paid.status_code == 200
    assert paid.json() == {"reference": "dep-sandbox-pay", "status": "success"}
    [event] = eventually(lambda: webhooks(receiver, "charge.success", "dep-sandbox-pay"))
    assert (event["data"]["amount"], event["data"]["currency"]) == (500_000, "NGN")
    assert event["data"]["customer"]["email"] == "ada@example.com"
    assert event["data"]["metadata"] == {"wallet": "w-1"}
    assert verified_status(sandbox, "dep-sandbox-pay") == "success"


def test_paying_twice_does_not_send_a_second_webhook(sandbox: str, receiver: Receiver) -> None:
    started = initialize(sandbox, "dep-sandbox-twice")
    assert httpx.post(f"{started['authorization_url']}/pay").status_code == 200
    eventually(lambda: webhooks(receiver, "charge.success", "dep-sandbox-twice"))

    again = httpx.post(f"{started['authorization_url']}/pay")
    failed_after = httpx.post(f"{started['authorization_url']}/fail")

    assert again.status_code == failed_after.status_code == 409
    assert failed_after.json() == {"reference": "dep-sandbox-twice", "status": "success"}
    time.sleep(0.3)
    assert len(webhooks(receiver, "charge.success", "dep-sandbox-twice")) == 1
    assert verified_status(sandbox, "dep-sandbox-twice") == "success"


def test_a_busy_service_gets_the_webhook_again(sandbox: str, receiver: Receiver) -> None:
    started = initialize(sandbox, "dep-sandbox-busy")
    receiver.answer_next(503)

    paid = httpx.post(f"{started['authorization_url']}/pay")

    assert paid.status_code == 200
    events = eventually(lambda: (found := webhooks(receiver, "charge.success", "dep-sandbox-busy")) and len(found) >= 2)
    assert events


def test_paying_from_a_browser_returns_to_the_callback_url(sandbox: str) -> None:
    started = initialize(sandbox, "dep-sandbox-callback", callback_url="http://127.0.0.1:9/deposits/done?from=pay")

    paid = httpx.post(f"{started['authorization_url']}/pay", headers=HTML)

    assert paid.status_code == 303
    assert paid.headers["location"] == (
        "http://127.0.0.1:9/deposits/done?from=pay&trxref=dep-sandbox-callback&reference=dep-sandbox-callback"
    )


def test_paying_from_a_browser_without_a_callback_shows_a_confirmation(sandbox: str) -> None:
    started = initialize(sandbox, "dep-sandbox-confirm")

    paid = httpx.post(f"{started['authorization_url']}/pay", headers=HTML)

    assert paid.status_code == 200
    assert "Payment success" in paid.text
    assert "accepted the webhook" in paid.text


def test_failing_at_checkout_sends_no_webhook_and_verify_reports_failed(sandbox: str, receiver: Receiver) -> None:
    started = initialize(sandbox, "dep-sandbox-fail")

    failed = httpx.post(f"{started['authorization_url']}/fail")

    assert failed.status_code == 200
    assert failed.json() == {"reference": "dep-sandbox-fail", "status": "failed"}
    assert verified_status(sandbox, "dep-sandbox-fail") == "failed"
    time.sleep(0.5)
    assert [r for r in receiver.received if b"dep-sandbox-fail" in r.body] == []
    page = httpx.get(started["authorization_url"], headers=HTML)
    assert ">Pay</button>" not in page.text


def test_an_unknown_checkout_is_404(sandbox: str) -> None:
    assert httpx.get(f"{sandbox}/checkout/0123456789abcdef", headers=HTML).status_code == 404
    assert httpx.post(f"{sandbox}/checkout/0123456789abcdef/pay").status_code == 404


def test_a_payout_finishes_on_its_own_with_the_chosen_outcome(sandbox: str, receiver: Receiver) -> None:
    initiated = initiate_payout(sandbox, "wd-sandbox-auto")
    assert initiated["status"] == "pending"

    [event] = eventually(lambda: webhooks(receiver, "transfer.success", "wd-sandbox-auto"))

    assert event["data"]["status"] == "success"
    assert (event["data"]["amount"], event["data"]["transfer_code"]) == (250_000, initiated["transfer_code"])
    assert event["data"]["recipient"]["details"]["account_number"] == "0123456789"
    assert transfer_status(sandbox, "wd-sandbox-auto") == "success"


@pytest.mark.parametrize("outcome", ["failed", "reversed"])
def test_payouts_can_be_set_to_fail_or_be_reversed(receiver: Receiver, outcome: str) -> None:
    process, base_url = start_sandbox(receiver.base_url, "--payout-outcome", outcome, "--payout-delay", "0.2")
    try:
        reference = f"wd-sandbox-{outcome}"
        initiate_payout(base_url, reference)

        [event] = eventually(lambda: webhooks(receiver, f"transfer.{outcome}", reference))

        assert event["data"]["status"] == outcome
        assert event["data"]["gateway_response"].startswith("Sandbox:")
        assert transfer_status(base_url, reference) == outcome
    finally:
        process.stop()


def test_a_manual_payout_waits_for_its_outcome_to_be_chosen_on_the_page(
    manual_sandbox: str, receiver: Receiver
) -> None:
    initiate_payout(manual_sandbox, "wd-sandbox-manual")
    time.sleep(1.3)  # longer than the automatic outcome's delay
    assert transfer_status(manual_sandbox, "wd-sandbox-manual") == "pending"
    assert [r for r in receiver.received if b"wd-sandbox-manual" in r.body] == []

    page = httpx.get(f"{manual_sandbox}/sandbox/transfers", headers=HTML)
    assert page.status_code == 200
    assert "wd-sandbox-manual" in page.text
    assert 'action="/sandbox/transfers/wd-sandbox-manual/failed"' in page.text
    listed = httpx.get(f"{manual_sandbox}/sandbox/transfers").json()["transfers"]
    assert {"reference": "wd-sandbox-manual", "status": "pending", "amount": 250_000} in listed

    chosen = httpx.post(f"{manual_sandbox}/sandbox/transfers/wd-sandbox-manual/failed")

    assert chosen.status_code == 200
    assert chosen.json() == {"reference": "wd-sandbox-manual", "status": "failed"}
    [event] = eventually(lambda: webhooks(receiver, "transfer.failed", "wd-sandbox-manual"))
    assert event["data"]["status"] == "failed"
    assert transfer_status(manual_sandbox, "wd-sandbox-manual") == "failed"
    again = httpx.post(f"{manual_sandbox}/sandbox/transfers/wd-sandbox-manual/success")
    assert again.status_code == 409
    assert again.json() == {"reference": "wd-sandbox-manual", "status": "failed"}


def test_a_manual_payout_chosen_from_a_browser_goes_back_to_the_list(manual_sandbox: str, receiver: Receiver) -> None:
    initiate_payout(manual_sandbox, "wd-sandbox-browser")

    chosen = httpx.post(f"{manual_sandbox}/sandbox/transfers/wd-sandbox-browser/success", headers=HTML)

    assert chosen.status_code == 303
    assert chosen.headers["location"] == "/sandbox/transfers"
    eventually(lambda: webhooks(receiver, "transfer.success", "wd-sandbox-browser"))
    assert transfer_status(manual_sandbox, "wd-sandbox-browser") == "success"


def test_the_sandbox_refuses_to_start_in_production() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.sandbox", "--port", str(free_port()), "--secret-key", SECRET_KEY],
        env=sandbox_env(APP_ENV="production"),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == ["the Paystack sandbox refuses to start with APP_ENV=production"]


def test_the_packaged_webhook_examples_are_paystacks_own() -> None:
    packaged = sorted(PACKAGED_EVENTS_DIR.glob("*.json"))
    assert packaged
    for path in packaged:
        assert json.loads(path.read_bytes()) == json.loads((EVENTS_DIR / path.name).read_bytes()), path.name


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_the_sandbox_stops_cleanly_on_sigterm_and_sigint(receiver: Receiver, stop_signal: signal.Signals) -> None:
    process, _ = start_sandbox(receiver.base_url)

    process.process.send_signal(stop_signal)

    assert process.process.wait(timeout=10) == 0
    process.stop()
