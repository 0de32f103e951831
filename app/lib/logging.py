"""Logging to stdout and a rotating file, with the request (or task) id on every line."""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
import uuid
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from app.config import Settings

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
"""The id of the request or Celery task the current code runs for."""

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
REQUEST_ID_HEADER = "x-request-id"
MAX_LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5


class RequestIdFilter(logging.Filter):
    """Stamps every record with the current request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


_CREDENTIAL = re.compile(
    # Our API keys (`sk_live_` + 43 characters) and Paystack's secret keys (`sk_live_`/`sk_test_` + 40 hex).
    # A key's 16-character `prefix`, which is meant to be shown, is too short to match.
    r"\bsk_(?:live|test)_[A-Za-z0-9_-]{20,}"
    # A JWT (ours, or an ID token): a JSON header and payload, base64url-encoded, then the signature.
    r"|\beyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"
)
REDACTED = "[REDACTED]"


def redact(text: str) -> str:
    """`text` with anything shaped like an API key, a Paystack secret key or a JWT replaced."""
    return _CREDENTIAL.sub(REDACTED, text)


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed call is reported by the handler that formats it
        return
    redacted = redact(message)
    if redacted != message:
        record.msg, record.args = redacted, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def install_secret_redaction() -> None:
    """Defence in depth: no code should log a credential, but if a message, an argument or an exception does
    (a library's repr, an error quoting its input), it is replaced as the record is made. Done in the record
    factory rather than in a handler filter so that it also covers handlers we do not own: a Celery worker
    writes every record through its own handler as well as ours. Idempotent."""
    current = logging.getLogRecordFactory()
    if getattr(current, "redacts_secrets", False):
        return

    def make_redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        _redact_record(record)
        return record

    make_redacted_record.redacts_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_redacted_record)


_configured: set[str] = set()


def configure_logging(settings: Settings) -> None:
    """Send the root logger to stdout and to `LOG_FILE` (10 MB x 5). Safe to call more than once."""
    install_secret_redaction()
    key = f"{settings.log.file}:{settings.log.level}"
    if key in _configured:
        return
    _configured.add(key)
    formatter = logging.Formatter(LOG_FORMAT)
    request_filter = RequestIdFilter()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if settings.log.file:
        path = Path(settings.log.file)
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(path, maxBytes=MAX_LOG_BYTES, backupCount=LOG_BACKUPS, delay=True)
        )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_wallet_handler", False):
            root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(request_filter)
        handler._wallet_handler = True  # type: ignore[attr-defined]  # noqa: SLF001
        root.addHandler(handler)
    root.setLevel(settings.log.level.upper())
    # Access logs and driver chatter would drown the service's own lines.
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Gives every HTTP request an id (the caller's `X-Request-ID` when sane) and echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", []):
            if name == REQUEST_ID_HEADER.encode():
                incoming = value.decode("latin-1")
                break
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isascii() and incoming.isprintable() else ""
        token = request_id_var.set(request_id or new_request_id())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id_var.get().encode()))
                message["headers"] = headers  # type: ignore[typeddict-unknown-key]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
