"""Checking the sandbox's traffic against Paystack's official OpenAPI description, when switched on.

Tests switch it on so that a client that talks to Paystack wrongly, or an emulation that answers wrongly, cannot
pass unnoticed. `openapi-core` is a development dependency and the description lives outside the package, so
everything here is imported only when a sandbox is given a description to validate against.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from pathlib import Path

    from openapi_core import OpenAPI

# The description only knows Paystack's production server; traffic is validated as if sent there, since the
# server prefix is not what the validation is about (and loopback URLs would all be ServerNotFound).
PAYSTACK_SERVER_URL: Final = "https://api.paystack.co"

_descriptions_lock = threading.Lock()
_descriptions: dict[Path, OpenAPI] = {}


def paystack_openapi(path: Path) -> OpenAPI:
    """The OpenAPI description at `path`, parsed once per process (Paystack's is 500 KB and takes a second)."""
    from openapi_core import Config, OpenAPI

    with _descriptions_lock:
        if path not in _descriptions:
            # The official document is trusted; checking it against the OpenAPI meta-schema would triple the
            # load time of every test session for nothing.
            _descriptions[path] = OpenAPI.from_file_path(str(path), config=Config(spec_validator_cls=None))
        return _descriptions[path]


@dataclass
class _Request:
    """An HTTP request in the shape openapi-core's `Request` protocol expects."""

    method: str
    path: str
    body: bytes | None
    content_type: str
    parameters: Any
    host_url: str = PAYSTACK_SERVER_URL


@dataclass
class _Response:
    """An HTTP response in the shape openapi-core's `Response` protocol expects."""

    status_code: int
    data: bytes
    content_type: str = "application/json"
    headers: Any = field(default=None)


class ApiRequest(Protocol):
    """A request to Paystack's API as the sandbox received it."""

    method: str
    path: str
    body: bytes
    query: list[tuple[str, str]]
    headers: list[tuple[str, str]]


def _as_openapi_request(request: ApiRequest) -> _Request:
    from openapi_core.datatypes import RequestParameters
    from werkzeug.datastructures import Headers, ImmutableMultiDict

    header = Headers(request.headers)
    return _Request(
        method=request.method.lower(),
        path=request.path,
        body=request.body or None,
        content_type=header.get("content-type", "").lower(),
        parameters=RequestParameters(query=ImmutableMultiDict(request.query), header=header),
    )


def request_errors(openapi_path: Path, request: ApiRequest) -> list[str]:
    """How a request to Paystack breaks the description at `openapi_path` (empty when it does not)."""
    from openapi_core.validation.request.exceptions import SecurityValidationError

    errors = []
    for error in paystack_openapi(openapi_path).iter_request_errors(_as_openapi_request(request)):
        # The bearerAuth requirement is enforced by the emulation itself, with Paystack's documented 401
        # `Invalid key`; reporting it as a violation would replace that answer with a 500.
        if isinstance(error, SecurityValidationError):
            continue
        errors.append(_describe(error))
    return errors


def response_errors(openapi_path: Path, request: ApiRequest, status: int, payload: bytes) -> list[str]:
    """How the answer `status`, `payload` to `request` breaks the description (empty when it does not)."""
    from werkzeug.datastructures import Headers

    response = _Response(status_code=status, data=payload, headers=Headers())
    openapi = paystack_openapi(openapi_path)
    return [_describe(error) for error in openapi.iter_response_errors(_as_openapi_request(request), response)]


def _describe(exc: BaseException) -> str:
    """An openapi-core error with its causes: the top-level message alone rarely names the field."""
    parts = [f"{type(exc).__name__}: {exc}"]
    cause = exc.__cause__
    while cause is not None:
        parts.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__
    return " <- ".join(parts)
