"""`Idempotency-Key` on POST endpoints: a retry replays the first response and does nothing else.

A new key is claimed in a transaction of its own before the work (a concurrent retry: 409); the money's
transaction stages its answer in the same commit (`staged`), so a crash after the commit replays it and never
does the work again. The rules, leases and retention: `docs/architecture.md` ("Idempotency").
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import msgspec
from litestar import Response
from litestar.params import HeaderParameter
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app.db import models as m
from app.lib.errors import (
    ErrorBody,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    RequestValidationError,
    as_wallet_error,
)

if TYPE_CHECKING:
    from uuid import UUID

    from litestar import Request
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.lib.uow import UnitOfWork

logger = logging.getLogger(__name__)
R = TypeVar("R")

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
RETENTION = timedelta(hours=24)
"""Records are kept at least this long."""
CLAIM_LEASE = timedelta(minutes=5)
"""An unanswered claim older than this belongs to a request that died; longer than any request can run."""
MAX_CLAIM_ATTEMPTS = 3

IdempotencyKeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name=IDEMPOTENCY_HEADER,
        required=False,
        description=(
            "Any string of 1 to 255 characters, scoped to your user. A retry with the same key and body replays "
            "the first response and does nothing else; another body is 422 `IDEMPOTENCY_KEY_REUSED`; a retry "
            "while the first request still runs is 409 `IDEMPOTENCY_KEY_IN_USE`. Kept at least 24 hours."
        ),
    ),
]
"""The header parameter of a handler that accepts an `Idempotency-Key`."""


@dataclass(frozen=True)
class Answer:
    """A response as stored and replayed."""

    status_code: int
    body: Any

    def as_stored(self) -> tuple[int, Any]:
        return self.status_code, msgspec.to_builtins(self.body)


StagedAnswer = Callable[[object], Answer | None]
"""Maps a committed transaction's result to the answer that commits with it, or None for another transaction."""


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    """SHA-256 (hex) of method, path and raw body: what a retry must match."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def validate_key(key: str) -> str:
    """The key as given, or 400 `VALIDATION_ERROR` when it is empty or longer than 255 characters."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise RequestValidationError(
            f"The {IDEMPOTENCY_HEADER} header must be 1 to {MAX_KEY_LENGTH} characters long.",
            errors=[{"key": IDEMPOTENCY_HEADER, "source": "header", "message": "length must be 1..255"}],
        )
    return key


def _replay(status_code: int, body: Any) -> Response[Any]:
    return Response(body, status_code=status_code, media_type="application/json", headers={REPLAYED_HEADER: "true"})


class _Claim:
    """The running request's hold on its record: a participant that stages the answer with the money."""

    def __init__(self, record_id: UUID, staged: StagedAnswer | None) -> None:
        self.record_id = record_id
        self._staged = staged
        self.committed: Answer | None = None
        """The answer committed with the work so far, if any."""

    async def before_commit(self, session: AsyncSession, result: object) -> None:
        answer = self._staged(result) if self._staged is not None else None
        if answer is not None:
            await _store(session, self.record_id, answer)
            self.committed = answer


async def _store(session: AsyncSession, record_id: UUID, answer: Answer) -> None:
    status_code, body = answer.as_stored()
    await session.execute(
        update(m.IdempotencyRecord)
        .where(m.IdempotencyRecord.id == record_id)
        .values(response_status=status_code, response_body=body)
        .execution_options(synchronize_session=False)
    )


async def _claim(session: AsyncSession, user_id: UUID, key: str, fingerprint: str) -> UUID | Response[Any]:
    """The key's new claim, or the replay of its stored answer. Raises 409/422 (see the module docstring)."""
    for _ in range(MAX_CLAIM_ATTEMPTS):
        record_id: UUID | None = await session.scalar(
            pg_insert(m.IdempotencyRecord)
            .values(user_id=user_id, key=key, request_fingerprint=fingerprint)
            .on_conflict_do_nothing(index_elements=["user_id", "key"])
            .returning(m.IdempotencyRecord.id)
        )
        if record_id is not None:
            return record_id
        record = (
            await session.execute(
                select(
                    m.IdempotencyRecord.id,
                    m.IdempotencyRecord.request_fingerprint,
                    m.IdempotencyRecord.response_status,
                    m.IdempotencyRecord.response_body,
                    m.IdempotencyRecord.updated_at,
                ).where(m.IdempotencyRecord.user_id == user_id, m.IdempotencyRecord.key == key)
            )
        ).one_or_none()
        if record is None:
            continue  # the first request failed with a 5xx and released the key in between: claim again
        if record.request_fingerprint != fingerprint:
            raise IdempotencyKeyReused
        if record.response_status is not None:
            return _replay(int(record.response_status), record.response_body)
        if record.updated_at < datetime.now(UTC) - CLAIM_LEASE:
            taken: UUID | None = await session.scalar(
                update(m.IdempotencyRecord)
                .where(
                    m.IdempotencyRecord.id == record.id,
                    m.IdempotencyRecord.response_status.is_(None),
                    m.IdempotencyRecord.updated_at == record.updated_at,
                )
                .values(updated_at=datetime.now(UTC))
                .returning(m.IdempotencyRecord.id)
                .execution_options(synchronize_session=False)
            )
            if taken is not None:
                logger.warning("took over the abandoned claim of Idempotency-Key record %s", record.id)
                return taken
        raise IdempotencyKeyInUse
    raise IdempotencyKeyInUse


async def _release(session: AsyncSession, record_id: UUID) -> None:
    """Delete a claim whose request failed with a 5xx, unless its answer was already committed (staged)."""
    await session.execute(
        delete(m.IdempotencyRecord)
        .where(m.IdempotencyRecord.id == record_id, m.IdempotencyRecord.response_status.is_(None))
        .execution_options(synchronize_session=False)
    )


async def run_idempotently(
    uow: UnitOfWork,
    *,
    request: Request[Any, Any, Any],
    user_id: UUID,
    key: str | None,
    work: Callable[[], Awaitable[R]],
    respond: Callable[[R], Response[Any]],
    staged: StagedAnswer | None = None,
) -> Response[Any]:
    """Do `work` at most once per (user, key, request) and answer `respond(result)`; see the module docstring.

    Without a key, `work` simply runs. The response's content must be a msgspec Struct, a dict or a list. An
    error answered below 500 is stored and replayed; a 5xx or a crash releases the key for a retry.

    Raises:
        RequestValidationError: the key is empty or longer than 255 characters.
        IdempotencyKeyReused: the key was used with another method, path or body.
        IdempotencyKeyInUse: the first request with this key is still running.
    """
    if key is None:
        return respond(await work())
    validate_key(key)
    fingerprint = request_fingerprint(request.method, request.url.path, await request.body())
    claimed = await uow.run(lambda: _claim(uow.session, user_id, key, fingerprint))
    if isinstance(claimed, Response):
        return claimed
    claim = _Claim(claimed, staged)
    try:
        with uow.joined(claim):
            response = respond(await work())
    except Exception as exc:
        error = as_wallet_error(exc)
        if error is None or error.status_code >= 500:
            await _try(uow, lambda: _release(uow.session, claim.record_id), "release", claim.record_id)
            raise
        body = ErrorBody(detail=error.detail, error_code=error.error_code, errors=getattr(error, "errors", None))
        answer = Answer(error.status_code, body)
        if not await _try(uow, lambda: _store(uow.session, claim.record_id, answer), "store", claim.record_id):
            # Nothing moved (the work failed): let the client retry rather than keep a claim without answer.
            await _try(uow, lambda: _release(uow.session, claim.record_id), "release", claim.record_id)
        raise
    final = Answer(response.status_code or 200, response.content)
    if claim.committed is None or claim.committed.as_stored() != final.as_stored():
        await _try(uow, lambda: _store(uow.session, claim.record_id, final), "store", claim.record_id)
    return response


async def _try(uow: UnitOfWork, write: Callable[[], Awaitable[None]], what: str, record_id: UUID) -> bool:
    try:
        await uow.run(write)
    except Exception:
        logger.warning("could not %s the answer of Idempotency-Key record %s", what, record_id, exc_info=True)
        return False
    return True


async def purge_expired_records(session: AsyncSession, older_than: timedelta = RETENTION) -> int:
    """Delete records older than `older_than` (never less than 24 hours); the caller commits.

    An unanswered claim that old belongs to a request that died long ago (the lease is minutes), so it goes too.
    """
    cutoff = datetime.now(UTC) - max(older_than, RETENTION)
    result = await session.execute(
        delete(m.IdempotencyRecord)
        .where(m.IdempotencyRecord.created_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
