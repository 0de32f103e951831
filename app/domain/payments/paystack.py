"""Paystack: the one place the service talks to the payment provider, and the one webhook signature rule.

`PaystackClient` initialises and verifies transactions over HTTPS with bounded retries; every failure,
whatever its cause, surfaces as a `PaystackError`. `sign_webhook` and `is_valid_signature` implement
`x-paystack-signature` (HMAC-SHA512 of the raw body, keyed with the secret key).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import re
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

import httpx
import msgspec

from app.lib.storable import decode_untrusted_json

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from app.config import Settings

logger = logging.getLogger(__name__)

DUPLICATE_REFERENCE: Final = "duplicate_reference"
"""Paystack's `code` when a reference was already used on the integration."""

CONNECT_TIMEOUT_SECONDS: Final = 3.0

_REFERENCE_PATTERN: Final = re.compile(r"^[A-Za-z0-9.=-]+$")
_NOT_FOUND: Final = 404
_SERVER_ERROR: Final = 500

_T = TypeVar("_T")


class PaystackError(Exception):
    """Paystack refused or failed a request, or could not be reached.

    Attributes:
        message: Paystack's own `message` when it sent one, otherwise a description of the failure.
        status_code: The HTTP status of Paystack's last answer, or None when none arrived.
        code: Paystack's machine `code` (for example `duplicate_reference`) when it sent one.
    """

    def __init__(self, message: str, *, status_code: int | None = None, code: str | None = None) -> None:
        self.message = message
        self.status_code = status_code
        self.code = code
        super().__init__(message)

    def __str__(self) -> str:
        return self.message if self.status_code is None else f"{self.message} (HTTP {self.status_code})"


class PaystackTransactionNotFound(PaystackError):
    """Paystack knows no transaction with this reference (HTTP 404 on verify)."""


class InitializedTransaction(msgspec.Struct, frozen=True):
    """A transaction Paystack created: the customer pays at `authorization_url`."""

    authorization_url: str
    access_code: str
    reference: str


class VerifiedTransaction(msgspec.Struct, frozen=True):
    """Paystack's current view of a transaction.

    `status` is one of success, failed, abandoned, ongoing, pending, processing, queued, reversed; only
    `success` means the money arrived. `amount` is in the currency's subunit. `raw` is Paystack's `data` object.
    """

    reference: str
    status: str
    amount: int
    currency: str
    paid_at: str | None
    gateway_response: str | None
    raw: dict[str, Any]


class _Envelope(msgspec.Struct):
    status: bool
    message: str | None = None
    code: str | None = None
    data: Any = None


class _InitializeData(msgspec.Struct):
    authorization_url: str
    access_code: str
    reference: str


class _VerifyData(msgspec.Struct):
    reference: str
    status: str
    amount: int
    currency: str
    paid_at: str | None = None
    gateway_response: str | None = None


class _RetryableError(Exception):
    """An attempt that may succeed if repeated: a timeout, a broken connection or a 5xx."""

    def __init__(self, error: PaystackError) -> None:
        self.error = error
        super().__init__(error.message)


class PaystackClient:
    """An async Paystack API client; one instance holds one connection pool and is meant to be reused.

    Requests that fail with a timeout, a connection error or a 5xx are retried up to `max_attempts` times in
    all, with exponential backoff and jitter; any other failure is final at once.

    Example:
        ```python
        async with PaystackClient(settings) as paystack:
            created = await paystack.initialize(email=..., amount=5000, reference=ref, currency="NGN")
        ```
    """

    def __init__(
        self,
        settings: Settings,
        *,
        max_attempts: int = 3,
        backoff_base_seconds: float = 0.25,
        backoff_max_seconds: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Build the client from the service's settings.

        Args:
            settings: Supplies `paystack_base_url`, `paystack_secret_key` and `paystack_timeout_seconds`.
            max_attempts: Attempts per call, the first included; at least 1.
            backoff_base_seconds: Pause before the first retry; it doubles on each following retry.
            backoff_max_seconds: Upper bound of any single pause.
            transport: An httpx transport to use instead of the network (for tests).

        Raises:
            ValueError: If `max_attempts` is below 1 or a backoff is negative.
        """
        if max_attempts < 1:
            msg = f"max_attempts must be at least 1, got {max_attempts}"
            raise ValueError(msg)
        if backoff_base_seconds < 0 or backoff_max_seconds < 0:
            msg = "backoff durations must not be negative"
            raise ValueError(msg)
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base_seconds
        self._backoff_max = backoff_max_seconds
        timeout = settings.paystack_timeout_seconds
        self._http = httpx.AsyncClient(
            base_url=settings.paystack_base_url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {settings.paystack_secret_key}",
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT_SECONDS, timeout)),
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool; the client is unusable afterwards."""
        await self._http.aclose()

    async def initialize(
        self,
        *,
        email: str,
        amount: int,
        reference: str,
        currency: str,
        callback_url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> InitializedTransaction:
        """Create a transaction the customer then pays on Paystack's checkout page.

        Every attempt carries the same reference, so a retry can never create a second transaction: Paystack
        rejects a reused reference with `duplicate_reference`.

        Args:
            email: The paying customer's email.
            amount: Amount in the currency's subunit (kobo for NGN), at least 1.
            reference: Our unique reference for the transaction (letters, digits, `-`, `.`, `=`).
            currency: ISO currency code, e.g. `NGN`.
            callback_url: Where Paystack sends the customer after paying; None keeps the dashboard's.
            metadata: Custom data Paystack stores and echoes back in the transaction and its webhooks.

        Returns:
            The checkout URL and access code of the new transaction.

        Raises:
            ValueError: If the amount or reference is malformed (a bug in the caller, not a Paystack failure).
            PaystackError: If Paystack refused the transaction (a reference already used included, even when
                an earlier attempt of this same call is what used it: Paystack will not repeat the access code),
                answered something unreadable, or could not be reached within the attempts.
        """
        _check_reference(reference)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
            msg = f"amount must be a positive integer in the currency's subunit, got {amount!r}"
            raise ValueError(msg)
        body: dict[str, Any] = {"email": email, "amount": amount, "reference": reference, "currency": currency}
        if callback_url is not None:
            body["callback_url"] = callback_url
        if metadata is not None:
            body["metadata"] = dict(metadata)

        response, attempts = await self._send("POST", "/transaction/initialize", json=body)
        envelope = _read_envelope(response, operation="initialize")
        if envelope.code == DUPLICATE_REFERENCE and attempts > 1:
            logger.warning(
                "Paystack initialize %s: duplicate_reference on attempt %d; an earlier attempt created the "
                "transaction but its answer was lost",
                reference,
                attempts,
            )
            raise PaystackError(
                f"{envelope.message or 'Duplicate Transaction Reference'}: an earlier attempt may have created it",
                status_code=response.status_code,
                code=DUPLICATE_REFERENCE,
            )
        data = _ensure_success(response, envelope, operation="initialize", convert_to=_InitializeData)
        if data.reference != reference:
            logger.error("Paystack initialize %s answered for another reference %s", reference, data.reference)
            msg = "Paystack answered for another reference"
            raise PaystackError(msg, status_code=response.status_code)
        return InitializedTransaction(
            authorization_url=data.authorization_url,
            access_code=data.access_code,
            reference=data.reference,
        )

    async def verify(self, reference: str) -> VerifiedTransaction:
        """Ask Paystack for the current state of a transaction.

        Args:
            reference: The reference given at initialisation.

        Returns:
            The transaction's status, amount, currency and Paystack's full `data`.

        Raises:
            ValueError: If the reference is malformed.
            PaystackTransactionNotFound: If Paystack knows no transaction with this reference.
            PaystackError: On any other refusal, an unreadable answer, or no answer within the attempts.
        """
        _check_reference(reference)
        response, _ = await self._send("GET", f"/transaction/verify/{reference}")
        # Read first: a 404 that is not Paystack's JSON (a wrong base URL, a proxy) must not pass for "unknown
        # reference", which callers may treat as a final answer about the payment.
        envelope = _read_envelope(response, operation="verify")
        if response.status_code == _NOT_FOUND:
            logger.info("Paystack verify %s: HTTP 404: %s", reference, envelope.message)
            raise PaystackTransactionNotFound(
                envelope.message or "Transaction reference not found",
                status_code=_NOT_FOUND,
                code=envelope.code,
            )
        data = _ensure_success(response, envelope, operation="verify", convert_to=_VerifyData)
        raw = envelope.data if isinstance(envelope.data, dict) else {}
        return VerifiedTransaction(
            reference=data.reference,
            status=data.status,
            amount=data.amount,
            currency=data.currency,
            paid_at=data.paid_at,
            gateway_response=data.gateway_response,
            raw=raw,
        )

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
    ) -> tuple[httpx.Response, int]:
        """Send one request, retrying transient failures; return the final answer and the attempts it took."""
        for attempt in range(1, self._max_attempts + 1):
            try:
                return await self._attempt(method, path, json=json, attempt=attempt), attempt
            except _RetryableError as failure:
                if attempt == self._max_attempts:
                    logger.error("Paystack %s %s failed after %d attempts: %s", method, path, attempt, failure.error)
                    raise failure.error from failure.__cause__
                await asyncio.sleep(self._backoff(attempt))
        msg = "unreachable: the loop always returns or raises"
        raise AssertionError(msg)

    async def _attempt(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None,
        attempt: int,
    ) -> httpx.Response:
        where = f"Paystack {method} {path} (attempt {attempt} of {self._max_attempts})"
        try:
            response = await self._http.request(method, path, json=json)
        except httpx.TimeoutException as exc:
            logger.warning("%s timed out: %s", where, type(exc).__name__)
            raise _RetryableError(PaystackError("Paystack did not answer in time")) from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            logger.warning("%s could not connect or lost the connection: %s", where, type(exc).__name__)
            raise _RetryableError(PaystackError("Paystack could not be reached")) from exc
        except httpx.HTTPError as exc:
            logger.error("%s failed: %s", where, type(exc).__name__)
            msg = "The request to Paystack failed"
            raise PaystackError(msg) from exc
        if response.status_code >= _SERVER_ERROR:
            message = _message_of(response) or f"Paystack answered HTTP {response.status_code}"
            logger.warning("%s answered HTTP %d: %s", where, response.status_code, message)
            raise _RetryableError(PaystackError(message, status_code=response.status_code))
        return response

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._backoff_max, self._backoff_base * 2.0 ** (attempt - 1))
        # Jitter keeps many clients that failed together from retrying in lockstep.
        return ceiling * (0.5 + random.random() / 2)


def _check_reference(reference: str) -> None:
    if not _REFERENCE_PATTERN.fullmatch(reference):
        msg = f"a Paystack reference is letters, digits, '-', '.' and '=' only, got {reference!r}"
        raise ValueError(msg)


def _message_of(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    message = body.get("message") if isinstance(body, dict) else None
    return message if isinstance(message, str) else None


def _read_envelope(response: httpx.Response, *, operation: str) -> _Envelope:
    # Storable from here on: Paystack echoes what customers typed (names, metadata), which may hold a NUL.
    try:
        return msgspec.convert(decode_untrusted_json(response.content), type=_Envelope)
    except (ValueError, msgspec.ValidationError) as exc:
        logger.error("Paystack %s: HTTP %d with an unreadable body: %s", operation, response.status_code, exc)
        msg = "Paystack answered with an unreadable body"
        raise PaystackError(msg, status_code=response.status_code) from exc


def _ensure_success(response: httpx.Response, envelope: _Envelope, *, operation: str, convert_to: type[_T]) -> _T:
    if not response.is_success or not envelope.status:
        message = envelope.message or f"Paystack refused the request with HTTP {response.status_code}"
        logger.warning("Paystack %s: HTTP %d: %s", operation, response.status_code, message)
        raise PaystackError(message, status_code=response.status_code, code=envelope.code)
    try:
        return msgspec.convert(envelope.data, type=convert_to)
    except msgspec.ValidationError as exc:
        logger.error("Paystack %s: HTTP %d with unexpected data: %s", operation, response.status_code, exc)
        msg = f"Paystack answered with unexpected data: {exc}"
        raise PaystackError(msg, status_code=response.status_code) from exc


def sign_webhook(body: bytes, secret: str) -> str:
    """The `x-paystack-signature` Paystack sends with `body`.

    Args:
        body: The raw request body, exactly as sent.
        secret: The key Paystack signs with (the account's secret key).

    Returns:
        The lowercase hex HMAC-SHA512 of `body` keyed with `secret`.
    """
    return hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()


def is_valid_signature(body: bytes, signature: str | None, secret: str) -> bool:
    """Whether `signature` is Paystack's signature of the raw `body`, compared in constant time.

    Args:
        body: The raw request body, never a re-serialised one.
        signature: The `x-paystack-signature` header, or None when absent.
        secret: The webhook secret.

    Returns:
        True only if both `signature` and `secret` are non-empty and the signature matches.
    """
    if not signature or not secret:
        return False
    # Normalise only the hex case: the digest is compared over bytes, so no other input can match.
    return hmac.compare_digest(sign_webhook(body, secret).encode(), signature.strip().lower().encode())
