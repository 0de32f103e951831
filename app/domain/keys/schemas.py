"""Request and response bodies of `/keys/*`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from app.domain.auth.credentials import Permission
from app.lib.schema import BaseStruct, NamedEnum

KeyStatus = Literal["active", "expired", "revoked"]


class ApiKeyExpiry(NamedEnum):
    """How long a new key lives: one hour, one day, one calendar month or one calendar year from now."""

    ONE_HOUR = "1H"
    ONE_DAY = "1D"
    ONE_MONTH = "1M"
    ONE_YEAR = "1Y"


class CreateKeyRequest(BaseStruct):
    name: Annotated[str, msgspec.Meta(description="1 to 100 characters once surrounding blanks are trimmed.")]
    permissions: Annotated[
        list[Permission], msgspec.Meta(description="A non-empty subset; a permission given twice counts once.")
    ]
    expiry: ApiKeyExpiry


class RolloverKeyRequest(BaseStruct):
    expired_key_id: Annotated[str, msgspec.Meta(description="The id of one of your keys that has expired.")]
    expiry: ApiKeyExpiry


class CreatedKey(BaseStruct):
    """A new key. `api_key` is the secret: it is shown here once and never again."""

    id: UUID
    name: str
    api_key: str
    permissions: list[str]
    expires_at: datetime


class KeySummary(BaseStruct):
    """A key as listed: never its secret, only the first characters to tell keys apart."""

    id: UUID
    name: str
    prefix: str
    permissions: list[str]
    expires_at: datetime
    status: KeyStatus
    created_at: datetime


class RevokedKey(BaseStruct):
    id: UUID
    status: Literal["revoked"] = "revoked"
