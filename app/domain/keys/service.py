"""API keys: creating, listing, rolling over, revoking and expiring them, in the caller's transaction.

A secret is shown once and stored as its SHA-256; a user has at most 5 active keys, counted under a lock on the
user's row, so concurrent changes of one user's keys run one after the other; only a truly expired key rolls
over, once. The full rules: `docs/security.md`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal
from uuid import UUID

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from dateutil.relativedelta import relativedelta
from sqlalchemy import func, select, update

from app.db import models as m
from app.domain.auth.credentials import ALL_PERMISSIONS, Permission
from app.domain.keys.secrets import display_prefix, generate_secret, hash_secret
from app.lib import audit
from app.lib.db import for_no_key_update
from app.lib.errors import (
    ApiKeyLimitReached,
    ApiKeyNotExpired,
    ApiKeyNotFound,
    NotAuthenticated,
    RequestValidationError,
)

MAX_ACTIVE_KEYS: Final = 5
MAX_NAME_LENGTH: Final = 100

EXPIRY_PERIODS: Final[dict[str, relativedelta]] = {
    "1H": relativedelta(hours=1),
    "1D": relativedelta(days=1),
    "1M": relativedelta(months=1),
    "1Y": relativedelta(years=1),
}
"""The accepted `expiry` values. `relativedelta` clips to the month's last day: 31 Jan + 1M = 28/29 Feb."""


def expiry_after(expiry: str, now: datetime) -> datetime:
    """When a key created at `now` with `expiry` expires, to the whole second.

    Raises:
        RequestValidationError: `expiry` is not exactly one of `1H`, `1D`, `1M`, `1Y`.
    """
    period = EXPIRY_PERIODS.get(expiry)
    if period is None:
        raise RequestValidationError(
            f"`expiry` must be one of {', '.join(EXPIRY_PERIODS)}.",
            errors=[{"key": "expiry", "message": f"unknown expiry {expiry!r}"}],
        )
    result: datetime = now.astimezone(UTC).replace(microsecond=0) + period
    return result


def clean_permissions(permissions: Iterable[str]) -> list[str]:
    """The requested permissions, each once, in the order given.

    Raises:
        RequestValidationError: the list is empty or names an unknown permission.
    """
    cleaned = list(dict.fromkeys(permissions))
    unknown = [p for p in cleaned if p not in ALL_PERMISSIONS]
    if unknown or not cleaned:
        allowed = ", ".join(p.value for p in Permission)
        raise RequestValidationError(
            f"`permissions` must be a non-empty list of {allowed}.",
            errors=[{"key": "permissions", "message": f"unknown permission {p!r}"} for p in unknown] or None,
        )
    return cleaned


def clean_name(name: str) -> str:
    """The key's name without surrounding blanks.

    Raises:
        RequestValidationError: nothing left, or longer than 100 characters.
    """
    cleaned = name.strip()
    if not 1 <= len(cleaned) <= MAX_NAME_LENGTH:
        raise RequestValidationError(
            f"`name` must be 1 to {MAX_NAME_LENGTH} characters (surrounding blanks do not count).",
            errors=[{"key": "name", "message": "empty or too long"}],
        )
    return cleaned


def status_at(key: m.ApiKey, now: datetime) -> Literal["active", "expired", "revoked"]:
    """The key's status as a client sees it: past `expires_at` is expired even before the sweep marks it."""
    if key.status == m.ApiKeyStatus.REVOKED.value:
        return "revoked"
    if key.status == m.ApiKeyStatus.EXPIRED.value or key.expires_at <= now:
        return "expired"
    return "active"


def _key_id(raw: str | UUID) -> UUID:
    if isinstance(raw, UUID):
        return raw
    try:
        return UUID(raw)
    except (ValueError, TypeError, AttributeError) as exc:
        # A malformed id names no key of this user: the same answer as an unknown one.
        raise ApiKeyNotFound from exc


@dataclass(frozen=True)
class IssuedKey:
    """A key as created: the only moment its secret exists outside the client."""

    key: m.ApiKey
    secret: str


class ApiKeyService(SQLAlchemyAsyncRepositoryService[m.ApiKey]):
    """Owns every change to `api_keys`, in its session's transaction (the caller commits)."""

    class Repo(SQLAlchemyAsyncRepository[m.ApiKey]):
        model_type = m.ApiKey

    repository_type = Repo

    async def create_key(
        self,
        user_id: UUID,
        *,
        name: str,
        permissions: Iterable[str],
        expiry: str,
        now: datetime | None = None,
    ) -> IssuedKey:
        """A new key for the user.

        Raises:
            RequestValidationError: bad name, permissions or expiry.
            ApiKeyLimitReached: the user already has 5 active keys.
        """
        now = now or datetime.now(UTC)
        name, permission_list, expires_at = clean_name(name), clean_permissions(permissions), expiry_after(expiry, now)
        await self._lock_owner(user_id)
        await self._ensure_room_for_one_more(user_id, now)
        issued = await self._insert_key(user_id, name, permission_list, expires_at)
        await self._audit(user_id, "api_key.created", issued.key)
        return issued

    async def list_keys(self, user_id: UUID) -> Sequence[m.ApiKey]:
        """The user's keys, newest first (revoked and expired ones too)."""
        keys: Sequence[m.ApiKey] = (
            await self.repository.session.scalars(
                select(m.ApiKey).where(m.ApiKey.user_id == user_id).order_by(m.ApiKey.created_at.desc(), m.ApiKey.id)
            )
        ).all()
        return keys

    async def roll_over(
        self, user_id: UUID, expired_key_id: str | UUID, *, expiry: str, now: datetime | None = None
    ) -> IssuedKey:
        """Replace an expired key with a new one of the same name and permissions, once.

        Raises:
            ApiKeyNotFound: no key of this user has that id (or the id is malformed).
            ApiKeyNotExpired: the key has not expired, was revoked, or was rolled over already.
            ApiKeyLimitReached: the user already has 5 active keys.
            RequestValidationError: bad expiry.
        """
        now = now or datetime.now(UTC)
        expires_at = expiry_after(expiry, now)
        key_id = _key_id(expired_key_id)
        await self._lock_owner(user_id)
        old = await self._owned_key(user_id, key_id)
        if old.status == m.ApiKeyStatus.REVOKED.value:
            raise ApiKeyNotExpired("A revoked key cannot be rolled over; create a new key instead.")
        if old.rolled_over_to_id is not None:
            raise ApiKeyNotExpired("This key was already rolled over.")
        if old.expires_at > now:
            raise ApiKeyNotExpired("This key has not expired yet; only an expired key can be rolled over.")
        await self._ensure_room_for_one_more(user_id, now)
        issued = await self._insert_key(user_id, old.name, list(old.permissions), expires_at)
        # Under the owner's lock, and `rolled_over_to_id` is unique: the rollover happens once.
        old.rolled_over_to_id = issued.key.id
        old.status = m.ApiKeyStatus.EXPIRED.value
        await self._audit(user_id, "api_key.rolled_over", issued.key, replaces=str(old.id))
        return issued

    async def revoke(self, user_id: UUID, key_id: str | UUID, *, now: datetime | None = None) -> m.ApiKey:
        """Revoke one of the user's keys; revoking a revoked key again changes nothing.

        The authentication layer reads the key's row on every request, so the key is refused from the
        next request on.

        Raises:
            ApiKeyNotFound: no key of this user has that id (or the id is malformed).
        """
        now = now or datetime.now(UTC)
        parsed_id = _key_id(key_id)
        await self._lock_owner(user_id)
        key = await self._owned_key(user_id, parsed_id)
        if key.status != m.ApiKeyStatus.REVOKED.value:
            key.status = m.ApiKeyStatus.REVOKED.value
            key.revoked_at = now
            await self._audit(user_id, "api_key.revoked", key)
        return key

    async def expire_due_keys(self, now: datetime | None = None) -> int:
        """Mark active keys past their expiry as expired (beat's sweep). Returns how many changed."""
        result = await self.repository.session.execute(
            update(m.ApiKey)
            .where(m.ApiKey.status == m.ApiKeyStatus.ACTIVE.value, m.ApiKey.expires_at <= (now or datetime.now(UTC)))
            .values(status=m.ApiKeyStatus.EXPIRED.value, updated_at=datetime.now(UTC))
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def _audit(self, user_id: UUID, action: str, key: m.ApiKey, **details: str) -> None:
        # Key routes take a JWT only, so the actor is always the key's owner. Never the secret: id and prefix.
        await audit.record(
            self.repository.session,
            actor=f"user:{user_id}",
            action=action,
            subject=str(key.id),
            details={"name": key.name, "prefix": key.prefix, "permissions": list(key.permissions), **details},
        )

    async def _lock_owner(self, user_id: UUID) -> None:
        # Serialises the user's key changes against each other without blocking the FOR KEY SHARE locks that
        # inserts referencing the user (keys, idempotency records) take.
        locked = await self.repository.session.scalar(for_no_key_update(select(m.User.id).where(m.User.id == user_id)))
        if locked is None:
            raise NotAuthenticated("The user no longer exists.")

    async def _owned_key(self, user_id: UUID, key_id: UUID) -> m.ApiKey:
        key: m.ApiKey | None = await self.repository.session.scalar(
            select(m.ApiKey)
            .where(m.ApiKey.id == key_id, m.ApiKey.user_id == user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if key is None:
            raise ApiKeyNotFound
        return key

    async def _ensure_room_for_one_more(self, user_id: UUID, now: datetime) -> None:
        active = await self.repository.session.scalar(
            select(func.count())
            .select_from(m.ApiKey)
            .where(
                m.ApiKey.user_id == user_id,
                m.ApiKey.status == m.ApiKeyStatus.ACTIVE.value,
                m.ApiKey.expires_at > now,
            )
        )
        if (active or 0) >= MAX_ACTIVE_KEYS:
            raise ApiKeyLimitReached(
                f"A user can have at most {MAX_ACTIVE_KEYS} active API keys; revoke one or let one expire."
            )

    async def _insert_key(self, user_id: UUID, name: str, permissions: list[str], expires_at: datetime) -> IssuedKey:
        secret = generate_secret()
        key = m.ApiKey(
            user_id=user_id,
            name=name,
            key_hash=hash_secret(secret),
            prefix=display_prefix(secret),
            permissions=permissions,
            expires_at=expires_at,
            status=m.ApiKeyStatus.ACTIVE.value,
        )
        self.repository.session.add(key)
        await self.repository.session.flush()
        return IssuedKey(key=key, secret=secret)
