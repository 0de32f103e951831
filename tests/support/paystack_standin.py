"""A stateful stand-in for Paystack, served over real HTTP on loopback, for tests and the benchmark.

It answers `POST /transaction/initialize`, `GET /transaction/verify/{reference}` and `GET /bank` the way
Paystack does, and the payout path too: `GET /bank/resolve`, `POST /transferrecipient`, `POST /transfer` and
`GET /transfer/verify/{reference}`. It keeps each transaction's, recipient's and transfer's state, lets a test
inject 5xx answers, slow answers and Paystack's refusals (unresolvable account, insufficient balance, OTP
required, ...), and builds and delivers signed `charge.success` and `transfer.*` webhooks. Every request it
receives and every answer it gives is validated against Paystack's official OpenAPI description; a violation
is recorded in `validation_errors` and answered 500, so a test that talks to Paystack wrongly (or a stand-in
that answers wrongly) cannot pass unnoticed.

Example:
    ```python
    with PaystackStandIn() as paystack:
        settings = Settings().replaced(paystack_base_url=paystack.base_url, paystack_secret_key=paystack.secret_key)
        client = PaystackClient(settings.paystack)
        ...
        paystack.set_status(reference, "success")
        await paystack.deliver_webhook(app_url, paystack.build_charge_success(reference))
        assert paystack.validation_errors == []
    ```
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import secrets
import socket
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Self, TypeVar
from urllib.parse import parse_qsl

import httpx
import uvicorn
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.validation.request.exceptions import SecurityValidationError
from werkzeug.datastructures import Headers, ImmutableMultiDict

from app.domain.payments.paystack import sign_webhook

if TYPE_CHECKING:
    from types import TracebackType

SHARED_PAYSTACK_DIR: Final = Path("/work/shared/paystack")
OPENAPI_PATH: Final = SHARED_PAYSTACK_DIR / "openapi.yaml"
EVENTS_DIR: Final = SHARED_PAYSTACK_DIR / "events"
CHARGE_SUCCESS_PATH: Final = EVENTS_DIR / "charge.success.json"

# The spec only knows Paystack's production server; requests are validated as if sent there, since the
# server prefix is not what the validation is about (and loopback URLs would all be ServerNotFound).
PAYSTACK_SERVER_URL: Final = "https://api.paystack.co"

TRANSACTION_STATUSES: Final = frozenset(
    {"success", "failed", "abandoned", "ongoing", "pending", "processing", "queued", "reversed"}
)
_GATEWAY_RESPONSES: Final = {
    "success": "Successful",
    "failed": "Declined",
    "abandoned": "The transaction was not completed",
    "reversed": "Reversed",
}

TRANSFER_STATUSES: Final = frozenset(
    {"pending", "success", "failed", "otp", "abandoned", "reversed", "blocked", "rejected", "received"}
)
TRANSFER_ANSWERS: Final = frozenset({"pending", "success", "failed", "otp", "insufficient_balance"})
"""What `POST /transfer` may be told to answer (see `PaystackStandIn.set_next_transfer_answers`)."""
TRANSFER_EVENTS: Final = {"transfer.success": "success", "transfer.failed": "failed", "transfer.reversed": "reversed"}
"""The transfer webhooks `build_transfer_event` builds, with the `data.status` each carries."""

_INTEGRATION_ID: Final = 100_043
_ACCOUNT_NUMBER: Final = re.compile(r"[0-9]{10}")
"""A NUBAN: exactly ten ASCII digits (`str.isdigit` would also accept other scripts' digits)."""

_spec_lock = threading.Lock()
_spec: OpenAPI | None = None


def paystack_openapi() -> OpenAPI:
    """Paystack's official OpenAPI description, parsed once per process (it is 500 KB and takes a second)."""
    global _spec  # noqa: PLW0603 - a lazily built, process-wide cache
    with _spec_lock:
        if _spec is None:
            # The official document is trusted; checking it against the OpenAPI meta-schema would triple the
            # load time of every test session for nothing.
            _spec = OpenAPI.from_file_path(str(OPENAPI_PATH), config=Config(spec_validator_cls=None))
        return _spec


class RecordedRequest(NamedTuple):
    """One request the stand-in received: method, path and JSON body (None when absent or not JSON)."""

    method: str
    path: str
    json: Any


@dataclass
class StandInTransaction:
    """The stand-in's state of one transaction."""

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
class StandInTransfer:
    """The stand-in's state of one transfer (a payout from the balance to a transfer recipient)."""

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
    """When the money left, for a transfer that reached `success`."""


@dataclass
class _Answer:
    status: int
    body: dict[str, Any]
    invalid: bool = False
    """The stand-in's own answer to a validation failure, itself exempt from validation."""


@dataclass
class _Request:
    """An HTTP request in the shape openapi-core's `Request` protocol expects."""

    method: str
    path: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters
    host_url: str = PAYSTACK_SERVER_URL


@dataclass
class _Response:
    """An HTTP response in the shape openapi-core's `Response` protocol expects."""

    status_code: int
    data: bytes
    content_type: str = "application/json"
    headers: Headers = field(default_factory=Headers)


class Signature(Enum):
    """What `deliver_webhook` sends as `x-paystack-signature` when not given a string."""

    VALID = "valid"
    """Paystack's signature of the body with the stand-in's secret key."""


STANDIN_BANKS: tuple[tuple[int, str, str, str], ...] = (
    (9, "First Bank of Nigeria", "011", "NGN"),
    (1, "Access Bank", "044", "NGN"),
    (4, "Guaranty Trust Bank", "058", "NGN"),
    (21, "Zenith Bank", "057", "NGN"),
    (301, "Deleted Bank", "999", "NGN"),
    (28, "Absa Bank Ghana", "030100", "GHS"),
)
"""(id, name, code, currency) of the banks the stand-in lists; id 301 is flagged deleted, like Paystack's."""


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


def _describe(exc: BaseException) -> str:
    """An openapi-core error with its causes: the top-level message alone rarely names the field."""
    parts = [f"{type(exc).__name__}: {exc}"]
    cause = exc.__cause__
    while cause is not None:
        parts.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__
    return " <- ".join(parts)


class PaystackStandIn:
    """Paystack's transaction API on `127.0.0.1`, with controls for tests.

    Attributes:
        base_url: `http://127.0.0.1:<port>`, to use as `PAYSTACK_BASE_URL` (set by `start()`).
        secret_key: The only key the stand-in accepts, and the key its webhooks are signed with.
        requests: Every request received, in order.
        validation_errors: Every request or answer that broke Paystack's OpenAPI description.
    """

    def __init__(
        self,
        *,
        initial_status: str = "ongoing",
        validate: bool = True,
        secret_key: str | None = None,
        port: int | None = None,
    ) -> None:
        """Prepare a stand-in; nothing listens until `start()`.

        Args:
            initial_status: `data.status` of a transaction right after initialisation. Real Paystack reports
                `abandoned` until the customer acts; `ongoing` (the default) reads as "not final yet".
            validate: Validate traffic against the OpenAPI description (turn off only for benchmarks).
            secret_key: The key to accept and sign webhooks with (e.g. the one the app's processes are
                configured with); a random one by default.
            port: The loopback port to serve on (e.g. one reserved in the app's `PAYSTACK_BASE_URL`); a free
                one by default.
        """
        if initial_status not in TRANSACTION_STATUSES:
            msg = f"unknown Paystack status {initial_status!r}"
            raise ValueError(msg)
        self.secret_key = secret_key or f"sk_test_standin_{secrets.token_hex(16)}"
        self._port = port or 0
        self.base_url = ""
        self.requests: list[RecordedRequest] = []
        self.validation_errors: list[str] = []
        self._initial_status = initial_status
        self._validate = validate
        self._lock = threading.Lock()
        self._transactions: dict[str, StandInTransaction] = {}
        self._customers: dict[str, int] = {}
        self._next_id = 1_000_000
        self._failures: list[tuple[int, bool, str | None]] = []
        self._delays: list[tuple[float, bool, str | None]] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release = asyncio.Event()
        self.banks: list[dict[str, Any]] = [_bank(*bank) for bank in STANDIN_BANKS]
        """What `GET /bank` lists, and the banks `GET /bank/resolve` and recipients know; a test may change it."""
        self.account_names: dict[tuple[str, str], str] = {}
        """(bank code, account number) -> the name `GET /bank/resolve` reports; `STAND-IN ACCOUNT <last 4>`
        for an account not listed."""
        self.unresolvable_accounts: set[str] = set()
        """Account numbers `GET /bank/resolve` cannot resolve (422), as for a closed or mistyped account."""
        self.refused_recipient_accounts: set[str] = set()
        """Account numbers `POST /transferrecipient` refuses with 400 `Account number is invalid`."""
        self.recipients: dict[str, dict[str, Any]] = {}
        """Recipient code -> the recipient as `POST /transferrecipient` answered it."""
        self.transfer_answers: list[str] = []
        """What the next initiations answer, one each, first first (see `set_next_transfer_answers`)."""
        self._default_transfer_answer = "pending"
        self._transfers: dict[str, StandInTransfer] = {}

    # Lifecycle

    def start(self) -> Self:
        """Load the OpenAPI description and serve on a free loopback port until `stop()`.

        Returns:
            The stand-in itself, with `base_url` set.

        Raises:
            RuntimeError: If the server did not come up within 10 seconds.
        """
        if self._server is not None:
            return self
        if self._validate:
            # Loaded before serving, so the first request is not slowed past a short client timeout.
            paystack_openapi()
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
            target=self._server.run, kwargs={"sockets": [sock]}, name="paystack-standin", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                msg = "the Paystack stand-in did not start"
                raise RuntimeError(msg)
            time.sleep(0.01)
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        """Stop serving; requests still held by `delay_next` are released at once."""
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

        Lets one running stand-in serve many tests (starting and stopping one costs about 0.2 s).
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

    # Test controls

    def transaction(self, reference: str) -> StandInTransaction:
        """A copy of the stand-in's state for `reference`.

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

    def transfer(self, reference: str) -> StandInTransfer:
        """A copy of the stand-in's state of the transfer `reference`.

        Raises:
            KeyError: If no transfer has this reference.
        """
        with self._lock:
            return copy.deepcopy(self._transfers[reference])

    def set_transfer_status(self, reference: str, status: str) -> None:
        """Change what `GET /transfer/verify` reports for `reference`, as if the bank had acted on it.

        Webhooks are separate: `build_transfer_event` and `deliver_webhook` send the matching one.

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
        """Answer the next `n` requests with `status_code` (a 5xx by default), without acting on them.

        Args:
            n: How many requests to fail.
            status_code: The HTTP status to answer.
            after_processing: Act on the request, then answer the failure anyway (a 5xx from a proxy or a
                crash after Paystack made the transfer: the client cannot tell it happened).
            path: Fail only requests to this path (e.g. `/transaction/verify/<reference>`), leaving other
                traffic to a shared stand-in alone; by default any request.
        """
        with self._lock:
            self._failures.extend([(status_code, after_processing, path)] * n)

    def delay_next(self, n: int, seconds: float, *, after_processing: bool = False, path: str | None = None) -> None:
        """Hold the next `n` requests for `seconds`, to make clients time out.

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
        overridden); for a reference the stand-in does not know, from the example. The stand-in's own state is
        not changed: call `set_status(reference, "success")` too if verify should agree.

        Returns:
            The raw JSON body, ready to sign and send.
        """
        event = json.loads(CHARGE_SUCCESS_PATH.read_text(encoding="utf-8"))
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
        event = json.loads((EVENTS_DIR / "refund.processed.json").read_text(encoding="utf-8"))
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
        event = json.loads((EVENTS_DIR / "charge.dispute.create.json").read_text(encoding="utf-8"))
        event["data"]["id"] = dispute_id
        event["data"]["transaction"]["reference"] = reference
        event["data"]["domain"] = "test"
        return json.dumps(event, separators=(",", ":")).encode()

    def build_transfer_event(self, reference: str, event: str, *, reason: str | None = None) -> bytes:
        """A `transfer.success`, `transfer.failed` or `transfer.reversed` body from Paystack's documented example.

        For a transfer the stand-in knows, id, transfer code, amount, currency, narration (`reason`),
        timestamps and recipient come from it; otherwise only the reference is replaced in the example.
        `data.status` matches the event. The stand-in's own state is not changed: call
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
        body = json.loads((EVENTS_DIR / f"{event}.json").read_text(encoding="utf-8"))
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
        """POST `body` to the app's webhook endpoint as Paystack would.

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
        async with httpx.AsyncClient(transport=transport, timeout=10.0) as client:
            return await client.post(
                f"{app_base_url.rstrip('/')}/wallet/paystack/webhook", content=body, headers=headers
            )

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
        raw_body = b"".join(chunks)
        headers = Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]])
        request = _Request(
            method=scope["method"].lower(),
            path=scope["path"],
            body=raw_body or None,
            content_type=headers.get("content-type", "").lower(),
            parameters=RequestParameters(
                query=ImmutableMultiDict(parse_qsl(scope["query_string"].decode("latin-1"))),
                header=headers,
            ),
        )
        answer = await self._handle(request, headers.get("authorization"))
        payload = json.dumps(answer.body, separators=(",", ":")).encode()
        if self._validate and not answer.invalid:
            payload, answer = self._validate_answer(request, answer, payload)
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _handle(self, request: _Request, authorization: str | None) -> _Answer:
        try:
            parsed = json.loads(request.body) if request.body else None
        except ValueError:
            parsed = None
        with self._lock:
            self.requests.append(RecordedRequest(request.method.upper(), request.path, parsed))
            failure = _take_fault(self._failures, request.path)
            delay = _take_fault(self._delays, request.path)

        if self._validate:
            errors = self._request_errors(request)
            if errors:
                return self._invalid("request", request, errors)
        if delay is not None and not delay[1]:
            await self._hold(delay[0])
        if failure is not None and not failure[1]:
            return _Answer(failure[0], {"status": False, "message": "An error occurred"})

        if authorization != f"Bearer {self.secret_key}":
            answer = _Answer(HTTPStatus.UNAUTHORIZED, {"status": False, "message": "Invalid key"})
        elif request.method == "post" and request.path == "/transaction/initialize":
            answer = self._initialize(parsed if isinstance(parsed, dict) else {})
        elif request.method == "get" and request.path.startswith("/transaction/verify/"):
            answer = self._verify(request.path.removeprefix("/transaction/verify/"))
        elif request.method == "get" and request.path == "/bank":
            answer = self._banks(request.parameters.query.get("currency", "NGN"))
        elif request.method == "get" and request.path == "/bank/resolve":
            query = request.parameters.query
            answer = self._resolve(query.get("account_number", ""), query.get("bank_code", ""))
        elif request.method == "post" and request.path == "/transferrecipient":
            answer = self._create_recipient(parsed if isinstance(parsed, dict) else {})
        elif request.method == "post" and request.path == "/transfer":
            answer = self._initiate_transfer(parsed if isinstance(parsed, dict) else {})
        elif request.method == "get" and request.path.startswith("/transfer/verify/"):
            answer = self._verify_transfer(request.path.removeprefix("/transfer/verify/"))
        else:
            answer = _Answer(HTTPStatus.NOT_FOUND, {"status": False, "message": "Not found"})

        if delay is not None and delay[1]:
            await self._hold(delay[0])
        if failure is not None:
            return _Answer(failure[0], {"status": False, "message": "An error occurred"})
        return answer

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
            self._transactions[reference] = StandInTransaction(
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
        return _Answer(
            HTTPStatus.OK,
            {
                "status": True,
                "message": "Authorization URL created",
                "data": {
                    "authorization_url": f"https://checkout.paystack.com/{access_code}",
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
        return self.account_names.get((bank_code, account_number), f"STAND-IN ACCOUNT {account_number[-4:]}")

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
            transfer = StandInTransfer(
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
            data = _transfer_data(transfer) | {
                "transfersessionid": [],
                "transfertrials": [],
                "request": transfer.id + 7_000_000,
                "recipient": recipient["id"],
            }
        message = "Transfer requires OTP to continue" if outcome == "otp" else "Transfer has been queued"
        return _Answer(HTTPStatus.OK, {"status": True, "message": message, "data": data})

    def _verify_transfer(self, reference: str) -> _Answer:
        with self._lock:
            transfer = copy.deepcopy(self._transfers.get(reference))
            recipient = copy.deepcopy(self.recipients.get(transfer.recipient_code)) if transfer is not None else None
        if transfer is None or recipient is None:
            return _Answer(HTTPStatus.NOT_FOUND, {"status": False, "message": "Transfer not found"})
        sent = transfer.status in {"success", "reversed"}
        data = _transfer_data(transfer) | {
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
            # error *types* (validation_error, ...) that rejects it, so the stand-in leaves the code out.
            return _Answer(HTTPStatus.NOT_FOUND, {"status": False, "message": "Transaction reference not found"})
        return _Answer(
            HTTPStatus.OK,
            {"status": True, "message": "Verification successful", "data": _verify_data(transaction)},
        )

    # Validation

    def _request_errors(self, request: _Request) -> list[str]:
        errors = []
        for error in paystack_openapi().iter_request_errors(request):
            # The spec's bearerAuth requirement is enforced by the stand-in itself, with Paystack's documented
            # 401 `Invalid key`; reporting it as a spec violation would replace that answer with a 500.
            if isinstance(error, SecurityValidationError):
                continue
            errors.append(_describe(error))
        return errors

    def _validate_answer(self, request: _Request, answer: _Answer, payload: bytes) -> tuple[bytes, _Answer]:
        response = _Response(status_code=answer.status, data=payload)
        errors = [_describe(error) for error in paystack_openapi().iter_response_errors(request, response)]
        if not errors:
            return payload, answer
        invalid = self._invalid("response", request, errors)
        return json.dumps(invalid.body, separators=(",", ":")).encode(), invalid

    def _invalid(self, kind: str, request: _Request, errors: list[str]) -> _Answer:
        with self._lock:
            self.validation_errors.extend(f"{kind} {request.method.upper()} {request.path}: {e}" for e in errors)
        return _Answer(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            {"status": False, "message": f"stand-in: the {kind} breaks Paystack's OpenAPI: {errors[0]}"},
            invalid=True,
        )


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


def _transfer_data(transfer: StandInTransfer) -> dict[str, Any]:
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


def _verify_data(transaction: StandInTransaction) -> dict[str, Any]:
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
