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
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.config import Settings
    from app.lib.uow import UnitOfWork

REQUIRED_CLAIMS = ("sub", "iat", "exp", "jti", "iss", "aud")
TOKEN_LEEWAY_SECONDS = 5
"""Clock skew forgiven on `exp` and `nbf`."""


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
            leeway=TOKEN_LEEWAY_SECONDS,
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


async def revoke_token(uow: UnitOfWork, claims: TokenClaims) -> None:
    """Deny the token's `jti` until the moment it would have expired anyway.

    Every API process forgets the token when PostgreSQL announces the row (migration 0006), and checks the table
    itself whenever its cache cannot be trusted.
    """
    if claims.expires_at.timestamp() <= time.time():
        return
    statement = (
        pg_insert(m.RevokedToken)
        .values(jti=claims.jti, user_id=claims.user_id, expires_at=claims.expires_at)
        .on_conflict_do_nothing(index_elements=["jti"])
    )
    await uow.run(lambda: uow.session.execute(statement))


async def forget_expired_revocations(session: AsyncSession) -> int:
    """Delete logouts of tokens that have expired anyway (beat's sweep); the caller commits. Returns how many."""
    result = await session.execute(delete(m.RevokedToken).where(m.RevokedToken.expires_at <= func.now()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
