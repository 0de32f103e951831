"""Every protected route by every kind of credential, from the live route list.

`EXPECTED` says what each protected operation needs. The table is checked against the running app: an
operation that declares OpenAPI security but is missing from the table fails the suite, and so does a
route whose guard or declared security disagrees with the table. Rows for routes that are not mounted
(yet) are skipped with the reason, so the matrix turns on as routes land.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import update

from app.db import models as m
from app.domain.auth.guards import ANY_KEY, USER_ONLY_SECURITY, USER_OR_KEY_SECURITY, requires
from app.domain.auth.tokens import issue_token
from app.domain.auth.users import Identity
from app.domain.keys.service import ApiKeyService
from app.lib.db import session_maker
from tests.support.auth import browser, running
from tests.support.factories import sign_in

if TYPE_CHECKING:
    from litestar import Litestar
    from sqlalchemy.ext.asyncio import AsyncEngine

    from app.config import Settings

JWT_ONLY = "jwt-only"
TOKEN_CHECK = "token-check"
"""`POST /auth/verify-token`: it checks the JWT it is given; an API key is not a token."""

EXPECTED: dict[tuple[str, str], str] = {
    ("POST", "/auth/logout"): JWT_ONLY,
    ("POST", "/auth/verify-token"): TOKEN_CHECK,
    ("POST", "/keys/create"): JWT_ONLY,
    ("GET", "/keys"): JWT_ONLY,
    ("POST", "/keys/rollover"): JWT_ONLY,
    ("POST", "/keys/revoke/{key_id}"): JWT_ONLY,
    ("POST", "/wallet/deposit"): "deposit",
    ("GET", "/wallet/deposit/{reference}/status"): "read",
    ("GET", "/wallet/balance"): "read",
    ("POST", "/wallet/transfer"): "transfer",
    ("GET", "/wallet/transactions"): "read",
    ("GET", "/wallet/transactions/{reference}"): "read",
    ("GET", "/banks"): ANY_KEY,
    # Money leaving to a bank account needs its own permission: `transfer` never implies it.
    ("POST", "/wallet/withdrawals"): "withdraw",
    ("GET", "/wallet/withdrawals"): "read",
    ("GET", "/wallet/withdrawals/{reference}"): "read",
    # Where a wallet's events go is the user's decision, never a key's.
    ("POST", "/webhooks"): JWT_ONLY,
    ("GET", "/webhooks"): JWT_ONLY,
    ("DELETE", "/webhooks/{endpoint_id}"): JWT_ONLY,
    ("GET", "/webhooks/{endpoint_id}/deliveries"): JWT_ONLY,
    ("POST", "/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver"): JWT_ONLY,
}
"""What each protected operation needs: a permission (a JWT, or a key holding it), or a JWT only."""

CREDENTIALS = [
    "jwt",
    "key-with-permission",
    "key-without-permission",
    "expired-key",
    "revoked-key",
    "unknown-key",
    "none",
]
ALLOWED = "allowed"


def expectation(need: str, credential: str) -> tuple[int, str] | str:
    """`ALLOWED` (authentication passed: any status but 401/403), or the (status, error_code) of the refusal."""
    if credential == "jwt":
        return ALLOWED
    if credential == "none":
        return 401, "NOT_AUTHENTICATED"
    if need == TOKEN_CHECK:
        return 401, "NOT_AUTHENTICATED"
    if need == JWT_ONLY:
        return 403, "PERMISSION_DENIED"
    return {
        "key-with-permission": ALLOWED,
        # Any valid key may read reference data, whatever it lacks.
        "key-without-permission": ALLOWED if need == ANY_KEY else (403, "PERMISSION_DENIED"),
        "expired-key": (401, "API_KEY_EXPIRED"),
        "revoked-key": (401, "API_KEY_REVOKED"),
        "unknown-key": (401, "INVALID_API_KEY"),
    }[credential]


def _operations(app: Litestar) -> dict[tuple[str, str], list[dict[str, list[str]]] | None]:
    document = app.openapi_schema.to_schema()
    return {
        (method.upper(), path): operation.get("security")
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    }


def _guards(app: Litestar) -> dict[tuple[str, str], list[requires]]:
    found: dict[tuple[str, str], list[requires]] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route.path)
            for method in handler.http_methods - {"OPTIONS", "HEAD"}:
                found[(method, path)] = [g for g in handler.resolve_guards() if isinstance(g, requires)]
    return found


@dataclass
class Fixture:
    app: Litestar
    client: httpx.AsyncClient
    operations: dict[tuple[str, str], Any]
    owner_id: uuid.UUID
    owner_email: str
    only: dict[str, str]
    """Permission → a key holding just that permission."""
    all_but: dict[str, str]
    """Permission → a key holding every permission but that one."""
    expired: str
    revoked: str


@pytest.fixture(scope="module")
async def matrix(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Fixture]:
    from app.main import create_app

    sessions = session_maker(engine)
    async with sessions() as session:
        owner, _ = await sign_in(
            session, Identity(email=f"matrix-{uuid.uuid4().hex[:10]}@example.com"), settings.money.currency
        )
        other, _ = await sign_in(
            session, Identity(email=f"matrix-{uuid.uuid4().hex[:10]}@example.com"), settings.money.currency
        )
        keys = ApiKeyService(session=session)
        everything = ["deposit", "transfer", "read", "withdraw"]
        expired = await keys.create_key(owner.id, name="expired", permissions=everything, expiry="1H")
        await session.execute(
            update(m.ApiKey)
            .where(m.ApiKey.id == expired.key.id)
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
        await session.commit()
        revoked = await keys.create_key(owner.id, name="revoked", permissions=everything, expiry="1D")
        await keys.revoke(owner.id, revoked.key.id)
        await session.commit()
        only = {
            p: (await keys.create_key(owner.id, name=f"only-{p}", permissions=[p], expiry="1D")).secret
            for p in everything
        }
        all_but = {
            p: (
                await keys.create_key(
                    other.id, name=f"no-{p}", permissions=[q for q in everything if q != p], expiry="1D"
                )
            ).secret
            for p in everything
        }
        await session.commit()
    async with running(create_app(settings)) as app, browser(app) as client:
        yield Fixture(
            app=app,
            client=client,
            operations=_operations(app),
            owner_id=owner.id,
            owner_email=owner.email,
            only=only,
            all_but=all_but,
            expired=expired.secret,
            revoked=revoked.secret,
        )


def test_every_operation_that_declares_security_has_a_row_in_the_table() -> None:
    # Runs against a fresh app of its own: the check must not depend on the module's fixtures.
    from app.main import create_app

    app = create_app()
    secured = {op for op, security in _operations(app).items() if security}
    missing = sorted(secured - set(EXPECTED))
    assert not missing, f"protected operations without a row in EXPECTED: {missing}"


def test_every_guarded_route_declares_security_that_matches_its_guard_and_the_table() -> None:
    from app.main import create_app

    app = create_app()
    operations = _operations(app)
    for operation, guards in _guards(app).items():
        if not guards:
            continue
        assert operation in EXPECTED, f"{operation} is guarded but has no row in EXPECTED"
        need = EXPECTED[operation]
        assert [g.need or JWT_ONLY for g in guards] == [need], operation
        assert operations[operation] == (USER_ONLY_SECURITY if need == JWT_ONLY else USER_OR_KEY_SECURITY), operation
    for operation, need in EXPECTED.items():
        if operation in operations and need != TOKEN_CHECK:
            assert _guards(app).get(operation), f"{operation} is in the table but has no `requires` guard"


def _headers(matrix: Fixture, need: str, credential: str, settings: Settings) -> dict[str, str]:
    permission = need if need not in {JWT_ONLY, TOKEN_CHECK, ANY_KEY} else "read"
    if credential == "jwt":
        # A fresh token per cell: the logout row revokes the one it is given.
        token = issue_token(settings, user_id=matrix.owner_id, email=matrix.owner_email).access_token
        return {"Authorization": f"Bearer {token}"}
    secret = {
        "key-with-permission": matrix.only[permission],
        "key-without-permission": matrix.all_but[permission],
        "expired-key": matrix.expired,
        "revoked-key": matrix.revoked,
        "unknown-key": "sk_live_" + uuid.uuid4().hex + uuid.uuid4().hex,
        "none": None,
    }[credential]
    return {"x-api-key": secret} if secret else {}


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("operation", list(EXPECTED), ids=[f"{m} {p}" for m, p in EXPECTED])
async def test_permission_matrix(
    matrix: Fixture, settings: Settings, operation: tuple[str, str], credential: str
) -> None:
    if operation not in matrix.operations:
        pytest.skip(f"{operation[0]} {operation[1]} is not mounted yet")
    method, template = operation
    need = EXPECTED[operation]
    path = template.replace("{key_id}", str(uuid.uuid4())).replace("{reference}", f"ref-{uuid.uuid4().hex[:12]}")
    path = path.replace("{endpoint_id}", str(uuid.uuid4())).replace("{delivery_id}", str(uuid.uuid4()))
    headers = _headers(matrix, need, credential, settings)
    # An empty body: an allowed call may fail validation, which still shows that authentication passed.
    response = await matrix.client.request(method, path, headers=headers, json={} if method == "POST" else None)
    expected = expectation(need, credential)
    if expected == ALLOWED:
        assert response.status_code not in {401, 403}, response.text
    else:
        status, error_code = expected
        assert (response.status_code, response.json().get("error_code")) == (status, error_code), response.text
