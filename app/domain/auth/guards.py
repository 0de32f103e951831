"""The one authentication layer: who is calling, and may they do what the route needs.

Every protected route declares its need with `guards=[requires(...)]`; the guard authenticates the
`Authorization: Bearer` JWT (preferred when both are sent) or the `x-api-key`, checks the permission,
and leaves a `Caller` for the handler's `caller` dependency.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from sqlalchemy import select

from app.config import get_settings
from app.db import models as m
from app.domain.auth.tokens import TokenClaims, decode_token, ensure_not_revoked
from app.domain.keys.secrets import hash_secret
from app.lib.errors import (
    ApiKeyExpired,
    ApiKeyRevoked,
    InvalidApiKey,
    InvalidToken,
    NotAuthenticated,
    PermissionDenied,
)
from app.lib.redis import redis_from_state

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection
    from litestar.handlers.base import BaseRouteHandler
    from litestar.types import Guard
    from sqlalchemy.ext.asyncio import AsyncSession

API_KEY_HEADER = "x-api-key"
MAX_CREDENTIAL_LENGTH = 4096


class Permission(enum.StrEnum):
    """What an API key may do. A user signed in with a JWT may do all of it."""

    DEPOSIT = "deposit"
    TRANSFER = "transfer"
    READ = "read"


ALL_PERMISSIONS = frozenset(p.value for p in Permission)

USER_OR_KEY_SECURITY: list[dict[str, list[str]]] = [{"BearerAuth": []}, {"ApiKeyAuth": []}]
"""OpenAPI security of routes open to a JWT or an API key."""
USER_ONLY_SECURITY: list[dict[str, list[str]]] = [{"BearerAuth": []}]
"""OpenAPI security of JWT-only routes."""


@dataclass(frozen=True)
class Caller:
    """The authenticated user and how they came."""

    user_id: UUID
    via: Literal["jwt", "api_key"]
    permissions: frozenset[str] = field(default=ALL_PERMISSIONS)
    token: TokenClaims | None = None
    api_key_id: UUID | None = None

    @property
    def principal(self) -> str:
        """Who did it, for the audit log and rate limits: `user:<id>` or `api_key:<id>`."""
        return f"api_key:{self.api_key_id}" if self.api_key_id else f"user:{self.user_id}"


def _bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_CREDENTIAL_LENGTH:
        raise InvalidToken("The Authorization header must be `Bearer <token>`.")
    return token


async def authenticate_api_key(session: AsyncSession, secret: str) -> m.ApiKey:
    """Find a key by the hash of its secret and check it is usable right now.

    Raises:
        InvalidApiKey: no key has this secret.
        ApiKeyRevoked: the key was revoked.
        ApiKeyExpired: the key is past its expiry (even if the sweep has not marked it yet).
    """
    if not secret or len(secret) > MAX_CREDENTIAL_LENGTH:
        raise InvalidApiKey
    key = await session.scalar(select(m.ApiKey).where(m.ApiKey.key_hash == hash_secret(secret)))
    if key is None:
        raise InvalidApiKey
    if key.status == m.ApiKeyStatus.REVOKED.value:
        raise ApiKeyRevoked
    if key.status == m.ApiKeyStatus.EXPIRED.value or key.expires_at <= datetime.now(UTC):
        raise ApiKeyExpired
    return key


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any], *, api_key_allowed: bool) -> Caller:
    """Authenticate the request's credentials (a JWT wins over an API key).

    Raises:
        NotAuthenticated: no credentials at all.
        PermissionDenied: an API key on a JWT-only route.
    """
    settings = get_settings()
    token = _bearer_token(connection)
    if token is not None:
        claims = decode_token(settings, token)
        await ensure_not_revoked(redis_from_state(connection.app.state), claims)
        return Caller(user_id=claims.user_id, via="jwt", token=claims)
    secret = connection.headers.get(API_KEY_HEADER)
    if secret is None:
        raise NotAuthenticated
    if not api_key_allowed:
        raise PermissionDenied("API keys cannot call this endpoint; sign in as the user.")
    session = db_session_for(connection)
    key = await authenticate_api_key(session, secret.strip())
    return Caller(user_id=key.user_id, via="api_key", permissions=frozenset(key.permissions), api_key_id=key.id)


def db_session_for(connection: ASGIConnection[Any, Any, Any, Any]) -> AsyncSession:
    """The request's database session: the same one the handler's `db_session` dependency gets."""
    config = connection.app.state.sqlalchemy_config
    return config.provide_session(connection.app.state, connection.scope)  # type: ignore[no-any-return]


def requires(permission: Permission | None) -> Guard:
    """A guard for a route: `None` means JWT only; otherwise a JWT or a key holding `permission`."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        caller = await authenticate(connection, api_key_allowed=permission is not None)
        if permission is not None and permission.value not in caller.permissions:
            raise PermissionDenied(f"This API key lacks the `{permission.value}` permission.")
        connection.state.caller = caller

    return guard


async def provide_caller(request: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    """The `caller` dependency: set by the route's guard."""
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, Caller):
        raise NotAuthenticated
    return caller
