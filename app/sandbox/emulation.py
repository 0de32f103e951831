"""Paystack's API emulated on loopback: the one emulation behind the local sandbox and the tests' stand-in.

It answers `POST /transaction/initialize`, `GET /transaction/verify/{reference}` and `GET /bank` the way Paystack
does, and the payout path too: `GET /bank/resolve`, `POST /transferrecipient`, `POST /transfer` and
`GET /transfer/verify/{reference}`. It keeps each transaction's, recipient's and transfer's state, can be told to
answer 5xx, slowly, or with Paystack's refusals (unresolvable account, insufficient balance, OTP required, ...),
and builds, signs and delivers `charge.success` and `transfer.*` webhooks.

Beside the API it serves what a person would click through at Paystack: a checkout page per transaction
(`/checkout/<access_code>`, Pay or Fail) and, when payouts are settled by hand, `/sandbox/transfers`. Given an
OpenAPI description (`openapi_path`), every API request and answer is validated against it; a violation is
recorded in `validation_errors` and answered 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import re
import secrets
import socket
import string
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Self, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import httpx
import uvicorn

from app.domain.payments.paystack import sign_webhook
from app.sandbox import pages

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine
    from types import TracebackType

logger = logging.getLogger(__name__)

EVENTS_DIR: Final = Path(__file__).parent / "events"
"""Paystack's documented example webhooks, which the sandbox's webhooks are built from."""

TRANSACTION_STATUSES: Final = frozenset(
    {"success", "failed", "abandoned", "ongoing", "pending", "processing", "queued", "reversed"}
)
_GATEWAY_RESPONSES: Final = {
    "success": "Successful",
    "failed": "Declined",
    "abandoned": "The transaction was not completed",
    "reversed": "Reversed",
}
CHARGE_FINAL_STATUSES: Final = frozenset({"success", "failed", "reversed"})
"""Statuses after which the checkout page no longer takes a payment."""

TRANSFER_STATUSES: Final = frozenset(
    {"pending", "success", "failed", "otp", "abandoned", "reversed", "blocked", "rejected", "received"}
)
TRANSFER_ANSWERS: Final = frozenset({"pending", "success", "failed", "otp", "insufficient_balance"})
"""What `POST /transfer` may be told to answer (see `PaystackSandbox.set_next_transfer_answers`)."""
TRANSFER_EVENTS: Final = {"transfer.success": "success", "transfer.failed": "failed", "transfer.reversed": "reversed"}
"""The transfer webhooks `build_transfer_event` builds, with the `data.status` each carries."""

PAYOUT_OUTCOMES: Final = ("success", "failed", "reversed", "manual")
"""How the sandbox finishes a transfer answered `pending`: with that outcome, or `manual` (a person chooses each
one on `/sandbox/transfers`; nothing happens on its own)."""
TRANSFER_OUTCOMES: Final = ("success", "failed", "reversed")
"""The outcomes a pending transfer can be given, each sent as the `transfer.<outcome>` webhook."""
_OPEN_TRANSFER_STATUSES: Final = frozenset({"pending", "received"})
_OUTCOME_REASONS: Final = {
    "failed": "Sandbox: the beneficiary bank declined the transfer",
    "reversed": "Sandbox: the beneficiary bank returned the transfer",
}
"""What a failed or reversed transfer's webhook gives as `gateway_response`: the service shows it as the reason."""

WEBHOOK_PATH: Final = "/wallet/paystack/webhook"
WEBHOOK_RETRY_DELAYS: Final = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
"""Seconds between delivery attempts: a service restarting or busy for half a minute still gets the event."""
WEBHOOK_ATTEMPT_TIMEOUT: Final = 5.0
PAGE_WAIT_SECONDS: Final = 2.0
"""How long the Pay button waits for the webhook's first answers before showing the page anyway."""

_INTEGRATION_ID: Final = 100_043
_ACCOUNT_NUMBER: Final = re.compile(r"[0-9]{10}")
"""A NUBAN: exactly ten ASCII digits (`str.isdigit` would also accept other scripts' digits)."""
_CHECKOUT_PATH: Final = re.compile(r"/checkout/(?P<access_code>[0-9a-f]+)(?:/(?P<action>pay|fail))?")
_TRANSFER_OUTCOME_PATH: Final = re.compile(r"/sandbox/transfers/(?P<reference>[^/]+)/(?P<outcome>[a-z]+)")


class RecordedRequest(NamedTuple):
    """One API request the sandbox received: method, path and JSON body (None when absent or not JSON)."""

    method: str
    path: str
    json: Any


@dataclass
class SandboxTransaction:
    """The sandbox's state of one transaction."""

    id: int
    reference: str
    email: str
    amount: int
    requested_amount: int
    currency: str
    status: str
    metadata: Any
    callback_url: str | None
    access_code: str
    created_at: str
    customer_id: int
    customer_code: str
    paid_at: str | None = None
    customer_name: tuple[str | None, str | None] = (None, None)
    """What the customer typed at checkout (first and last name), echoed in verify answers and webhooks."""


@dataclass
class SandboxTransfer:
    """The sandbox's state of one transfer (a payout from the balance to a transfer recipient)."""

    id: int
    transfer_code: str
    reference: str
    amount: int
    currency: str
    recipient_code: str
    reason: str
    status: str
    created_at: str
    updated_at: str
    transferred_at: str | None = None
    """When the money left, for a transfer that reached `success` (or `reversed`: it left and came back)."""


@dataclass
class _Answer:
    status: int
    body: dict[str, Any]
    invalid: bool = False
    """The sandbox's own answer to a validation failure, itself exempt from validation."""


@dataclass
class _Page:
    """An answer to a person's browser (or curl) rather than to an API client: never validated nor recorded."""

    status: int
    body: bytes
    content_type: str = "application/json"
    location: str | None = None


@dataclass
class _Request:
    method: str
    path: str
    body: bytes
    query: list[tuple[str, str]]
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str:
        return next((value for key, value in self.headers if key.lower() == name), "")

    def query_value(self, name: str, default: str) -> str:
        return next((value for key, value in self.query if key == name), default)


class Signature(Enum):
    """What `deliver_webhook` sends as `x-paystack-signature` when not given a string."""

    VALID = "valid"
    """Paystack's signature of the body with the sandbox's secret key."""


SANDBOX_BANKS: tuple[tuple[int, str, str, str], ...] = (
    (9, "First Bank of Nigeria", "011", "NGN"),
    (1, "Access Bank", "044", "NGN"),
    (4, "Guaranty Trust Bank", "058", "NGN"),
    (21, "Zenith Bank", "057", "NGN"),
    (301, "Deleted Bank", "999", "NGN"),
    (28, "Absa Bank Ghana", "030100", "GHS"),
)
"""(id, name, code, currency) of the banks the sandbox lists; id 301 is flagged deleted, like Paystack's."""


def _bank(bank_id: int, name: str, code: str, currency: str) -> dict[str, Any]:
    country = {"NGN": "Nigeria", "GHS": "Ghana"}[currency]
    return {
        "name": name,
        "slug": name.lower().replace(" ", "-"),
        "code": code,
        "longcode": code,
        "gateway": None,
        "pay_with_bank": False,
        "supports_transfer": True,
        "available_for_direct_debit": False,
        "active": True,
        "is_deleted": bank_id == 301,
        "country": country,
        "currency": currency,
        "type": "nuban" if currency == "NGN" else "ghipps",
        "id": bank_id,
        "createdAt": "2016-07-14T10:04:29.000Z",
        "updatedAt": "2024-02-15T07:24:50.000Z",
    }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _paystack_code(prefix: str) -> str:
    """A code in Paystack's style, e.g. `RCP_1a2b3c4d5e6f7g8`: a prefix and 15 lowercase alphanumerics."""
    alphabet = string.ascii_lowercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(15))


def _example_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return event


def _refusal(status: int, message: str, next_step: str, error_type: str = "validation_error") -> _Answer:
    """A Paystack error answer in the spec's `Error` shape.

    Paystack also sends a `code` (e.g. `invalid_bank_code`), but the spec's `Error.code` is an enum of error
    *types* (validation_error, ...) that real codes break, so it is left out. The 4xx answers of the payout
    paths fall under `default`, which declares no content, so openapi-core checks nothing in them: the shape
    is kept by hand, for clients that read `message` and `type`.
    """
    return _Answer(
        status,
        {"status": False, "message": message, "meta": {"nextStep": next_step}, "type": error_type},
    )


def _json_page(status: int, body: dict[str, Any]) -> _Page:
    return _Page(status, json.dumps(body, separators=(",", ":")).encode())


class PaystackSandbox:
    """Paystack's API on `127.0.0.1`, with its checkout and payout pages, and controls for tests.

    Example:
        ```python
        with PaystackSandbox(secret_key=key, service_url="http://127.0.0.1:8000") as sandbox:
            ...  # run the service with PAYSTACK_BASE_URL=sandbox.base_url, PAYSTACK_SECRET_KEY=key
        ```

    Attributes:
        base_url: `http://127.0.0.1:<port>`, to use as `PAYSTACK_BASE_URL` (set by `start()`).
        secret_key: The only key the sandbox accepts, and the key its webhooks are signed with.
        service_url: The service that receives the sandbox's own webhooks (at `/wallet/paystack/webhook`), or
            None to send none.
        requests: Every API request received, in order.
        validation_errors: Every request or answer that broke Paystack's OpenAPI description.
    """

    unlisted_account_name = "SANDBOX ACCOUNT"
    """The name `GET /bank/resolve` gives an account not in `account_names`, before its last 4 digits."""
    default_key_prefix = "sk_test_sandbox_"

    def __init__(
        self,
        *,
        secret_key: str | None = None,
        port: int | None = None,
        service_url: str | None = None,
        payout_outcome: str = "success",
        payout_delay: float = 1.0,
        initial_status: str = "ongoing",
        checkout_url: str | None = None,
        openapi_path: Path | None = None,
    ) -> None:
        """Prepare a sandbox; nothing listens until `start()`.

        Args:
            secret_key: The key to accept and sign webhooks with (the service's `PAYSTACK_SECRET_KEY`); a random
                one by default.
            port: The loopback port to serve on; a free one by default.
            service_url: The service's base URL, where `charge.success` (on Pay) and transfer webhooks go.
            payout_outcome: One of `PAYOUT_OUTCOMES`: what a transfer answered `pending` becomes
                `payout_delay` seconds later (with its webhook), or `manual` to leave it to `/sandbox/transfers`.
            payout_delay: Seconds between a transfer's initiation and its automatic outcome.
            initial_status: `data.status` of a transaction right after initialisation. Real Paystack reports
                `abandoned` until the customer acts; `ongoing` (the default) reads as "not final yet".
            checkout_url: Where `authorization_url`s point, followed by `/<access_code>`; by default the
                sandbox's own checkout page.
            openapi_path: Paystack's OpenAPI description, to validate every API request and answer against
                (needs the `openapi-core` development dependency); no validation by default.

        Raises:
            ValueError: For an unknown status or payout outcome.
        """
        if initial_status not in TRANSACTION_STATUSES:
            msg = f"unknown Paystack status {initial_status!r}"
            raise ValueError(msg)
        if payout_outcome not in PAYOUT_OUTCOMES:
            msg = f"unknown payout outcome {payout_outcome!r}: expected one of {', '.join(PAYOUT_OUTCOMES)}"
            raise ValueError(msg)
        self.secret_key = secret_key or f"{self.default_key_prefix}{secrets.token_hex(16)}"
        self.service_url = service_url.rstrip("/") if service_url else None
        self.payout_outcome = payout_outcome
        self.payout_delay = payout_delay
        self._port = port or 0
        self.base_url = ""
        self.requests: list[RecordedRequest] = []
        self.validation_errors: list[str] = []
        self._initial_status = initial_status
        self._checkout_url = checkout_url.rstrip("/") if checkout_url else None
        self._openapi_path = openapi_path
        self._lock = threading.Lock()
        self._transactions: dict[str, SandboxTransaction] = {}
        self._customers: dict[str, int] = {}
        self._next_id = 1_000_000
        self._failures: list[tuple[int, bool, str | None]] = []
        self._delays: list[tuple[float, bool, str | None]] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        self.banks: list[dict[str, Any]] = [_bank(*bank) for bank in SANDBOX_BANKS]
        """What `GET /bank` lists, and the banks `GET /bank/resolve` and recipients know; a test may change it."""
        self.account_names: dict[tuple[str, str], str] = {}
        """(bank code, account number) -> the name `GET /bank/resolve` reports; `unlisted_account_name` and the
        last 4 digits for an account not listed."""
        self.unresolvable_accounts: set[str] = set()
        """Account numbers `GET /bank/resolve` cannot resolve (422), as for a closed or mistyped account."""
        self.refused_recipient_accounts: set[str] = set()
        """Account numbers `POST /transferrecipient` refuses with 400 `Account number is invalid`."""
        self.recipients: dict[str, dict[str, Any]] = {}
        """Recipient code -> the recipient as `POST /transferrecipient` answered it."""
        self.transfer_answers: list[str] = []
        """What the next initiations answer, one each, first first (see `set_next_transfer_answers`)."""
        self._default_transfer_answer = "pending"
        self._transfers: dict[str, SandboxTransfer] = {}

    # Lifecycle

    def start(self) -> Self:
        """Serve on loopback until `stop()` (loading the OpenAPI description first when validating).

        Returns:
            The sandbox itself, with `base_url` set.

        Raises:
            RuntimeError: If the server did not come up within 10 seconds.
        """
        if self._server is not None:
            return self
        if self._openapi_path is not None:
            from app.sandbox.validation import paystack_openapi

            # Loaded before serving, so the first request is not slowed past a short client timeout.
            paystack_openapi(self._openapi_path)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        port = sock.getsockname()[1]
        self._release = asyncio.Event()
        config = uvicorn.Config(
            self._asgi,
            interface="asgi3",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="paystack-sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                msg = "the Paystack sandbox did not start"
                raise RuntimeError(msg)
            time.sleep(0.01)
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        """Stop serving; requests still held by `delay_next` are released at once, pending webhooks dropped."""
        if self._server is None or self._thread is None:
            return
        self._release_held_requests()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget transactions, recipients, transfers, recorded requests, validation errors, pending faults and
        the payout knobs (`banks` stays as it is); release held requests.

        Lets one running sandbox serve many tests (starting and stopping one costs about 0.2 s).
        """
        with self._lock:
            self._transactions.clear()
            self._transfers.clear()
            self.recipients.clear()
            self.account_names.clear()
            self.unresolvable_accounts.clear()
            self.refused_recipient_accounts.clear()
            self.transfer_answers.clear()
            self._default_transfer_answer = "pending"
            self.requests.clear()
            self.validation_errors.clear()
            self._failures.clear()
            self._delays.clear()
        self._release_held_requests()

    def _release_held_requests(self) -> None:
        held, self._release = self._release, asyncio.Event()
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(held.set)

    # Controls

    def transaction(self, reference: str) -> SandboxTransaction:
        """A copy of the sandbox's state for `reference`.

        Raises:
            KeyError: If no transaction has this reference.
        """
        with self._lock:
            return copy.deepcopy(self._transactions[reference])

    def set_status(
        self, reference: str, status: str, *, amount: int | None = None, currency: str | None = None
    ) -> None:
        """Change what verify reports for `reference`, as if the customer had acted on the checkout page.

        Args:
            reference: An initialised transaction.
            status: One of Paystack's transaction statuses; `success` also sets `paid_at`.
            amount: Report this amount instead (to simulate a payment that differs from the initialised one).
            currency: Report this currency instead.

        Raises:
            KeyError: If no transaction has this reference.
            ValueError: If `status` is not a Paystack status.
        """
        if status not in TRANSACTION_STATUSES:
            msg = f"unknown Paystack status {status!r}"
            raise ValueError(msg)
        with self._lock:
            transaction = self._transactions[reference]
            transaction.status = status
            if amount is not None:
                transaction.amount = amount
            if currency is not None:
                transaction.currency = currency
            if status == "success" and transaction.paid_at is None:
                transaction.paid_at = _now()

    def set_checkout_input(
        self, reference: str, *, first_name: str | None = None, last_name: str | None = None, metadata: Any = None
    ) -> None:
        """What the customer typed at checkout, echoed by Paystack in verify answers and webhooks (any text,
        NUL characters included), and metadata replaced as if the merchant had sent it."""
        with self._lock:
            transaction = self._transactions[reference]
            transaction.customer_name = (first_name, last_name)
            if metadata is not None:
                transaction.metadata = metadata

    @property
    def default_transfer_answer(self) -> str:
        """What an initiation answers once `transfer_answers` is used up: `pending` unless a test changes it
        (to one of `TRANSFER_ANSWERS`)."""
        return self._default_transfer_answer

    @default_transfer_answer.setter
    def default_transfer_answer(self, answer: str) -> None:
        _check_transfer_answers((answer,))
        self._default_transfer_answer = answer

    def set_next_transfer_answers(self, *answers: str) -> None:
        """Make the next initiations (`POST /transfer`) answer `answers`, one each, in order; later ones answer
        `default_transfer_answer`. Replaces answers still queued.

        Args:
            answers: Each one of:
                `pending`, `success`, `failed`: the transfer is created with that status, answered 200.
                `otp`: created with status `otp`, answered 200 `Transfer requires OTP to continue` (an account
                    with transfer OTPs enabled).
                `insufficient_balance`: nothing is created; answered 400 `Your balance is not enough to fulfil
                    this request`.

        Raises:
            ValueError: If an answer is none of these.
        """
        _check_transfer_answers(answers)
        with self._lock:
            self.transfer_answers[:] = answers

    def transfer(self, reference: str) -> SandboxTransfer:
        """A copy of the sandbox's state of the transfer `reference`.

        Raises:
            KeyError: If no transfer has this reference.
        """
        with self._lock:
            return copy.deepcopy(self._transfers[reference])

    def transfers(self) -> list[SandboxTransfer]:
        """Copies of every transfer, oldest first."""
        with self._lock:
            return copy.deepcopy(list(self._transfers.values()))

    def set_transfer_status(self, reference: str, status: str) -> None:
        """Change what `GET /transfer/verify` reports for `reference`, as if the bank had acted on it.

        Webhooks are separate: `build_transfer_event` and `deliver_webhook` send the matching one (or
        `settle_transfer` does both).

        Args:
            reference: An initiated transfer.
            status: One of Paystack's transfer statuses (`TRANSFER_STATUSES`); `success` also sets
                `transferred_at`.

        Raises:
            KeyError: If no transfer has this reference.
            ValueError: If `status` is not a Paystack transfer status.
        """
        if status not in TRANSFER_STATUSES:
            msg = f"unknown Paystack transfer status {status!r}"
            raise ValueError(msg)
        with self._lock:
            transfer = self._transfers[reference]
            transfer.status = status
            transfer.updated_at = _now()
            if status == "success" and transfer.transferred_at is None:
                transfer.transferred_at = transfer.updated_at

    def transfer_initiations(self, reference: str) -> int:
        """How many `POST /transfer` requests carried `reference`, whatever they were answered (created,
        refused as a duplicate, failed by `fail_next`, ...): what "initiated exactly once" is asserted on."""
        with self._lock:
            return sum(
                1
                for request in self.requests
                if request.method == "POST"
                and request.path == "/transfer"
                and isinstance(request.json, dict)
                and request.json.get("reference") == reference
            )

    def recipient_count(self) -> int:
        """How many transfer recipients exist (a duplicate account retrieves its recipient: no new one)."""
        with self._lock:
            return len(self.recipients)

    def fail_next(
        self, n: int, status_code: int = 500, *, after_processing: bool = False, path: str | None = None
    ) -> None:
        """Answer the next `n` API requests with `status_code` (a 5xx by default), without acting on them.

        Args:
            n: How many requests to fail.
            status_code: The HTTP status to answer.
            after_processing: Act on the request, then answer the failure anyway (a 5xx from a proxy or a
                crash after Paystack made the transfer: the client cannot tell it happened).
            path: Fail only requests to this path (e.g. `/transaction/verify/<reference>`), leaving other
                traffic to a shared sandbox alone; by default any request.
        """
        with self._lock:
            self._failures.extend([(status_code, after_processing, path)] * n)

    def delay_next(self, n: int, seconds: float, *, after_processing: bool = False, path: str | None = None) -> None:
        """Hold the next `n` API requests for `seconds`, to make clients time out.

        Args:
            n: How many requests to hold.
            seconds: How long to hold each.
            after_processing: Act on the request at once and delay only the answer (a lost response: a
                retry then meets the effect of the first attempt). By default the request takes effect
                after the delay, like a slow server.
            path: Hold only requests to this path; by default any request.
        """
        with self._lock:
            self._delays.extend([(seconds, after_processing, path)] * n)

    # Webhooks

    def sign(self, body: bytes) -> str:
        """The `x-paystack-signature` Paystack would send with `body`."""
        return sign_webhook(body, self.secret_key)

    def build_charge_success(
        self,
        reference: str,
        *,
        amount: int | None = None,
        currency: str | None = None,
    ) -> bytes:
        """A `charge.success` webhook body for `reference`, from Paystack's documented example.

        Amount, currency, customer email and metadata come from the transaction as initialised (unless
        overridden); for a reference the sandbox does not know, from the example. The sandbox's own state is
        not changed: call `set_status(reference, "success")` too if verify should agree.

        Returns:
            The raw JSON body, ready to sign and send.
        """
        event = _example_event("charge.success")
        data = event["data"]
        with self._lock:
            known = copy.deepcopy(self._transactions.get(reference))
        data["reference"] = reference
        data["status"] = "success"
        data["gateway_response"] = _GATEWAY_RESPONSES["success"]
        data["domain"] = "test"
        if known is not None:
            data["id"] = known.id
            data["amount"] = known.amount
            data["currency"] = known.currency
            data["metadata"] = known.metadata if known.metadata is not None else ""
            data["created_at"] = known.created_at
            data["paid_at"] = known.paid_at or _now()
            data["customer"]["email"] = known.email
            data["customer"]["id"] = known.customer_id
            data["customer"]["customer_code"] = known.customer_code
            data["customer"]["first_name"], data["customer"]["last_name"] = known.customer_name
        else:
            data["paid_at"] = _now()
        if amount is not None:
            data["amount"] = amount
        if currency is not None:
            data["currency"] = currency
        return json.dumps(event, separators=(",", ":")).encode()

    def build_refund_processed(
        self, reference: str, refund_reference: str, amount: int, currency: str = "NGN"
    ) -> bytes:
        """A `refund.processed` body from Paystack's documented example: `amount` of `reference` refunded
        (sent as a string, as Paystack does)."""
        event = _example_event("refund.processed")
        event["data"] |= {
            "transaction_reference": reference,
            "refund_reference": refund_reference,
            "amount": str(amount),
            "currency": currency,
            "domain": "test",
        }
        return json.dumps(event, separators=(",", ":")).encode()

    def build_dispute_created(self, reference: str, dispute_id: int) -> bytes:
        """A `charge.dispute.create` body from Paystack's documented example, about the payment `reference`."""
        event = _example_event("charge.dispute.create")
        event["data"]["id"] = dispute_id
        event["data"]["transaction"]["reference"] = reference
        event["data"]["domain"] = "test"
        return json.dumps(event, separators=(",", ":")).encode()

    def build_transfer_event(self, reference: str, event: str, *, reason: str | None = None) -> bytes:
        """A `transfer.success`, `transfer.failed` or `transfer.reversed` body from Paystack's documented example.

        For a transfer the sandbox knows, id, transfer code, amount, currency, narration (`reason`),
        timestamps and recipient come from it; otherwise only the reference is replaced in the example.
        `data.status` matches the event. The sandbox's own state is not changed: call
        `set_transfer_status(reference, ...)` too if verify should agree.

        Args:
            reference: The transfer's reference.
            event: The event type, one of `TRANSFER_EVENTS`.
            reason: Why the transfer failed or was reversed, sent as `data.gateway_response` (`data.reason`
                stays the narration given at initiation, as in Paystack's events).

        Returns:
            The raw JSON body, ready to sign and send.

        Raises:
            ValueError: If `event` is not a transfer event.
        """
        if event not in TRANSFER_EVENTS:
            msg = f"unknown transfer event {event!r}: expected one of {sorted(TRANSFER_EVENTS)}"
            raise ValueError(msg)
        body = _example_event(event)
        data = body["data"]
        with self._lock:
            known = copy.deepcopy(self._transfers.get(reference))
            recipient = copy.deepcopy(self.recipients.get(known.recipient_code)) if known is not None else None
        status = TRANSFER_EVENTS[event]
        data["reference"] = reference
        data["status"] = status
        data["domain"] = "test"
        if known is not None:
            data |= {
                "id": known.id,
                "transfer_code": known.transfer_code,
                "amount": known.amount,
                "currency": known.currency,
                "reason": known.reason,
            }
            # The examples disagree on the timestamps' spelling (createdAt or created_at): keep each one's own.
            for camel, snake, value in (
                ("createdAt", "created_at", known.created_at),
                ("updatedAt", "updated_at", known.updated_at),
            ):
                data[camel if camel in data else snake] = value
            # Sent money has left (success) or left and come back (reversed); failed money never left.
            if status == "success":
                data["transferred_at"] = known.transferred_at or _now()
            else:
                data["transferred_at"] = known.transferred_at if status == "reversed" else None
        if recipient is not None:
            data["recipient"] |= {
                key: recipient[key] for key in ("id", "name", "recipient_code", "type", "currency", "details")
            }
            data["recipient"]["domain"] = "test"
        if reason is not None:
            data["gateway_response"] = reason
        return json.dumps(body, separators=(",", ":")).encode()

    async def deliver_webhook(
        self,
        app_base_url: str,
        body: bytes,
        *,
        signature: str | Signature | None = Signature.VALID,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> httpx.Response:
        """POST `body` to the app's webhook endpoint as Paystack would, once.

        Args:
            app_base_url: The app's base URL, e.g. `http://127.0.0.1:8000` (or `http://test` with a transport).
            body: The raw event body.
            signature: The `x-paystack-signature` to send: `Signature.VALID` (the default) for the correct one,
                a string for that string, None for no header at all.
            transport: An httpx transport (e.g. `httpx.ASGITransport(app)`) to reach an in-process app.

        Returns:
            The app's answer.
        """
        headers = {"content-type": "application/json"}
        if signature is Signature.VALID:
            headers["x-paystack-signature"] = self.sign(body)
        elif signature is not None:
            headers["x-paystack-signature"] = signature
        async with httpx.AsyncClient(transport=transport, timeout=WEBHOOK_ATTEMPT_TIMEOUT * 2) as client:
            return await client.post(f"{app_base_url.rstrip('/')}{WEBHOOK_PATH}", content=body, headers=headers)

    async def _deliver_until_accepted(self, body: bytes, what: str) -> bool:
        """Send a webhook to `service_url` until it answers 200, like Paystack (on a much shorter schedule).

        Returns:
            Whether the service accepted it.
        """
        if self.service_url is None:
            return False
        headers = {"content-type": "application/json", "x-paystack-signature": self.sign(body)}
        url = f"{self.service_url}{WEBHOOK_PATH}"
        async with httpx.AsyncClient(timeout=WEBHOOK_ATTEMPT_TIMEOUT) as client:
            for attempt, pause in enumerate((0.0, *WEBHOOK_RETRY_DELAYS), start=1):
                await asyncio.sleep(pause)
                try:
                    response = await client.post(url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    outcome = f"{type(exc).__name__}"
                else:
                    if response.status_code == HTTPStatus.OK:
                        logger.info("%s delivered to %s (attempt %d)", what, url, attempt)
                        return True
                    outcome = f"HTTP {response.status_code}"
                logger.warning("%s not accepted by %s (attempt %d: %s)", what, url, attempt, outcome)
        logger.error("%s given up after %d attempts", what, len(WEBHOOK_RETRY_DELAYS) + 1)
        return False

    def _in_background(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work)
        # The loop keeps only weak references to tasks: hold each until it is done.
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # Checkout and payouts, as a person acts on them

    def _charge_at_checkout(self, access_code: str, status: str) -> tuple[SandboxTransaction, bool] | None:
        """Mark the transaction behind `access_code` paid (`success`) or declined (`failed`), as the customer's
        click at checkout would.

        Returns:
            The transaction as it now is and whether this click changed it (a transaction already final is left
            as it is: a second click must not pay twice or undo a payment), or None for an unknown access code.
        """
        with self._lock:
            transaction = next((t for t in self._transactions.values() if t.access_code == access_code), None)
            if transaction is None:
                return None
            changed = transaction.status not in CHARGE_FINAL_STATUSES
            if changed:
                transaction.status = status
                if status == "success":
                    transaction.paid_at = _now()
            return copy.deepcopy(transaction), changed

    def settle_transfer(self, reference: str, outcome: str) -> bytes | None:
        """Give a pending transfer its outcome, as the bank would: its status, and the webhook to send.

        Args:
            reference: A transfer's reference.
            outcome: One of `TRANSFER_OUTCOMES`; `reversed` means the money left and came back.

        Returns:
            The `transfer.<outcome>` webhook body, or None when the transfer is no longer pending.

        Raises:
            KeyError: If no transfer has this reference.
            ValueError: If `outcome` is not a transfer outcome.
        """
        if outcome not in TRANSFER_OUTCOMES:
            msg = f"unknown transfer outcome {outcome!r}: expected one of {', '.join(TRANSFER_OUTCOMES)}"
            raise ValueError(msg)
        with self._lock:
            transfer = self._transfers[reference]
            if transfer.status not in _OPEN_TRANSFER_STATUSES:
                return None
            transfer.status = outcome
            transfer.updated_at = _now()
            if outcome != "failed":
                transfer.transferred_at = transfer.updated_at
        return self.build_transfer_event(reference, f"transfer.{outcome}", reason=_OUTCOME_REASONS.get(outcome))

    async def _settle_later(self, reference: str) -> None:
        await asyncio.sleep(self.payout_delay)
        with contextlib.suppress(KeyError):  # forgotten by `reset()` in the meantime
            body = self.settle_transfer(reference, self.payout_outcome)
            if body is not None:
                await self._deliver_until_accepted(body, f"transfer.{self.payout_outcome} for {reference}")

    # The ASGI app

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self._loop = asyncio.get_running_loop()
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        request = _Request(
            method=scope["method"].upper(),
            path=scope["path"],
            body=b"".join(chunks),
            query=parse_qsl(scope["query_string"].decode("latin-1")),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
        )
        page = await self._page(request)
        if page is not None:
            await _send(send, page.status, page.body, page.content_type, page.location)
            return
        answer = await self._handle(request)
        payload = json.dumps(answer.body, separators=(",", ":")).encode()
        if self._openapi_path is not None and not answer.invalid:
            payload, answer = self._validate_answer(request, answer, payload)
        await _send(send, answer.status, payload, "application/json")

    async def _handle(self, request: _Request) -> _Answer:
        try:
            parsed = json.loads(request.body) if request.body else None
        except ValueError:
            parsed = None
        with self._lock:
            self.requests.append(RecordedRequest(request.method, request.path, parsed))
            failure = _take_fault(self._failures, request.path)
            delay = _take_fault(self._delays, request.path)

        if self._openapi_path is not None:
            from app.sandbox.validation import request_errors

            errors = request_errors(self._openapi_path, request)
            if errors:
                return self._invalid("request", request, errors)
        if delay is not None and not delay[1]:
            await self._hold(delay[0])
        if failure is not None and not failure[1]:
            return _Answer(failure[0], {"status": False, "message": "An error occurred"})

        if request.header("authorization") != f"Bearer {self.secret_key}":
            answer = _Answer(HTTPStatus.UNAUTHORIZED, {"status": False, "message": "Invalid key"})
        else:
            answer = self._answer(request, parsed if isinstance(parsed, dict) else {})

        if delay is not None and delay[1]:
            await self._hold(delay[0])
        if failure is not None:
            return _Answer(failure[0], {"status": False, "message": "An error occurred"})
        return answer

    def _answer(self, request: _Request, body: dict[str, Any]) -> _Answer:
        """What Paystack answers an authenticated request to its API."""
        method, path = request.method, request.path
        if method == "POST" and path == "/transaction/initialize":
            return self._initialize(body)
        if method == "GET" and path.startswith("/transaction/verify/"):
            return self._verify(path.removeprefix("/transaction/verify/"))
        if method == "GET" and path == "/bank":
            return self._banks(request.query_value("currency", "NGN"))
        if method == "GET" and path == "/bank/resolve":
            return self._resolve(request.query_value("account_number", ""), request.query_value("bank_code", ""))
        if method == "POST" and path == "/transferrecipient":
            return self._create_recipient(body)
        if method == "POST" and path == "/transfer":
            return self._initiate_transfer(body)
        if method == "GET" and path.startswith("/transfer/verify/"):
            return self._verify_transfer(path.removeprefix("/transfer/verify/"))
        return _Answer(HTTPStatus.NOT_FOUND, {"status": False, "message": "Not found"})

    async def _hold(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._release.wait(), timeout=seconds)

    def _initialize(self, body: dict[str, Any]) -> _Answer:
        reference = body.get("reference") or secrets.token_hex(5)
        access_code = secrets.token_hex(8)
        with self._lock:
            if reference in self._transactions:
                return _Answer(
                    HTTPStatus.BAD_REQUEST,
                    {
                        "status": False,
                        "message": "Duplicate Transaction Reference",
                        "meta": {"nextStep": "Try and create the Transaction or Charge with a new reference"},
                        "type": "validation_error",
                        "code": "duplicate_reference",
                        "errorCodeMappingNotFound": False,
                    },
                )
            email = str(body.get("email", ""))
            customer_id = self._customers.setdefault(email, 1000 + len(self._customers))
            self._next_id += 1
            self._transactions[reference] = SandboxTransaction(
                id=self._next_id,
                reference=reference,
                email=email,
                amount=body.get("amount", 0),
                requested_amount=body.get("amount", 0),
                currency=body.get("currency") or "NGN",
                status=self._initial_status,
                metadata=body.get("metadata"),
                callback_url=body.get("callback_url"),
                access_code=access_code,
                created_at=_now(),
                customer_id=customer_id,
                customer_code=f"CUS_{customer_id:015d}",
            )
        checkout = self._checkout_url or f"{self.base_url}/checkout"
        return _Answer(
            HTTPStatus.OK,
            {
                "status": True,
                "message": "Authorization URL created",
                "data": {
                    "authorization_url": f"{checkout}/{access_code}",
                    "access_code": access_code,
                    "reference": reference,
                },
            },
        )

    def _banks(self, currency: str) -> _Answer:
        listed = [bank for bank in self.banks if bank["currency"] == currency]
        return _Answer(HTTPStatus.OK, {"status": True, "message": "Banks retrieved", "data": listed})

    def _listed_bank(self, bank_code: str) -> dict[str, Any] | None:
        """The bank with `bank_code` in `banks`, unless unknown or flagged deleted."""
        return next((bank for bank in self.banks if bank["code"] == bank_code and not bank["is_deleted"]), None)

    def _account_name(self, bank_code: str, account_number: str) -> str:
        unlisted = f"{self.unlisted_account_name} {account_number[-4:]}"
        return self.account_names.get((bank_code, account_number), unlisted)

    def _resolve(self, account_number: str, bank_code: str) -> _Answer:
        # The query values are read as sent (strings): the spec types them as integers, which openapi-core
        # casts only to validate, so a leading zero (`0123456789`, `058`) reaches here intact.
        with self._lock:
            bank = self._listed_bank(bank_code)
            resolvable = (
                bank is not None
                and _ACCOUNT_NUMBER.fullmatch(account_number) is not None
                and account_number not in self.unresolvable_accounts
            )
            name = self._account_name(bank_code, account_number)
        if bank is None or not resolvable:
            return _refusal(
                HTTPStatus.UNPROCESSABLE_ENTITY,
                "Could not resolve account name. Check parameters or try again.",
                "Ensure that you're passing the correct bank code and account number",
            )
        return _Answer(
            HTTPStatus.OK,
            {
                "status": True,
                "message": "Account number resolved",
                "data": {"account_number": account_number, "account_name": name, "bank_id": bank["id"]},
            },
        )

    def _create_recipient(self, body: dict[str, Any]) -> _Answer:
        account_number = str(body.get("account_number", ""))
        bank_code = str(body.get("bank_code", ""))
        with self._lock:
            if account_number in self.refused_recipient_accounts or _ACCOUNT_NUMBER.fullmatch(account_number) is None:
                return _refusal(
                    HTTPStatus.BAD_REQUEST,
                    "Account number is invalid",
                    "Ensure that you're passing the correct bank code and account number",
                )
            bank = self._listed_bank(bank_code)
            if bank is None:
                return _refusal(
                    HTTPStatus.BAD_REQUEST,
                    f"Unknown bank code: {bank_code}",
                    "Use a bank code from the List Banks endpoint",
                )
            # "A duplicate account number will lead to the retrieval of the existing record."
            recipient = next(
                (
                    existing
                    for existing in self.recipients.values()
                    if (existing["details"]["bank_code"], existing["details"]["account_number"])
                    == (bank_code, account_number)
                ),
                None,
            )
            if recipient is None:
                self._next_id += 1
                now = _now()
                recipient = {
                    "active": True,
                    "createdAt": now,
                    "currency": body.get("currency") or bank["currency"],
                    # Paystack sends null for these when not given, but the spec types them as plain strings.
                    "description": str(body.get("description") or ""),
                    "domain": "test",
                    "email": "",
                    "id": self._next_id,
                    "integration": _INTEGRATION_ID,
                    "metadata": body.get("metadata"),
                    "name": str(body.get("name", "")),
                    "recipient_code": _paystack_code("RCP_"),
                    "type": body.get("type", "nuban"),
                    "updatedAt": now,
                    "is_deleted": False,
                    "isDeleted": False,
                    "details": {
                        "authorization_code": None,
                        "account_number": account_number,
                        "account_name": self._account_name(bank_code, account_number),
                        "bank_code": bank_code,
                        "bank_name": bank["name"],
                    },
                }
                self.recipients[recipient["recipient_code"]] = recipient
            recipient = copy.deepcopy(recipient)
        return _Answer(
            HTTPStatus.CREATED,
            {"status": True, "message": "Transfer recipient created successfully", "data": recipient},
        )

    def _initiate_transfer(self, body: dict[str, Any]) -> _Answer:
        reference = str(body.get("reference", ""))
        with self._lock:
            recipient = self.recipients.get(str(body.get("recipient", "")))
            if recipient is None:
                return _refusal(
                    HTTPStatus.BAD_REQUEST,
                    "Recipient specified is invalid",
                    "Create the transfer recipient first, and pass its recipient code",
                )
            if reference in self._transfers:
                # What makes a retried initiation safe: Paystack refuses the reference and creates nothing.
                return _refusal(
                    HTTPStatus.BAD_REQUEST,
                    "Transfer reference already exists",
                    "Verify the transfer with this reference, or initiate a new one with a new reference",
                )
            outcome = self.transfer_answers.pop(0) if self.transfer_answers else self._default_transfer_answer
            if outcome not in TRANSFER_ANSWERS:
                # Only a test appending to `transfer_answers` directly gets here; make its mistake loud.
                self.validation_errors.append(f"stand-in: unknown transfer answer {outcome!r} in transfer_answers")
                return _Answer(
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    {"status": False, "message": f"stand-in: unknown transfer answer {outcome!r}"},
                    invalid=True,
                )
            if outcome == "insufficient_balance":
                return _refusal(
                    HTTPStatus.BAD_REQUEST,
                    "Your balance is not enough to fulfil this request",
                    "Top up your balance and try again",
                    error_type="api_error",
                )
            self._next_id += 1
            now = _now()
            transfer = SandboxTransfer(
                id=self._next_id,
                transfer_code=_paystack_code("TRF_"),
                reference=reference,
                amount=body.get("amount", 0),
                currency=body.get("currency") or "NGN",
                recipient_code=recipient["recipient_code"],
                reason=str(body.get("reason") or ""),
                status=outcome,
                created_at=now,
                updated_at=now,
                transferred_at=now if outcome == "success" else None,
            )
            self._transfers[reference] = transfer
            data = self._transfer_answer_data(transfer) | {
                "transfersessionid": [],
                "transfertrials": [],
                "request": transfer.id + 7_000_000,
                "recipient": recipient["id"],
            }
        if outcome == "pending" and self.payout_outcome != "manual":
            self._in_background(self._settle_later(reference))
        message = "Transfer requires OTP to continue" if outcome == "otp" else "Transfer has been queued"
        return _Answer(HTTPStatus.OK, {"status": True, "message": message, "data": data})

    def _verify_transfer(self, reference: str) -> _Answer:
        with self._lock:
            transfer = copy.deepcopy(self._transfers.get(reference))
            recipient = copy.deepcopy(self.recipients.get(transfer.recipient_code)) if transfer is not None else None
        if transfer is None or recipient is None:
            return _Answer(HTTPStatus.NOT_FOUND, {"status": False, "message": "Transfer not found"})
        sent = transfer.status in {"success", "reversed"}
        data = self._transfer_answer_data(transfer) | {
            "recipient": recipient,
            "session": {"provider": "nip" if sent else None, "id": f"{transfer.id:030d}" if sent else None},
            "gateway_response": None,
        }
        return _Answer(HTTPStatus.OK, {"status": True, "message": "Transfer retrieved", "data": data})

    def _verify(self, reference: str) -> _Answer:
        with self._lock:
            transaction = copy.deepcopy(self._transactions.get(reference))
        if transaction is None:
            # Real Paystack adds `"code": "transaction_not_found"`, but the spec's `Error.code` is an enum of
            # error *types* (validation_error, ...) that rejects it, so the sandbox leaves the code out.
            return _Answer(HTTPStatus.NOT_FOUND, {"status": False, "message": "Transaction reference not found"})
        return _Answer(
            HTTPStatus.OK,
            {"status": True, "message": "Verification successful", "data": self._verify_answer_data(transaction)},
        )

    # What the answers' `data` hold: methods, so the tests' stand-in can break them on purpose and show that the
    # validation notices.

    def _verify_answer_data(self, transaction: SandboxTransaction) -> dict[str, Any]:
        return verify_data(transaction)

    def _transfer_answer_data(self, transfer: SandboxTransfer) -> dict[str, Any]:
        return transfer_data(transfer)

    # Pages

    async def _page(self, request: _Request) -> _Page | None:
        """The answer to a person's request (checkout, payouts, health), or None for Paystack's API."""
        wants_html = "text/html" in request.header("accept")
        path, method = request.path, request.method
        if path == "/sandbox/health" and method == "GET":
            return _json_page(HTTPStatus.OK, {"status": "ok"})
        if path == "/sandbox/transfers" and method == "GET":
            transfers = self.transfers()
            if wants_html:
                return _html(HTTPStatus.OK, pages.transfers_page(transfers, self.payout_outcome))
            listed = [{"reference": t.reference, "status": t.status, "amount": t.amount} for t in transfers]
            return _json_page(HTTPStatus.OK, {"transfers": listed})
        if (match := _TRANSFER_OUTCOME_PATH.fullmatch(path)) and method == "POST":
            return await self._settle_from_page(unquote(match["reference"]), match["outcome"], wants_html=wants_html)
        if match := _CHECKOUT_PATH.fullmatch(path):
            access_code, action = match["access_code"], match["action"]
            if action is None and method == "GET":
                return self._checkout(access_code)
            if action is not None and method == "POST":
                return await self._act_at_checkout(access_code, action, wants_html=wants_html)
        return None

    def _checkout(self, access_code: str) -> _Page:
        with self._lock:
            transaction = next((t for t in self._transactions.values() if t.access_code == access_code), None)
            transaction = copy.deepcopy(transaction)
        if transaction is None:
            return _html(HTTPStatus.NOT_FOUND, pages.unknown_checkout_page())
        open_ = transaction.status not in CHARGE_FINAL_STATUSES
        return _html(HTTPStatus.OK, pages.checkout_page(transaction, open_=open_))

    async def _act_at_checkout(self, access_code: str, action: str, *, wants_html: bool) -> _Page:
        charged = self._charge_at_checkout(access_code, "success" if action == "pay" else "failed")
        if charged is None:
            if wants_html:
                return _html(HTTPStatus.NOT_FOUND, pages.unknown_checkout_page())
            return _json_page(HTTPStatus.NOT_FOUND, {"reference": None, "status": "unknown"})
        transaction, changed = charged
        if not changed:
            if wants_html:
                return _html(HTTPStatus.CONFLICT, pages.checkout_page(transaction, open_=False))
            return _json_page(HTTPStatus.CONFLICT, {"reference": transaction.reference, "status": transaction.status})
        paid = transaction.status == "success"
        delivered: bool | None = None
        if paid and self.service_url is not None:
            body = self.build_charge_success(transaction.reference)
            delivery = self._in_background(
                self._deliver_until_accepted(body, f"charge.success for {transaction.reference}")
            )
            done, _ = await asyncio.wait({delivery}, timeout=PAGE_WAIT_SECONDS)
            delivered = delivery.result() if done else None
        if not wants_html:
            return _json_page(HTTPStatus.OK, {"reference": transaction.reference, "status": transaction.status})
        if paid and transaction.callback_url:
            return _redirect(_with_reference(transaction.callback_url, transaction))
        return _html(HTTPStatus.OK, pages.charge_outcome_page(transaction, self.service_url, delivered))

    async def _settle_from_page(self, reference: str, outcome: str, *, wants_html: bool) -> _Page:
        try:
            body = self.settle_transfer(reference, outcome)
        except KeyError:
            return _json_page(HTTPStatus.NOT_FOUND, {"reference": reference, "status": "unknown"})
        except ValueError:
            return _json_page(HTTPStatus.BAD_REQUEST, {"reference": reference, "status": "unknown"})
        status = self.transfer(reference).status
        if body is None:
            if wants_html:
                return _redirect("/sandbox/transfers")
            return _json_page(HTTPStatus.CONFLICT, {"reference": reference, "status": status})
        delivery = self._in_background(self._deliver_until_accepted(body, f"transfer.{outcome} for {reference}"))
        await asyncio.wait({delivery}, timeout=PAGE_WAIT_SECONDS)
        if wants_html:
            return _redirect("/sandbox/transfers")
        return _json_page(HTTPStatus.OK, {"reference": reference, "status": status})

    # Validation

    def _validate_answer(self, request: _Request, answer: _Answer, payload: bytes) -> tuple[bytes, _Answer]:
        from app.sandbox.validation import response_errors

        assert self._openapi_path is not None
        errors = response_errors(self._openapi_path, request, answer.status, payload)
        if not errors:
            return payload, answer
        invalid = self._invalid("response", request, errors)
        return json.dumps(invalid.body, separators=(",", ":")).encode(), invalid

    def _invalid(self, kind: str, request: _Request, errors: list[str]) -> _Answer:
        with self._lock:
            self.validation_errors.extend(f"{kind} {request.method} {request.path}: {e}" for e in errors)
        return _Answer(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            {"status": False, "message": f"stand-in: the {kind} breaks Paystack's OpenAPI: {errors[0]}"},
            invalid=True,
        )


def _html(status: int, document: str) -> _Page:
    return _Page(status, document.encode(), "text/html; charset=utf-8")


def _redirect(location: str) -> _Page:
    """Where a browser goes after a form's POST (303: it follows with a GET)."""
    return _Page(HTTPStatus.SEE_OTHER, b"", "text/plain", location)


def _with_reference(callback_url: str, transaction: SandboxTransaction) -> str:
    """The callback URL with `trxref` and `reference` added, as Paystack redirects after a payment."""
    parts = urlsplit(callback_url)
    extra = urlencode({"trxref": transaction.reference, "reference": transaction.reference})
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


async def _send(
    send: Callable[[dict[str, Any]], Awaitable[None]],
    status: int,
    body: bytes,
    content_type: str,
    location: str | None = None,
) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    if content_type.startswith("text/html"):
        # The pages carry their own styles and nothing else: no script, no outside resource.
        headers.append((b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'"))
    if location is not None:
        headers.append((b"location", location.encode("latin-1", errors="replace")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_Fault = TypeVar("_Fault", tuple[int, bool, str | None], tuple[float, bool, str | None])


def _take_fault(faults: list[_Fault], path: str) -> _Fault | None:
    """Remove and return the first injected fault meant for `path` (its last item: a path, or None for any)."""
    for index, fault in enumerate(faults):
        if fault[-1] is None or fault[-1] == path:
            return faults.pop(index)
    return None


def _check_transfer_answers(answers: tuple[str, ...]) -> None:
    unknown = [answer for answer in answers if answer not in TRANSFER_ANSWERS]
    if unknown:
        msg = f"unknown transfer answers {unknown!r}: expected some of {sorted(TRANSFER_ANSWERS)}"
        raise ValueError(msg)


def transfer_data(transfer: SandboxTransfer) -> dict[str, Any]:
    """The fields an initiation answer and a verify answer share, as the official description requires them."""
    return {
        "amount": transfer.amount,
        "createdAt": transfer.created_at,
        "currency": transfer.currency,
        "domain": "test",
        "failures": None,
        "id": transfer.id,
        "integration": _INTEGRATION_ID,
        "reason": transfer.reason,
        "reference": transfer.reference,
        "source": "balance",
        "source_details": None,
        "status": transfer.status,
        "titan_code": None,
        "transfer_code": transfer.transfer_code,
        "transferred_at": transfer.transferred_at,
        "updatedAt": transfer.updated_at,
    }


def verify_data(transaction: SandboxTransaction) -> dict[str, Any]:
    """`data` of a verify answer, with every field the official description marks required."""
    paid = transaction.status == "success"
    authorization: dict[str, Any] = (
        {
            "authorization_code": f"AUTH_{transaction.access_code[:10]}",
            "bin": "408408",
            "last4": "4081",
            "exp_month": "12",
            "exp_year": "2030",
            "channel": "card",
            "card_type": "visa ",
            "bank": "TEST BANK",
            "country_code": "NG",
            "brand": "visa",
            "reusable": True,
            "signature": f"SIG_{transaction.access_code}",
            "account_name": None,
        }
        if paid
        else {}
    )
    return {
        "id": transaction.id,
        "domain": "test",
        "status": transaction.status,
        "reference": transaction.reference,
        "receipt_number": None,
        "amount": transaction.amount,
        "message": None,
        "gateway_response": _GATEWAY_RESPONSES.get(transaction.status, transaction.status.capitalize()),
        "paid_at": transaction.paid_at,
        "created_at": transaction.created_at,
        "channel": "card",
        "currency": transaction.currency,
        "ip_address": "127.0.0.1",
        "metadata": transaction.metadata if transaction.metadata is not None else "",
        "log": None,
        "fees": min(transaction.amount * 15 // 1000, 200_000) if paid else None,
        "fees_split": None,
        "authorization": authorization,
        "customer": {
            "id": transaction.customer_id,
            "first_name": transaction.customer_name[0],
            "last_name": transaction.customer_name[1],
            "email": transaction.email,
            "customer_code": transaction.customer_code,
            "phone": None,
            "metadata": None,
            "risk_action": "default",
            "international_format_phone": None,
        },
        "plan": None,
        "split": {},
        "order_id": None,
        "paidAt": transaction.paid_at,
        "createdAt": transaction.created_at,
        "requested_amount": transaction.requested_amount,
        "pos_transaction_data": None,
        "source": None,
        "fees_breakdown": None,
        "connect": None,
        "transaction_date": transaction.created_at,
        "plan_object": {},
        "subaccount": {},
    }
