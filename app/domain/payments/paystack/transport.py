"""Paystack's HTTP transport: one connection pool, bounded retries, its `{"status","message","data"}` envelope.

Requests that time out, lose their connection or answer 5xx are retried with exponential backoff and jitter;
any other failure is final at once. Every failure, whatever its cause, surfaces as a `PaystackError`.
What Paystack sends back is made storable (`app.lib.storable`) before anyone reads it.
"""

from __future__ import annotations

import asyncio
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

    from app.config import PaystackSettings

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS: Final = 3.0
NOT_FOUND: Final = 404
_SERVER_ERROR: Final = 500
_NOT_ABOUT_THE_REQUEST: Final = frozenset({401, 403, 408, 429})
_REFERENCE_PATTERN: Final = re.compile(r"^[A-Za-z0-9.=-]+$")

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

    @property
    def refused(self) -> bool:
        """Paystack answered and refused THIS request (a 4xx about it): nothing was done, and sending it again
        unchanged will not help. Not a bad key, a rate limit, a timeout or a 5xx, whose outcome is ours to fix
        or unknown."""
        return (
            self.status_code is not None
            and 400 <= self.status_code < 500
            and self.status_code not in _NOT_ABOUT_THE_REQUEST
        )


class PaystackNotFound(PaystackError):
    """Paystack knows nothing with this reference (HTTP 404)."""


class Envelope(msgspec.Struct):
    status: bool
    message: str | None = None
    code: str | None = None
    data: Any = None


class _RetryableError(Exception):
    """An attempt that may succeed if repeated: a timeout, a broken connection or a 5xx."""

    def __init__(self, error: PaystackError) -> None:
        self.error = error
        super().__init__(error.message)


class PaystackTransport:
    """An async HTTP client of Paystack's API; one instance holds one connection pool and is meant to be reused."""

    def __init__(
        self,
        settings: PaystackSettings,
        *,
        max_attempts: int = 3,
        backoff_base_seconds: float = 0.25,
        backoff_max_seconds: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Build the client.

        Args:
            settings: Supplies the base URL, the secret key and the timeout.
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
        timeout = settings.timeout_seconds
        self._http = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {settings.secret_key}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT_SECONDS, timeout)),
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool; the client is unusable afterwards."""
        await self._http.aclose()

    async def send(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        retry: bool = True,
    ) -> tuple[httpx.Response, int]:
        """Send one request, retrying transient failures unless `retry` is False; the final answer and the
        attempts it took.

        `retry=False` is for a request whose lost answer must be looked up before it is sent again (a transfer:
        Paystack may have made it).
        """
        attempts = self._max_attempts if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return await self._attempt(method, path, json=json, params=params, attempt=attempt), attempt
            except _RetryableError as failure:
                if attempt == attempts:
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
        params: Mapping[str, Any] | None,
        attempt: int,
    ) -> httpx.Response:
        where = f"Paystack {method} {path} (attempt {attempt} of {self._max_attempts})"
        try:
            response = await self._http.request(method, path, json=json, params=params)
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


def check_reference(reference: str) -> None:
    """Raises ValueError unless `reference` is letters, digits, `-`, `.` and `=` (what Paystack accepts)."""
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


def read_envelope(response: httpx.Response, *, operation: str) -> Envelope:
    """The answer's envelope, made storable (Paystack echoes what customers typed, which may hold a NUL)."""
    try:
        return msgspec.convert(decode_untrusted_json(response.content), type=Envelope)
    except (ValueError, msgspec.ValidationError) as exc:
        logger.error("Paystack %s: HTTP %d with an unreadable body: %s", operation, response.status_code, exc)
        msg = "Paystack answered with an unreadable body"
        raise PaystackError(msg, status_code=response.status_code) from exc


def data_of(response: httpx.Response, envelope: Envelope, *, operation: str, convert_to: type[_T]) -> _T:
    """The envelope's `data` as `convert_to`, or the refusal as a `PaystackError`."""
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


def not_found(
    response: httpx.Response, envelope: Envelope, *, operation: str, reference: str
) -> PaystackNotFound | None:
    """A `PaystackNotFound` when Paystack answered 404 in its own envelope (read first: a 404 that is not
    Paystack's JSON, from a wrong base URL or a proxy, must not pass for a final "unknown reference")."""
    if response.status_code != NOT_FOUND:
        return None
    logger.info("Paystack %s %s: HTTP 404: %s", operation, reference, envelope.message)
    return PaystackNotFound(envelope.message or "Reference not found", status_code=NOT_FOUND, code=envelope.code)
