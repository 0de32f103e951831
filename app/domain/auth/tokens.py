"""Our own access tokens: HS256 JWTs signed with `JWT_SECRET`, and the deny-list that logout writes."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import jwt
from sqlalchemy import delete, func
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app.db import models as m
from app.lib.errors import InvalidToken, TokenExpired

if TYPE_CHECKING:
    from litestar.types import Scope
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.config import Settings
    from app.lib.uow import UnitOfWork

_DECODED_STATE_KEY = "wallet_decoded_token"
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
    lifetime = settings.auth.jwt_expires_minutes * 60
    claims = {
        "sub": str(user_id),
        "email": email,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        "iss": settings.auth.jwt_issuer,
        "aud": settings.auth.jwt_audience,
    }
    token = jwt.encode(claims, settings.auth.jwt_secret, algorithm=settings.auth.jwt_algorithm)
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
            settings.auth.jwt_secret,
            algorithms=[settings.auth.jwt_algorithm],
            audience=settings.auth.jwt_audience,
            issuer=settings.auth.jwt_issuer,
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


async def revoke_token(redis: Redis, uow: UnitOfWork, claims: TokenClaims) -> None:
    """Deny the token's `jti` until the moment it would have expired anyway.

    PostgreSQL first: it is the authority every request consults, so the logout holds even if the Redis
    write then fails (the caller gets a 503 and may retry) or Redis later loses the key (flush, restart,
    eviction). Redis is the fast path that refuses the token before the database is asked.
    """
    remaining = int(claims.expires_at.timestamp() - time.time()) + 1
    if remaining <= 0:
        return
    statement = (
        pg_insert(m.RevokedToken)
        .values(jti=claims.jti, user_id=claims.user_id, expires_at=claims.expires_at)
        .on_conflict_do_nothing(index_elements=["jti"])
    )
    await uow.run(lambda: uow.session.execute(statement))
    await redis.set(DENY_LIST_PREFIX + claims.jti, b"1", ex=remaining)


async def forget_expired_revocations(session: AsyncSession) -> int:
    """Delete logouts of tokens that have expired anyway (beat's sweep); the caller commits. Returns how many."""
    result = await session.execute(delete(m.RevokedToken).where(m.RevokedToken.expires_at <= func.now()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def decode_token_once(scope: Scope | None, settings: Settings, token: str) -> TokenClaims:
    """`decode_token`, done once per request: the rate limiter and the guard both need the claims, and the
    signature check is the costliest step of authentication. Kept in the request's scope state."""
    if scope is None:
        return decode_token(settings, token)
    state = scope.setdefault("state", {})
    cached = state.get(_DECODED_STATE_KEY)
    if isinstance(cached, tuple) and cached[0] == token:
        claims: TokenClaims = cached[1]
        return claims
    claims = decode_token(settings, token)
    state[_DECODED_STATE_KEY] = (token, claims)
    return claims


async def is_denied(redis: Redis, jti: str) -> bool:
    """The fast half of the deny-list: whether Redis knows this token was logged out."""
    return bool(await redis.exists(DENY_LIST_PREFIX + jti))
