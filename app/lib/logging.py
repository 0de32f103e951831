"""Logging to stdout and a rotating file, with the request (or task) id on every line.

Each process configures its root logger once, naming its role: the API app factory (`role="api"`), and in
Celery the `setup_logging` signal (`"worker"` or `"beat"`), which also stops Celery from adding its own
handler, so every record (Celery's own `received`/`succeeded` lines too) is written once, in our format.
`LOG_FORMAT` picks the format: `text` (`TEXT_FORMAT`) or `json` (one object per line, `JsonFormatter`).

Rotation is safe only with one writer per file, so each process writes its own file derived from
`LOG_FILE` (`log_file_for`): `logs/app.log` becomes `logs/app.api.log`, `logs/app.worker.log` and
`logs/app.beat.log`; a process that is one of several of its role (a uvicorn `--workers` child, a prefork
pool child) adds its pid: `logs/app.api.4242.log`.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import multiprocessing
import os
import re
import sys
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from app.config import Settings

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
"""The id of the request or Celery task the current code runs for."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.encode()
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
    # An event endpoint's signing secret (`whsec_` + 32 random bytes, base64url).
    r"|\bwhsec_[A-Za-z0-9_-]{20,}"
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


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: `time` (ISO 8601, UTC), `level`, `logger`, `request_id`,
    `message`, and `exc_info` (the traceback's text) when there is one. Secrets are already redacted by then
    (`install_secret_redaction`), the traceback included."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = record.stack_info
        return json.dumps(line, default=str)


def make_formatter(log_format: str) -> logging.Formatter:
    """The formatter of a `LOG_FORMAT` value (`text` or `json`)."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def log_file_for(log_file: str, role: str, pid: int | None = None) -> Path | None:
    """The file a process of `role` writes, derived from `LOG_FILE`: `logs/app.log` -> `logs/app.api.log`, or
    `logs/app.api.4242.log` for a process that is one of several of its role (`pid`). None when `LOG_FILE` is
    empty (stdout only)."""
    if not log_file:
        return None
    path = Path(log_file)
    suffix = path.suffix or ".log"
    stem = path.name.removesuffix(path.suffix) if path.suffix else path.name
    parts = [stem, role] + ([str(pid)] if pid is not None else [])
    return path.with_name(".".join(parts) + suffix)


def is_one_of_several_api_processes() -> bool:
    """True in a process uvicorn started for `--workers` > 1 (a multiprocessing child of its supervisor)."""
    return multiprocessing.parent_process() is not None


_configured: set[tuple[object, ...]] = set()


def configure_logging(settings: Settings, role: str, *, one_of_several: bool = False) -> None:
    """Send the root logger to stdout and to this process's own file (`log_file_for`: `LOG_FILE` with `role`,
    and the pid when `one_of_several` processes of the role run at once), in `LOG_FORMAT`.

    Replaces the handlers of a previous call, so each record is written once. Safe to call more than once.
    """
    install_secret_redaction()
    log = settings.log
    pid = os.getpid() if one_of_several else None
    key = (log.file, log.level, log.format, role, pid)
    if key in _configured:
        return
    _configured.clear()
    _configured.add(key)
    formatter = make_formatter(log.format)
    request_filter = RequestIdFilter()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    path = log_file_for(log.file, role, pid)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(path, maxBytes=MAX_LOG_BYTES, backupCount=LOG_BACKUPS, delay=True)
        )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_wallet_handler", False):
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(request_filter)
        handler._wallet_handler = True  # type: ignore[attr-defined]  # noqa: SLF001
        root.addHandler(handler)
    root.setLevel(log.level.upper())
    # uvicorn's access lines (off: `RequestIdMiddleware` writes ours) and driver chatter would drown the rest.
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def new_request_id() -> str:
    return uuid.uuid4().hex


access_logger = logging.getLogger("app.access")


class RequestIdMiddleware:
    """Gives every HTTP request an id (the caller's `X-Request-ID` when sane) and echoes it back; with
    `access_log`, writes one line per request once it is answered: method, path (never the query string,
    which may carry a sign-in code), status (`-` when no answer started), duration in ms, under its id."""

    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", []):
            if name == REQUEST_ID_HEADER_BYTES:
                incoming = value.decode("latin-1")
                break
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isascii() and incoming.isprintable() else ""
        request_id = request_id or new_request_id()
        token = request_id_var.set(request_id)
        status: int | str = "-"

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER_BYTES, request_id.encode()))
                message["headers"] = headers  # type: ignore[typeddict-unknown-key]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.access_log:
                access_logger.info(
                    "%s %s %s %.1fms",
                    scope["method"],  # type: ignore[typeddict-item]
                    scope["path"],
                    status,
                    (time.perf_counter() - started) * 1000,
                )
            request_id_var.reset(token)
