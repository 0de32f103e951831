"""The one authentication layer: who is calling, and may they do what the route needs.

Every protected route declares its need with `guards=[requires(...)]`; the guard authenticates the
`Authorization: Bearer` JWT (preferred when both are sent) or the `x-api-key`, checks the permission,
and leaves a `Caller` for the handler's `caller` dependency. Both credentials are checked against
PostgreSQL (and the token deny-list in Redis) on every request, so a revoked key, a logged-out token or
a deleted user is refused on the very next request.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from litestar.openapi import ResponseSpec
from sqlalchemy import select

from app.config import Settings, get_settings
from app.db import models as m
from app.domain.auth.tokens import TokenClaims, verify_access_token
from app.domain.keys.secrets import hash_secret
from app.lib.errors import (
    ApiKeyExpired,
    ApiKeyRevoked,
    ErrorBody,
    InvalidApiKey,
    InvalidToken,
    NotAuthenticated,
    PermissionDenied,
)
from app.lib.redis import redis_from_state

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.connection import ASGIConnection
    from litestar.handlers.base import BaseRouteHandler
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


def error_response(description: str) -> ResponseSpec:
    """An OpenAPI response documenting the contract's error body."""
    return ResponseSpec(data_container=ErrorBody, description=description, generate_examples=False)


UNREADABLE_REQUEST = error_response("`VALIDATION_ERROR`: the request could not be read.")
"""The 400 of a route whose only input is its path: documented so that Litestar's own validation-error schema,
which it adds to every route with parameters, does not describe an answer this service never gives."""

RATE_LIMITED = error_response(
    "`RATE_LIMITED`: more than `RATE_LIMIT_PER_MINUTE` requests this minute from this user, key or address; "
    "`Retry-After` says when to try again."
)
"""The 429 of every route but `/health` and Paystack's webhook."""

USER_ONLY_RESPONSES: dict[int, ResponseSpec] = {
    401: error_response("`NOT_AUTHENTICATED` (no credentials), `INVALID_TOKEN`, `TOKEN_EXPIRED` or `TOKEN_REVOKED`."),
    403: error_response("`PERMISSION_DENIED`: an API key cannot call this endpoint."),
    429: RATE_LIMITED,
}
"""The authentication errors of a JWT-only route, for its OpenAPI `responses`."""
USER_OR_KEY_RESPONSES: dict[int, ResponseSpec] = {
    401: error_response(
        "`NOT_AUTHENTICATED` (no credentials), `INVALID_TOKEN`, `TOKEN_EXPIRED`, `TOKEN_REVOKED`, "
        "`INVALID_API_KEY`, `API_KEY_EXPIRED` or `API_KEY_REVOKED`."
    ),
    403: error_response("`PERMISSION_DENIED`: the API key lacks the permission this endpoint needs."),
    429: RATE_LIMITED,
}
"""The authentication errors of a route open to a JWT or an API key, for its OpenAPI `responses`."""


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


def settings_of(app: Litestar) -> Settings:
    """The settings the app was built with (`create_app(settings)`), else the process's."""
    settings = app.state.get("settings")
    return settings if isinstance(settings, Settings) else get_settings()


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The token of `Authorization: Bearer <token>`; None without the header.

    Raises:
        InvalidToken: the header is there but is not a bearer token.
    """
    header = connection.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
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
        InvalidToken: a bad, expired or revoked JWT, or one whose user no longer exists.
        InvalidApiKey: an unknown, expired or revoked API key.
        PermissionDenied: an API key on a JWT-only route.
    """
    token = bearer_token(connection)
    if token is not None:
        user, claims = await verify_access_token(
            settings_of(connection.app),
            redis_from_state(connection.app.state),
            db_session_for(connection),
            token,
            scope=connection.scope,
        )
        return Caller(user_id=user.id, via="jwt", token=claims)
    secret = connection.headers.get(API_KEY_HEADER)
    if secret is None:
        raise NotAuthenticated
    if not api_key_allowed:
        # Refused before the key is even looked up: no key, valid or not, can manage keys or sessions.
        raise PermissionDenied("API keys cannot call this endpoint; sign in as the user.")
    key = await authenticate_api_key(db_session_for(connection), secret.strip())
    return Caller(user_id=key.user_id, via="api_key", permissions=frozenset(key.permissions), api_key_id=key.id)


def db_session_for(connection: ASGIConnection[Any, Any, Any, Any]) -> AsyncSession:
    """The request's database session: the same one the handler's `db_session` dependency gets."""
    config = connection.app.state.sqlalchemy_config
    return config.provide_session(connection.app.state, connection.scope)  # type: ignore[no-any-return]


class requires:  # noqa: N801 - used like a function: `guards=[requires(Permission.READ)]`
    """A guard for a route: `requires(None)` means JWT only; otherwise a JWT or a key holding `permission`.

    The guard keeps `permission` as an attribute so tests (and the docs) can read what each live route
    requires.
    """

    def __init__(self, permission: Permission | None) -> None:
        self.permission = permission

    async def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        caller = await authenticate(connection, api_key_allowed=self.permission is not None)
        if self.permission is not None and self.permission.value not in caller.permissions:
            raise PermissionDenied(f"This API key lacks the `{self.permission.value}` permission.")
        connection.state.caller = caller

    def __repr__(self) -> str:
        return f"requires({self.permission.value if self.permission else None!r})"


async def provide_caller(request: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    """The `caller` dependency: set by the route's guard."""
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, Caller):
        raise NotAuthenticated
    return caller
