"""The one place that checks credentials: who is calling, whatever route or middleware asks.

`presented_credentials` reads and normalises the bearer token and the `x-api-key` once per request;
`identify` verifies them (a JWT wins) and remembers the answer, or the refusal, for the rest of the request,
so the rate limiter and the route's guard share one check. Lookups use a short session of their own.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from app.db import models as m
from app.domain.auth.credential_cache import CredentialCache, KeyGrant, TokenGrant
from app.domain.auth.tokens import TOKEN_LEEWAY_SECONDS, TokenClaims, decode_token
from app.domain.keys.secrets import hash_secret
from app.lib.errors import (
    ApiKeyExpired,
    ApiKeyRevoked,
    InvalidApiKey,
    InvalidToken,
    NotAuthenticated,
    TokenExpired,
    TokenRevoked,
    WalletError,
)
from app.lib.pg import connection_from
from app.lib.schema import NamedEnum

if TYPE_CHECKING:
    import asyncpg
    from litestar.types import Scope

    from app.config import Settings

API_KEY_HEADER = "x-api-key"
MAX_CREDENTIAL_LENGTH = 4096
_PRESENTED_KEY = "wallet.credentials"
_IDENTITY_KEY = "wallet.identity"


class Permission(NamedEnum):
    """What an API key may do. A user signed in with a JWT may do all of it."""

    DEPOSIT = "deposit"
    TRANSFER = "transfer"
    READ = "read"
    WITHDRAW = "withdraw"
    """Money leaving to a bank account: never implied by `transfer`."""


ALL_PERMISSIONS = frozenset(p.value for p in Permission)


@dataclass(frozen=True)
class Caller:
    """The authenticated user and how they came."""

    user_id: UUID
    via: Literal["jwt", "api_key"]
    permissions: frozenset[str] = field(default=ALL_PERMISSIONS)
    token: TokenClaims | None = None
    api_key_id: UUID | None = None
    email: str = ""

    @property
    def principal(self) -> str:
        """Who did it, for the audit log and rate limits: `user:<id>` or `api_key:<id>`."""
        return f"api_key:{self.api_key_id}" if self.api_key_id else f"user:{self.user_id}"


@dataclass(frozen=True)
class PresentedCredentials:
    token: str | None
    """The bearer token; None without an `Authorization` header."""
    api_key: str | None
    malformed_authorization: bool = False
    """An `Authorization` header that is not `Bearer <token>`: refused as an invalid token."""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def presented_credentials(scope: Scope) -> PresentedCredentials:
    """The request's credentials, read and normalised once (and kept in the request's state)."""
    state = scope.setdefault("state", {})
    known = state.get(_PRESENTED_KEY)
    if isinstance(known, PresentedCredentials):
        return known
    token: str | None = None
    malformed = False
    authorization = _header(scope, b"authorization")
    if authorization is not None:
        scheme, _, rest = authorization.strip().partition(" ")
        rest = rest.strip()
        if scheme.lower() == "bearer" and rest and len(rest) <= MAX_CREDENTIAL_LENGTH:
            token = rest
        else:
            malformed = True
    api_key = _header(scope, API_KEY_HEADER.encode())
    presented = PresentedCredentials(
        token=token, api_key=api_key.strip() if api_key is not None else None, malformed_authorization=malformed
    )
    state[_PRESENTED_KEY] = presented
    return presented


@dataclass(frozen=True)
class VerifiedToken:
    user_id: UUID
    email: str
    claims: TokenClaims


_USER_AND_LOGOUT = """
SELECT u.email,
    EXISTS (SELECT FROM revoked_tokens r WHERE r.jti = $2 AND r.expires_at > now()) AS logged_out
FROM users u WHERE u.id = $1
"""
"""The user and the logout in one round trip: a token whose user is gone, or that was logged out, is refused."""
_KEY_CHECK = "SELECT id, user_id, permissions, status, expires_at FROM api_keys WHERE key_hash = $1"
_CLAIMS_CACHE_SIZE = 20_000


class CredentialVerifier:
    """Checks tokens and API keys: from this process's cache while it can be trusted, else from PostgreSQL."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, cache: CredentialCache) -> None:
        self.settings = settings
        self.pool = pool
        self.cache = cache
        self._claims: OrderedDict[str, TokenClaims] = OrderedDict()

    def claims(self, token: str) -> TokenClaims:
        """The token's verified claims; the signature of a token is checked once per process (it never changes).

        Raises:
            TokenExpired: the token is past `exp`.
            InvalidToken: anything else is wrong with it.
        """
        claims = self._claims.get(token)
        if claims is None:
            claims = decode_token(self.settings, token)
            self._claims[token] = claims
            if len(self._claims) > _CLAIMS_CACHE_SIZE:
                self._claims.popitem(last=False)
        elif claims.expires_at.timestamp() + TOKEN_LEEWAY_SECONDS <= time.time():
            self._claims.pop(token, None)
            raise TokenExpired
        return claims

    async def token(self, token: str) -> VerifiedToken:
        """Everything that makes a token usable right now: signature and claims, not logged out, user still there.

        Raises:
            TokenExpired: the token is past `exp`.
            TokenRevoked: the token was logged out.
            InvalidToken: anything else, including a user that no longer exists.
        """
        claims = self.claims(token)
        grant = self.cache.token(claims.jti)
        if grant is None:
            epoch = self.cache.epoch
            async with connection_from(self.pool) as connection:
                found = await connection.fetchrow(_USER_AND_LOGOUT, claims.user_id, claims.jti)
            if found is None:
                raise InvalidToken("The access token's user no longer exists.")
            if found["logged_out"]:
                raise TokenRevoked
            grant = TokenGrant(user_id=claims.user_id, email=found["email"])
            self.cache.remember_token(claims.jti, grant, epoch)
        return VerifiedToken(user_id=grant.user_id, email=grant.email, claims=claims)

    async def api_key(self, secret: str) -> Caller:
        """The caller a key stands for, if it is usable right now.

        Raises:
            InvalidApiKey: no key has this secret.
            ApiKeyRevoked: the key was revoked.
            ApiKeyExpired: the key is past its expiry (even if the sweep has not marked it yet).
        """
        if not secret or len(secret) > MAX_CREDENTIAL_LENGTH:
            raise InvalidApiKey
        key_hash = hash_secret(secret)
        grant = self.cache.key(key_hash)
        if grant is None:
            epoch = self.cache.epoch
            async with connection_from(self.pool) as connection:
                found = await connection.fetchrow(_KEY_CHECK, key_hash)
            if found is None:
                raise InvalidApiKey
            grant = KeyGrant(
                key_id=found["id"],
                user_id=found["user_id"],
                permissions=frozenset(found["permissions"]),
                status=found["status"],
                expires_at=found["expires_at"],
            )
            self.cache.remember_key(key_hash, grant, epoch)
        if grant.status == m.ApiKeyStatus.REVOKED:
            raise ApiKeyRevoked
        if grant.status == m.ApiKeyStatus.EXPIRED or grant.expires_at <= datetime.now(UTC):
            raise ApiKeyExpired
        return Caller(user_id=grant.user_id, via="api_key", permissions=grant.permissions, api_key_id=grant.key_id)


async def identify(scope: Scope, verifier: CredentialVerifier) -> Caller:
    """Who the request's credentials say is calling (a JWT wins over an API key), verified once per request.

    Raises:
        NotAuthenticated: no credentials at all.
        InvalidToken: a bad, expired or revoked JWT, one whose user no longer exists, or a malformed
            `Authorization` header.
        InvalidApiKey: an unknown, expired or revoked API key.
    """
    state = scope.setdefault("state", {})
    known: Any = state.get(_IDENTITY_KEY)
    if isinstance(known, Caller):
        return known
    if isinstance(known, WalletError):
        raise known
    try:
        caller = await _verify(scope, verifier)
    except WalletError as refusal:
        state[_IDENTITY_KEY] = refusal
        raise
    state[_IDENTITY_KEY] = caller
    return caller


async def _verify(scope: Scope, verifier: CredentialVerifier) -> Caller:
    presented = presented_credentials(scope)
    if presented.malformed_authorization:
        raise InvalidToken("The Authorization header must be `Bearer <token>`.")
    if presented.token is not None:
        verified = await verifier.token(presented.token)
        return Caller(user_id=verified.user_id, via="jwt", token=verified.claims, email=verified.email)
    if presented.api_key is None:
        raise NotAuthenticated
    return await verifier.api_key(presented.api_key)
