"""Logging to stdout and a rotating file, with the request (or task) id on every line."""

from __future__ import annotations

import logging
import logging.handlers
import sys
import uuid
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING

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


_configured: set[str] = set()


def configure_logging(settings: Settings) -> None:
    """Send the root logger to stdout and to `LOG_FILE` (10 MB x 5). Safe to call more than once."""
    key = f"{settings.log_file}:{settings.log_level}"
    if key in _configured:
        return
    _configured.add(key)
    formatter = logging.Formatter(LOG_FORMAT)
    request_filter = RequestIdFilter()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if settings.log_file:
        path = Path(settings.log_file)
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
    root.setLevel(settings.log_level.upper())
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
