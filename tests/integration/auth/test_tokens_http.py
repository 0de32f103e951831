"""Our JWTs over HTTP: `POST /auth/verify-token`, `POST /auth/logout`, and how every guarded route treats a bad one."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import text

from app.domain.auth.tokens import decode_token, issue_token

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine

    from app.config import Settings


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forged(settings: Settings, user_id: uuid.UUID, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "iss": settings.auth.jwt_issuer,
        "aud": settings.auth.jwt_audience,
        **overrides,
    }
    return jwt.encode(claims, settings.auth.jwt_secret, algorithm="HS256")


def bad_tokens(settings: Settings, user_id: uuid.UUID) -> dict[str, tuple[str, str]]:
    """Name → (token, expected error_code)."""
    past = int(time.time()) - 3600
    good = forged(settings, user_id)
    header, payload, signature = good.split(".")
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return {
        "expired": (forged(settings, user_id, iat=past - 60, exp=past), "TOKEN_EXPIRED"),
        "tampered": (f"{header}.{_b64({**claims, 'sub': str(uuid.uuid4())})}.{signature}", "INVALID_TOKEN"),
        "unsigned-alg-none": (f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.", "INVALID_TOKEN"),
        "rs256-algorithm-confusion": (jwt.encode(claims, rsa_pem, algorithm="RS256"), "INVALID_TOKEN"),
        "other-secret": (jwt.encode(claims, "x" * 64, algorithm="HS256"), "INVALID_TOKEN"),
        "wrong-audience": (forged(settings, user_id, aud="another-api"), "INVALID_TOKEN"),
        "wrong-issuer": (forged(settings, user_id, iss="https://evil.example.com"), "INVALID_TOKEN"),
        "user-does-not-exist": (
            issue_token(settings, user_id=uuid.uuid4(), email="ghost@example.com").access_token,
            "INVALID_TOKEN",
        ),
        "garbage": ("not-a-token", "INVALID_TOKEN"),
    }


BAD_TOKEN_NAMES = [
    "expired",
    "tampered",
    "unsigned-alg-none",
    "rs256-algorithm-confusion",
    "other-secret",
    "wrong-audience",
    "wrong-issuer",
    "user-does-not-exist",
    "garbage",
]


async def test_verify_token_via_the_authorization_header(
    api: httpx.AsyncClient, make_user: Any, settings: Settings
) -> None:
    user = await make_user()
    response = await api.post("/auth/verify-token", headers=user.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["valid", "user_id", "email", "expires_at"]
    assert body["valid"] is True
    assert body["user_id"] == str(user.user_id)
    assert body["email"] == user.email
    assert body["expires_at"].endswith("Z")
    expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert expires_at == decode_token(settings, user.token).expires_at
    assert expires_at.utcoffset() == UTC.utcoffset(None)


async def test_verify_token_via_the_body(api: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user()
    response = await api.post("/auth/verify-token", json={"token": user.token})
    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == str(user.user_id)


async def test_verify_token_prefers_the_header_when_both_are_sent(api: httpx.AsyncClient, make_user: Any) -> None:
    user, other = await make_user(), await make_user()
    response = await api.post("/auth/verify-token", headers=user.headers, json={"token": other.token})
    assert response.json()["user_id"] == str(user.user_id)
    response = await api.post("/auth/verify-token", headers=bearer("garbage"), json={"token": other.token})
    assert response.status_code == 401
    assert response.json()["error_code"] == "INVALID_TOKEN"


@pytest.mark.parametrize("body", [None, {}, {"token": None}], ids=["no-body", "empty-object", "null-token"])
async def test_verify_token_without_any_token_is_not_authenticated(api: httpx.AsyncClient, body: Any) -> None:
    response = (
        await api.post("/auth/verify-token", json=body) if body is not None else await api.post("/auth/verify-token")
    )
    assert response.status_code == 401
    assert response.json()["error_code"] == "NOT_AUTHENTICATED"


@pytest.mark.parametrize("name", BAD_TOKEN_NAMES)
async def test_a_bad_token_is_refused_by_verify_token_and_by_every_guard(
    api: httpx.AsyncClient, make_user: Any, settings: Settings, name: str
) -> None:
    user = await make_user()
    token, error_code = bad_tokens(settings, user.user_id)[name]
    for response in [
        await api.post("/auth/verify-token", headers=bearer(token)),
        await api.post("/auth/verify-token", json={"token": token}),
        await api.get("/keys", headers=bearer(token)),
        await api.get("/test/probe/read", headers=bearer(token)),
        await api.post("/auth/logout", headers=bearer(token)),
    ]:
        assert response.status_code == 401, (response.request.url, response.text)
        assert response.json()["error_code"] == error_code, (response.request.url, response.text)


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "Token abc", "bearer", "Bearer a b c", "Bearer " + "x" * 5000],
)
async def test_a_malformed_authorization_header_is_invalid_token_not_a_500(api: httpx.AsyncClient, header: str) -> None:
    for response in [
        await api.get("/keys", headers={"Authorization": header}),
        await api.get("/test/probe/read", headers={"Authorization": header}),
        await api.post("/auth/verify-token", headers={"Authorization": header}),
    ]:
        assert response.status_code == 401, response.text
        assert response.json()["error_code"] == "INVALID_TOKEN"


async def test_the_bearer_scheme_is_case_insensitive(api: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user()
    response = await api.get("/keys", headers={"Authorization": f"bearer {user.token}"})
    assert response.status_code == 200


async def test_logout_revokes_that_token_at_once_everywhere_and_only_that_token(
    api: httpx.AsyncClient, make_user: Any, settings: Settings, engine: AsyncEngine, live_api: str
) -> None:
    user = await make_user()
    other_session = issue_token(settings, user_id=user.user_id, email=user.email).access_token
    assert (await api.get("/keys", headers=user.headers)).status_code == 200
    async with httpx.AsyncClient(base_url=live_api) as other_process:
        # The other API process has verified (and cached) the token before the logout.
        assert (await other_process.get("/keys", headers=user.headers)).status_code == 200

    response = await api.post("/auth/logout", headers=user.headers)
    assert response.status_code == 200
    assert response.json() == {"status": "logged_out"}

    for refused in [
        await api.get("/keys", headers=user.headers),
        await api.get("/test/probe/read", headers=user.headers),
        await api.post("/auth/verify-token", headers=user.headers),
        await api.post("/auth/verify-token", json={"token": user.token}),
        await api.post("/auth/logout", headers=user.headers),
    ]:
        assert refused.status_code == 401
        assert refused.json()["error_code"] == "TOKEN_REVOKED"
    # Another API process, which had the token cached: PostgreSQL announced the logout to it.
    async with httpx.AsyncClient(base_url=live_api) as other_process:
        refused = await other_process.get("/keys", headers=user.headers)
        assert refused.status_code == 401
        assert refused.json()["error_code"] == "TOKEN_REVOKED"
        assert (await other_process.get("/keys", headers=bearer(other_session))).status_code == 200
    assert (await api.get("/keys", headers=bearer(other_session))).status_code == 200

    # Denied exactly until the token would have expired anyway (then the sweep may forget it).
    claims = decode_token(settings, user.token)
    async with engine.connect() as connection:
        kept_until = await connection.scalar(
            text("SELECT expires_at FROM revoked_tokens WHERE jti = :jti"), {"jti": claims.jti}
        )
    assert kept_until == claims.expires_at


async def test_a_logout_survives_redis_losing_everything(
    api: httpx.AsyncClient, redis: Redis, settings: Settings, make_user: Any
) -> None:
    user, bystander = await make_user(), await make_user()
    assert (await api.post("/auth/logout", headers=user.headers)).status_code == 200
    # What a flush, or a restart without persistence, does to whatever auth might keep in Redis: nothing of a
    # logout lives there any more.
    async for key in redis.scan_iter("jwt:*"):
        await redis.delete(key)

    for refused in [
        await api.get("/keys", headers=user.headers),
        await api.post("/auth/verify-token", json={"token": user.token}),
    ]:
        assert refused.status_code == 401
        assert refused.json()["error_code"] == "TOKEN_REVOKED"
    assert (await api.get("/keys", headers=bystander.headers)).status_code == 200


async def test_logout_is_for_users_only(api: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user()
    created = await api.post(
        "/keys/create", headers=user.headers, json={"name": "svc", "permissions": ["read"], "expiry": "1H"}
    )
    key = created.json()["api_key"]
    response = await api.post("/auth/logout", headers={"x-api-key": key})
    assert response.status_code == 403
    assert response.json()["error_code"] == "PERMISSION_DENIED"
    response = await api.post("/auth/logout")
    assert response.status_code == 401
    assert response.json()["error_code"] == "NOT_AUTHENTICATED"


async def test_a_jwt_wins_over_an_api_key_when_both_are_sent(api: httpx.AsyncClient, make_user: Any) -> None:
    owner, other = await make_user(), await make_user()
    created = await api.post(
        "/keys/create", headers=owner.headers, json={"name": "svc", "permissions": ["read"], "expiry": "1H"}
    )
    key = created.json()["api_key"]
    both = await api.get("/test/probe/read", headers={**other.headers, "x-api-key": key})
    assert both.json() == {"user_id": str(other.user_id), "via": "jwt", "api_key_id": None}
    bad_jwt = await api.get("/test/probe/read", headers={"Authorization": "Bearer nope", "x-api-key": key})
    assert bad_jwt.status_code == 401
    assert bad_jwt.json()["error_code"] == "INVALID_TOKEN"
    # On a JWT-only route, a JWT with a key beside it is still the user.
    assert (await api.get("/keys", headers={**owner.headers, "x-api-key": key})).status_code == 200
