"""`Idempotency-Key` for POST endpoints: a retry replays the first response and does nothing else.

Records live in PostgreSQL (`idempotency_records`), scoped to the caller's user, keyed by the header (at
most 255 characters), with the SHA-256 of method + path + raw body as the request's fingerprint:

- a new key is *claimed* first: the record is inserted (ON CONFLICT DO NOTHING) and committed in its own
  transaction before any work starts, so a concurrent request with the same key sees the claim;
- same key, same body, first response stored → that response is replayed (same status, same body, plus
  the header `Idempotent-Replayed: true`), and nothing runs;
- same key, different method, path or body → 422 `IDEMPOTENCY_KEY_REUSED`;
- same key while the first request still runs → 409 `IDEMPOTENCY_KEY_IN_USE`;
- the first request ends with an error answer below 500 (insufficient balance, unknown wallet...) → that
  answer is stored too and replayed; a 5xx or a crash deletes the claim so the client can simply retry.

How a controller uses it::

    @post("/transfer", guards=[requires(Permission.TRANSFER)])
    async def transfer(
        self,
        request: Request[Any, Any, Any],
        caller: Caller,
        db_session: AsyncSession,
        data: JSONBody[TransferRequest],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[Any]:
        async def handle(claim: IdempotencyClaim) -> Response[Any]:
            # Work that commits money should stage its answer inside its own transaction, so the money
            # and the stored answer commit together (a crash right after the commit then replays it):
            #     await claim.stage(201, body)   # just before the service's commit (no commit itself)
            result = await service.do_it(..., before_commit=...)
            return Response(body, status_code=201)

        return await run_idempotently(
            db_session, request=request, user_id=caller.user_id, key=idempotency_key, handler=handle
        )

Without the header, `handler` simply runs (with a claim whose `stage` does nothing). The handler's
returned `Response` is stored as it is (its `content` must be a msgspec Struct, a dict or a list); an
exception is re-raised after its answer is stored, so the app's one exception handler renders it.

A claim left unanswered for `CLAIM_LEASE` (its request died before committing anything: a handler that
commits stages its answer in that same commit) is taken over by the next retry. Records are kept at least
24 hours (`RETENTION`); `purge_expired_records` deletes older ones (beat runs it).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

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

logger = logging.getLogger(__name__)

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


def _jsonable(content: Any) -> Any:
    return msgspec.to_builtins(content)


class IdempotencyClaim:
    """The running request's hold on its key; `stage` records its answer inside the caller's transaction."""

    def __init__(self, session: AsyncSession | None, record_id: UUID | None) -> None:
        self._session = session
        self.record_id = record_id

    @property
    def active(self) -> bool:
        return self.record_id is not None

    async def stage(self, status_code: int, content: Any) -> None:
        """Write the answer in the session's current transaction without committing.

        Call it just before a commit that moves money, so the answer and the money commit together. A no-op
        without an `Idempotency-Key`.
        """
        if self._session is None or self.record_id is None:
            return
        await self._session.execute(
            update(m.IdempotencyRecord)
            .where(m.IdempotencyRecord.id == self.record_id)
            .values(response_status=status_code, response_body=_jsonable(content))
            .execution_options(synchronize_session=False)
        )


NO_CLAIM = IdempotencyClaim(None, None)


def _replay(record_status: int, body: Any) -> Response[Any]:
    return Response(body, status_code=record_status, media_type="application/json", headers={REPLAYED_HEADER: "true"})


async def _claim(session: AsyncSession, user_id: UUID, key: str, fingerprint: str) -> IdempotencyClaim | Response[Any]:
    """Claim the key (committed at once), or the replay of its stored answer, or 409/422."""
    for _ in range(MAX_CLAIM_ATTEMPTS):
        record_id = await session.scalar(
            pg_insert(m.IdempotencyRecord)
            .values(user_id=user_id, key=key, request_fingerprint=fingerprint)
            .on_conflict_do_nothing(index_elements=["user_id", "key"])
            .returning(m.IdempotencyRecord.id)
        )
        await session.commit()
        if record_id is not None:
            return IdempotencyClaim(session, record_id)
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
        await session.commit()
        if record is None:
            continue  # the first request failed with a 5xx and released the key in between: claim again
        if record.request_fingerprint != fingerprint:
            raise IdempotencyKeyReused
        if record.response_status is not None:
            return _replay(record.response_status, record.response_body)
        if record.updated_at < datetime.now(UTC) - CLAIM_LEASE:
            taken = await session.scalar(
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
            await session.commit()
            if taken is not None:
                logger.warning("took over the abandoned claim of Idempotency-Key record %s", record.id)
                return IdempotencyClaim(session, taken)
        raise IdempotencyKeyInUse
    raise IdempotencyKeyInUse


async def _finish(session: AsyncSession, claim: IdempotencyClaim, status_code: int, content: Any) -> None:
    await session.execute(
        update(m.IdempotencyRecord)
        .where(m.IdempotencyRecord.id == claim.record_id)
        .values(response_status=status_code, response_body=_jsonable(content))
        .execution_options(synchronize_session=False)
    )
    await session.commit()


async def _release(session: AsyncSession, claim: IdempotencyClaim) -> None:
    """Delete a claim whose request failed with a 5xx, unless its answer was already committed (staged)."""
    try:
        await session.rollback()
        await session.execute(
            delete(m.IdempotencyRecord)
            .where(m.IdempotencyRecord.id == claim.record_id, m.IdempotencyRecord.response_status.is_(None))
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    except Exception:  # noqa: BLE001 - the request's own failure is what the client must see
        logger.warning("could not release Idempotency-Key record %s; it expires after the lease", claim.record_id)


async def run_idempotently(
    session: AsyncSession,
    *,
    request: Request[Any, Any, Any],
    user_id: UUID,
    key: str | None,
    handler: Callable[[IdempotencyClaim], Awaitable[Response[Any]]],
) -> Response[Any]:
    """Run `handler` at most once per (user, key, request); see the module docstring.

    Raises:
        RequestValidationError: the key is empty or longer than 255 characters.
        IdempotencyKeyReused: the key was used with another method, path or body.
        IdempotencyKeyInUse: the first request with this key is still running.
    """
    if key is None:
        return await handler(NO_CLAIM)
    validate_key(key)
    fingerprint = request_fingerprint(request.method, request.url.path, await request.body())
    claimed = await _claim(session, user_id, key, fingerprint)
    if isinstance(claimed, Response):
        return claimed
    claim = claimed
    try:
        response = await handler(claim)
    except Exception as exc:
        error = as_wallet_error(exc)
        if error is None or error.status_code >= 500:
            await _release(session, claim)
            raise
        body = ErrorBody(detail=error.detail, error_code=error.error_code, errors=getattr(error, "errors", None))
        try:
            await session.rollback()
            await _finish(session, claim, error.status_code, body)
        except Exception:  # noqa: BLE001 - nothing moved (the work failed); let the client retry instead
            logger.warning("could not store an error answer for Idempotency-Key record %s", claim.record_id)
            await _release(session, claim)
        raise
    try:
        await _finish(session, claim, response.status_code or 200, response.content)
    except Exception:
        logger.warning("could not store the answer of Idempotency-Key record %s", claim.record_id, exc_info=True)
    return response


async def purge_expired_records(session: AsyncSession, older_than: timedelta = RETENTION) -> int:
    """Delete records older than `older_than` (never less than 24 hours). Commits; returns the count.

    An unanswered claim that old belongs to a request that died long ago (the lease is minutes), so it goes too.
    """
    cutoff = datetime.now(UTC) - max(older_than, RETENTION)
    result = await session.execute(
        delete(m.IdempotencyRecord)
        .where(m.IdempotencyRecord.created_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)
