"""Request and response bodies of `/auth/*`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from app.lib.schema import BaseStruct


class SignedInUser(BaseStruct):
    id: UUID
    email: str
    name: str | None
    picture: str | None


class SignInResult(BaseStruct, kw_only=True):
    """Our own access token for the user who just signed in, and their wallet."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    """Seconds until the token expires."""
    user: SignedInUser
    wallet_number: str


class VerifyTokenRequest(BaseStruct):
    token: str | None = None
    """The token to check, when it is not sent as `Authorization: Bearer`."""


class TokenVerification(BaseStruct, kw_only=True):
    valid: Literal[True] = True
    user_id: UUID
    email: str
    expires_at: datetime


class LoggedOut(BaseStruct):
    status: Literal["logged_out"] = "logged_out"
