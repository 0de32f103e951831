"""Schemathesis over the service's own OpenAPI document: no input makes a 5xx, every answer is documented.

The document is the one the app serves (`/docs/openapi.json`); requests go to the app in-process over ASGI
(with a Paystack stand-in of this module's own behind `POST /wallet/deposit`) as three callers: an anonymous
one, who sends whatever credentials the generator makes up from the document's security schemes; a user with
a JWT and a funded wallet; and that user's API key holding every permission. Each caller sends data that fits
the document (positive) and data that breaks it (negative), a bounded, derandomized number of examples per
operation, so a run is reproducible and takes about half a minute.

For each answer: no 5xx; its status is one the operation documents; its content type and body match the
documented response; its headers match the documented ones; data that breaks the document is refused with a
4xx. Real credentials are never answered 401.

What this cannot drive, and how it is still checked:
- `POST /wallet/paystack/webhook` needs an HMAC of the raw body with the webhook secret, which no generated
  request has: every answer is 401 `INVALID_SIGNATURE` (still checked for conformance). Signed events are
  covered by tests/integration/payments/test_webhooks.py and tests/integration/hostile/.
- `GET /auth/google` and `/auth/google/callback` need a live OpenID Connect provider and a browser's flow
  cookie; with none configured they answer 400 `OAUTH_ERROR`, checked for status and body conformance only.
  The flow itself is covered by tests/integration/auth/test_google_sign_in.py.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from litestar.testing import AsyncTestClient
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi

from app.domain.auth.rate_limit import EXEMPT_PATHS
from app.main import create_app
from tests.support.factories import fund
from tests.support.paystack_standin import PaystackStandIn

if TYPE_CHECKING:
    from litestar import Litestar
    from schemathesis.schemas import APIOperation, BaseSchema
    from sqlalchemy.ext.asyncio import AsyncEngine

    from app.config import Settings
    from tests.support.users import TestUser

OPENAPI_PATH = "/docs/openapi.json"
EXAMPLES_PER_OPERATION = 20
FUNDED_BALANCE = 5_000_000

CONFORMANCE_CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.negative_data_rejection,
]


@pytest.fixture(scope="module")
def fuzz_paystack() -> Iterator[PaystackStandIn]:
    with PaystackStandIn() as standin:
        yield standin


@pytest.fixture(scope="module")
def fuzz_app(settings: Settings, fuzz_paystack: PaystackStandIn) -> Iterator[Litestar]:
    """The app as deployed, but talking to this module's Paystack and answering transfers without waiting
    for a worker (no worker runs here: every accepted transfer is a 202)."""
    app = create_app(
        settings.replaced(
            paystack_base_url=fuzz_paystack.base_url,
            paystack_secret_key=fuzz_paystack.secret_key,
            transfer_wait_ms=0,
        )
    )
    yield app
    # Schemathesis keeps an ASGI app started until the interpreter exits; close its pools now.
    asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def served_document(fuzz_app: Litestar) -> dict[str, Any]:
    """The OpenAPI document exactly as the app serves it."""
    with asgi.get_client(fuzz_app) as client:
        response = client.get(OPENAPI_PATH)
    assert response.status_code == 200
    return cast("dict[str, Any]", response.json())


def _schema_for(document: dict[str, Any], app: Litestar, *, with_security: bool) -> BaseSchema:
    """The document as schemathesis reads it. Without security, schemathesis generates no credentials of its
    own, and the test's real ones are the only ones sent."""
    if not with_security:
        document = copy.deepcopy(document)
        for operations in document["paths"].values():
            for operation in operations.values():
                if isinstance(operation, dict):
                    operation.pop("security", None)
        document.pop("security", None)
    loaded = schemathesis.openapi.from_dict(document)
    loaded.app = app
    return loaded


@pytest.fixture(params=["anonymous", "user", "api_key"])
async def credentials(
    request: pytest.FixtureRequest,
    make_user: Callable[..., Awaitable[TestUser]],
    engine: AsyncEngine,
    client: AsyncTestClient[Litestar],
) -> dict[str, str]:
    """The headers of one kind of caller: nobody, a user whose wallet holds money, or that user's API key
    holding every permission."""
    if request.param == "anonymous":
        return {}
    user = await make_user()
    await fund(engine, user.wallet_id, FUNDED_BALANCE)
    if request.param == "user":
        return user.headers
    created = await client.post(
        "/keys/create",
        json={"name": "fuzz", "permissions": ["deposit", "transfer", "read"], "expiry": "1D"},
        headers=user.headers,
    )
    assert created.status_code == 201, created.text
    return {"x-api-key": created.json()["api_key"]}


def _takes_input(operation: APIOperation) -> bool:
    return bool(operation.body) or any(True for _ in operation.iter_parameters())


def _logout_last(operation: APIOperation) -> bool:
    # Fuzzing the logout revokes the caller's token: everything else runs before it.
    return operation.label == "POST /auth/logout"


def _fuzz(
    operation: APIOperation, mode: GenerationMode, credentials: dict[str, str], statuses: dict[str, set[int]]
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def requests_to_the_operation(case: schemathesis.Case) -> None:
        response = case.call_and_validate(headers=dict(credentials), checks=CONFORMANCE_CHECKS)
        statuses.setdefault(operation.label, set()).add(response.status_code)

    requests_to_the_operation()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_every_answer_is_documented_and_none_is_a_server_error(
    served_document: dict[str, Any], fuzz_app: Litestar, mode: GenerationMode, credentials: dict[str, str]
) -> None:
    # Anonymous requests keep the document's security, so whatever credentials the generator makes up are sent.
    schema = _schema_for(served_document, fuzz_app, with_security=not credentials)
    operations = sorted((result.ok() for result in schema.get_all_operations()), key=_logout_last)
    assert len(operations) >= 18, "the document lost operations"
    if mode is GenerationMode.NEGATIVE:
        operations = [operation for operation in operations if _takes_input(operation)]
    failures: list[str] = []
    statuses: dict[str, set[int]] = {}
    for operation in operations:
        try:
            _fuzz(operation, mode, credentials, statuses)
        except Unsatisfiable:
            # Only a path parameter of any string, or no input at all: nothing can be made invalid.
            if operation.body:
                failures.append(f"{operation.label}: no request could be generated")
        except (Exception, BaseExceptionGroup) as exc:  # every operation is fuzzed, failures reported together
            failures.append(f"{operation.label}:\n{exc}")
    assert not failures, "\n\n".join(failures)
    if credentials:
        # Real credentials are never refused. The webhook wants Paystack's signature, not a caller's, and
        # verify-token checks a JWT, which an API key is not.
        refused = {label for label, seen in statuses.items() if 401 in seen}
        expected = {"POST /wallet/paystack/webhook"} | (
            {"POST /auth/verify-token"} if "x-api-key" in credentials else set()
        )
        assert refused <= expected, statuses
        assert any(200 in statuses.get(label, set()) for label in ("GET /wallet/balance", "GET /wallet/transactions"))


def test_every_documented_error_is_the_contracts_error_body(served_document: dict[str, Any]) -> None:
    """Clients parse one error shape; a response documented with another (such as the framework's own
    validation error) would describe an answer the service never gives."""
    wrong = []
    for path, operations in served_document["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            for status, response in operation["responses"].items():
                if int(status) < 400 or (path == "/health" and status == "503"):
                    continue
                schemas = [media["schema"] for media in response.get("content", {}).values()]
                if schemas != [{"$ref": "#/components/schemas/ErrorBody"}]:
                    wrong.append(f"{method.upper()} {path} {status}: {schemas}")
    assert wrong == []


def test_every_operation_the_rate_limit_applies_to_documents_its_429(served_document: dict[str, Any]) -> None:
    undocumented = [
        f"{method.upper()} {path}"
        for path, operations in served_document["paths"].items()
        if path not in EXEMPT_PATHS
        for method, operation in operations.items()
        if isinstance(operation, dict) and "429" not in operation["responses"]
    ]
    assert undocumented == []
