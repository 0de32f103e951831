"""One error model: every failure becomes `{"detail", "error_code"}` with the contract's status.

Domain code raises a `WalletError` subclass; `exception_to_response` is the only place that turns any
exception (ours, Litestar's, the database's, Redis's, a bug) into an HTTP answer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
from litestar import Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from app.lib.db import sqlstate_of
from app.lib.schema import NamedEnum

if TYPE_CHECKING:
    from litestar import Request

logger = logging.getLogger(__name__)


class ErrorCode(NamedEnum):
    """Every `error_code` the service answers with (the contract's table of error codes)."""

    VALIDATION_ERROR = "VALIDATION_ERROR"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    SELF_TRANSFER = "SELF_TRANSFER"
    API_KEY_LIMIT_REACHED = "API_KEY_LIMIT_REACHED"
    API_KEY_NOT_EXPIRED = "API_KEY_NOT_EXPIRED"
    BANK_ACCOUNT_INVALID = "BANK_ACCOUNT_INVALID"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    OAUTH_ERROR = "OAUTH_ERROR"
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
    INVALID_TOKEN = "INVALID_TOKEN"  # noqa: S105 - an error code, not a secret
    TOKEN_EXPIRED = "TOKEN_EXPIRED"  # noqa: S105 - an error code, not a secret
    TOKEN_REVOKED = "TOKEN_REVOKED"  # noqa: S105 - an error code, not a secret
    INVALID_API_KEY = "INVALID_API_KEY"
    API_KEY_EXPIRED = "API_KEY_EXPIRED"
    API_KEY_REVOKED = "API_KEY_REVOKED"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"
    WALLET_NOT_FOUND = "WALLET_NOT_FOUND"
    TRANSACTION_NOT_FOUND = "TRANSACTION_NOT_FOUND"
    API_KEY_NOT_FOUND = "API_KEY_NOT_FOUND"
    WITHDRAWAL_NOT_FOUND = "WITHDRAWAL_NOT_FOUND"
    WEBHOOK_NOT_FOUND = "WEBHOOK_NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    IDEMPOTENCY_KEY_IN_USE = "IDEMPOTENCY_KEY_IN_USE"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    RATE_LIMITED = "RATE_LIMITED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    PAYMENT_PROVIDER_ERROR = "PAYMENT_PROVIDER_ERROR"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """The body of every error response."""

    detail: str
    error_code: ErrorCode
    errors: list[dict[str, Any]] | None = None
    """Field details of a `VALIDATION_ERROR`, when there are any."""


class WalletError(Exception):
    """Base of every error the service answers on purpose."""

    status_code: int = 400
    error_code: ErrorCode = ErrorCode.VALIDATION_ERROR
    default_detail: ClassVar[str] = "The request is invalid."

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        self.detail = detail or self.default_detail
        self.headers = headers or {}
        super().__init__(self.detail)

    @classmethod
    def with_status(cls, status_code: int, error_code: ErrorCode, detail: str) -> WalletError:
        """An error for a status the hierarchy has no class for (405, 415, 500)."""
        error = cls(detail)
        error.status_code = status_code
        error.error_code = error_code
        return error


class RequestValidationError(WalletError):
    error_code = ErrorCode.VALIDATION_ERROR
    default_detail = "The request body or parameters are invalid."

    def __init__(self, detail: str | None = None, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors


class InsufficientBalance(WalletError):
    error_code = ErrorCode.INSUFFICIENT_BALANCE
    default_detail = "The wallet's available balance is lower than the amount."


class SelfTransfer(WalletError):
    error_code = ErrorCode.SELF_TRANSFER
    default_detail = "A wallet cannot transfer to itself."


class BankAccountInvalid(WalletError):
    error_code = ErrorCode.BANK_ACCOUNT_INVALID
    default_detail = "Paystack cannot resolve this account number at this bank."


class LimitExceeded(WalletError):
    error_code = ErrorCode.LIMIT_EXCEEDED
    default_detail = "This withdrawal would exceed your daily withdrawal limit."


class ApiKeyLimitReached(WalletError):
    error_code = ErrorCode.API_KEY_LIMIT_REACHED
    default_detail = "A user can have at most 5 active API keys."


class ApiKeyNotExpired(WalletError):
    error_code = ErrorCode.API_KEY_NOT_EXPIRED
    default_detail = "Only a key that has expired, and was not rolled over already, can be rolled over."


class OAuthFailed(WalletError):
    error_code = ErrorCode.OAUTH_ERROR
    default_detail = "Sign-in with the identity provider failed."


class NotAuthenticated(WalletError):
    status_code = 401
    error_code = ErrorCode.NOT_AUTHENTICATED
    default_detail = "Authentication credentials were not provided."


class InvalidToken(WalletError):
    status_code = 401
    error_code = ErrorCode.INVALID_TOKEN
    default_detail = "The access token is invalid."


class TokenExpired(InvalidToken):
    error_code = ErrorCode.TOKEN_EXPIRED
    default_detail = "The access token has expired."


class TokenRevoked(InvalidToken):
    error_code = ErrorCode.TOKEN_REVOKED
    default_detail = "The access token has been revoked."


class InvalidApiKey(WalletError):
    status_code = 401
    error_code = ErrorCode.INVALID_API_KEY
    default_detail = "The API key is invalid."


class ApiKeyExpired(InvalidApiKey):
    error_code = ErrorCode.API_KEY_EXPIRED
    default_detail = "The API key has expired."


class ApiKeyRevoked(InvalidApiKey):
    error_code = ErrorCode.API_KEY_REVOKED
    default_detail = "The API key has been revoked."


class InvalidSignature(WalletError):
    status_code = 401
    error_code = ErrorCode.INVALID_SIGNATURE
    default_detail = "The webhook signature is missing or wrong."


class PermissionDenied(WalletError):
    status_code = 403
    error_code = ErrorCode.PERMISSION_DENIED
    default_detail = "The credentials do not allow this action."


class NotFound(WalletError):
    status_code = 404
    error_code = ErrorCode.NOT_FOUND
    default_detail = "Not found."


class WalletNotFound(NotFound):
    error_code = ErrorCode.WALLET_NOT_FOUND
    default_detail = "Wallet not found."


class TransactionNotFound(NotFound):
    error_code = ErrorCode.TRANSACTION_NOT_FOUND
    default_detail = "Transaction not found."


class ApiKeyNotFound(NotFound):
    error_code = ErrorCode.API_KEY_NOT_FOUND
    default_detail = "API key not found."


class WithdrawalNotFound(NotFound):
    error_code = ErrorCode.WITHDRAWAL_NOT_FOUND
    default_detail = "Withdrawal not found."


class WebhookNotFound(NotFound):
    error_code = ErrorCode.WEBHOOK_NOT_FOUND
    default_detail = "Webhook endpoint not found."


class IdempotencyKeyInUse(WalletError):
    status_code = 409
    error_code = ErrorCode.IDEMPOTENCY_KEY_IN_USE
    default_detail = "A request with this Idempotency-Key is still being processed."


class IdempotencyKeyReused(WalletError):
    status_code = 422
    error_code = ErrorCode.IDEMPOTENCY_KEY_REUSED
    default_detail = "This Idempotency-Key was used with a different request."


class RequestTimeout(WalletError):
    status_code = 408
    error_code = ErrorCode.REQUEST_TIMEOUT
    default_detail = "The request body did not arrive in time."


class PayloadTooLarge(WalletError):
    status_code = 413
    error_code = ErrorCode.PAYLOAD_TOO_LARGE
    default_detail = "The request body is too large."


class RateLimited(WalletError):
    status_code = 429
    error_code = ErrorCode.RATE_LIMITED
    default_detail = "Too many requests; retry later."


class PaymentProviderError(WalletError):
    status_code = 502
    error_code = ErrorCode.PAYMENT_PROVIDER_ERROR
    default_detail = "The payment provider refused or failed the request."


class ServiceUnavailable(WalletError):
    status_code = 503
    error_code = ErrorCode.SERVICE_UNAVAILABLE
    default_detail = "A dependency (database or broker) is unreachable; retry shortly."


def is_unavailable(exc: BaseException) -> bool:
    """True when the failure is an unreachable database or Redis, not a bug."""
    import redis.exceptions
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            return True
        if isinstance(current, (OperationalError, InterfaceError, PoolTimeout, ConnectionError, TimeoutError)):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if type(current).__module__.startswith("asyncpg") and type(current).__name__ in {
            "ConnectionDoesNotExistError",
            "CannotConnectNowError",
            "ConnectionFailureError",
            "AdminShutdownError",
            "TooManyConnectionsError",
            # A connection the server ended under us, caught between two of asyncpg's protocol states.
            "InternalClientError",
            "InterfaceError",
        }:
            return True
        if type(current).__name__ == "_DeadConnection":
            return True
        current = current.__cause__ or current.__context__
    return False


UNSTORABLE_TEXT_SQLSTATES = frozenset({"22021", "22P05"})
"""PostgreSQL's "character not in repertoire" and "untranslatable character": text it cannot store (a NUL
character, in a name, a reference, a header or a query) came from the request, so it is the caller's mistake."""


def as_wallet_error(exc: Exception) -> WalletError | None:
    """The `WalletError` an exception stands for, or None for a bug."""
    if isinstance(exc, WalletError):
        return exc
    if isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else None
        return RequestValidationError(_validation_detail(exc), errors=extra)
    if isinstance(exc, NotFoundException):
        return NotFound("No such resource." if exc.detail in {"", "Not Found"} else exc.detail)
    if isinstance(exc, MethodNotAllowedException):
        return WalletError.with_status(
            405, ErrorCode.METHOD_NOT_ALLOWED, "This method is not allowed on this resource."
        )
    if isinstance(exc, HTTPException) and exc.status_code < HTTP_500_INTERNAL_SERVER_ERROR:
        if exc.status_code == 413:
            return PayloadTooLarge()
        code = {
            401: ErrorCode.NOT_AUTHENTICATED,
            403: ErrorCode.PERMISSION_DENIED,
            415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        }.get(exc.status_code, ErrorCode.VALIDATION_ERROR)
        return WalletError.with_status(exc.status_code, code, exc.detail or "The request is invalid.")
    if is_unavailable(exc):
        return ServiceUnavailable()
    if sqlstate_of(exc) in UNSTORABLE_TEXT_SQLSTATES:
        return RequestValidationError("The request contains a character that cannot be stored, such as NUL.")
    return None


def _validation_detail(exc: ValidationException) -> str:
    detail = exc.detail or "Validation failed."
    if isinstance(exc.extra, list) and exc.extra:
        first = exc.extra[0]
        if isinstance(first, dict) and first.get("key") == "data" and first.get("source") == "body":
            return "A JSON request body is required."
        if isinstance(first, dict) and first.get("message"):
            key = first.get("key")
            return f"Validation failed: {first['message']}" + (f" (field `{key}`)" if key else "")
    return detail


def exception_to_response(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """The single exception handler of the app."""
    error = as_wallet_error(exc)
    if error is None:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        error = WalletError.with_status(
            HTTP_500_INTERNAL_SERVER_ERROR, ErrorCode.INTERNAL_ERROR, "An internal error occurred; it has been logged."
        )
    elif error.status_code >= HTTP_500_INTERNAL_SERVER_ERROR:
        logger.warning("%s on %s %s: %r", error.error_code, request.method, request.url.path, exc)
    errors = getattr(error, "errors", None)
    headers = dict(error.headers)
    if error.status_code == 503:
        headers.setdefault("Retry-After", "1")
    return Response(
        ErrorBody(detail=error.detail, error_code=error.error_code, errors=errors),
        status_code=error.status_code,
        headers=headers,
        media_type="application/json",
    )
