"""Our own access tokens: HS256 JWTs signed with `JWT_SECRET`, and the deny-list that logout writes."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import jwt

from app.db import models as m
from app.lib.errors import InvalidToken, TokenExpired, TokenRevoked

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.config import Settings

DENY_LIST_PREFIX = "jwt:denied:"
REQUIRED_CLAIMS = ("sub", "iat", "exp", "jti", "iss", "aud")


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    """Seconds until the token expires."""


@dataclass(frozen=True)
class TokenClaims:
    user_id: UUID
    email: str
    jti: str
    expires_at: datetime


def issue_token(settings: Settings, *, user_id: UUID, email: str) -> IssuedToken:
    """Sign a token for a user, valid for `JWT_EXPIRES_MINUTES`."""
    now = int(time.time())
    lifetime = settings.jwt_expires_minutes * 60
    claims = {
        "sub": str(user_id),
        "email": email,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    token = jwt.encode(claims, settings.jwt_secret, algorithm=settings.jwt_algorithm)
    return IssuedToken(access_token=token, expires_in=lifetime)


def decode_token(settings: Settings, token: str) -> TokenClaims:
    """Verify signature, algorithm (pinned: never `none`, never another family), issuer, audience and expiry.

    Raises:
        TokenExpired: the token is past `exp`.
        InvalidToken: anything else is wrong with it.
    """
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": list(REQUIRED_CLAIMS)},
            leeway=5,
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken from exc
    try:
        return TokenClaims(
            user_id=UUID(str(claims["sub"])),
            email=str(claims.get("email", "")),
            jti=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=UTC),
        )
    except (ValueError, TypeError) as exc:
        raise InvalidToken from exc


async def revoke_token(redis: Redis, claims: TokenClaims) -> None:
    """Deny the token's `jti` until the moment it would have expired anyway."""
    remaining = int(claims.expires_at.timestamp() - time.time()) + 1
    if remaining > 0:
        await redis.set(DENY_LIST_PREFIX + claims.jti, b"1", ex=remaining)


async def ensure_not_revoked(redis: Redis, claims: TokenClaims) -> None:
    """Raises `TokenRevoked` when the token was logged out."""
    if await redis.exists(DENY_LIST_PREFIX + claims.jti):
        raise TokenRevoked


async def verify_access_token(
    settings: Settings, redis: Redis, session: AsyncSession, token: str
) -> tuple[m.User, TokenClaims]:
    """Everything that makes a token usable right now: signature and claims, not logged out, user still there.

    The one check behind both the authentication guard and `POST /auth/verify-token`.

    Raises:
        TokenExpired: the token is past `exp`.
        TokenRevoked: the token was logged out.
        InvalidToken: anything else, including a user that no longer exists.
    """
    claims = decode_token(settings, token)
    await ensure_not_revoked(redis, claims)
    user = await session.get(m.User, claims.user_id)
    if user is None:
        raise InvalidToken("The access token's user no longer exists.")
    return user, claims
