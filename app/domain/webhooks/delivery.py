"""Delivering events to the user's endpoints (the worker side, queue `webhooks_out`): at least once, retried
with backoff, never holding up anyone else.

A run of `DELIVERIES` keeps up to `CONCURRENCY` deliveries in flight and claims more as each finishes, at most
`PER_ENDPOINT` per endpoint at a time: a receiver that hangs holds one slot for `TIMEOUT_SECONDS` while every
other endpoint's deliveries go on. A claim leases the delivery (`leased_until`); a worker killed mid-delivery
leaves the lease to expire and beat's sweep (`request_due_deliveries`) sends it again, with the same event id.
PostgreSQL is the record of what is due, so a flushed Redis loses nothing either.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import httpx
from redis.exceptions import RedisError
from sqlalchemy import text

from app.db.models import DeliveryStatus
from app.domain.webhooks.addresses import UnsafeUrl, destination
from app.domain.webhooks.signing import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    SecretBox,
    signature,
)
from app.lib.drain import Drain
from app.lib.metrics import DELIVERY_LAG_KEY, counted, lag_observed
from app.lib.storable import storable_text
from app.lib.tasks import TaskName, enqueue

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from contextlib import AbstractAsyncContextManager
    from uuid import UUID

    from redis.asyncio import Redis

    from app.config import Settings
    from app.lib.uow import UnitOfWork

logger = logging.getLogger(__name__)

DELIVERIES = Drain(TaskName.DELIVER_WEBHOOKS)
TIMEOUT_SECONDS: Final = 10.0
"""A 2xx within this long is delivered; anything slower is a failed attempt."""
CONCURRENCY: Final = 20
PER_ENDPOINT: Final = 4
MAX_BACKOFF: Final = timedelta(hours=6)
DISABLE_AFTER: Final = timedelta(days=3)
"""An endpoint whose deliveries have failed for this long without one success is disabled."""
RESPONSE_BYTES_KEPT: Final = 1024
IDLE_POLL_SECONDS: Final = 0.2
RETRY_RUN_HORIZON: Final = timedelta(minutes=5)
MIN_RETRY_DELAY_SECONDS: Final = 0.2
RETRY_RUN_KEY: Final = "webhooks:retry-run-scheduled"


@dataclass(frozen=True)
class Claimed:
    id: UUID
    endpoint_id: UUID
    url: str
    sealed_secret: str
    public_id: str
    type: str
    data: dict[str, Any]
    event_created_at: datetime
    attempts: int


@dataclass(frozen=True)
class Attempt:
    delivered: bool
    status_code: int | None
    error: str | None


_CLAIM = text(
    """
WITH candidates AS (
    SELECT d.id, d.endpoint_id, d.next_attempt_at FROM webhook_deliveries d
    WHERE d.status = 'pending' AND d.next_attempt_at <= :now AND (d.leased_until IS NULL OR d.leased_until <= :now)
        AND NOT (d.id = ANY(CAST(:in_flight AS uuid[])))
    ORDER BY d.next_attempt_at
    LIMIT :scan
), ranked AS (
    SELECT c.id, c.next_attempt_at,
        row_number() OVER (PARTITION BY c.endpoint_id ORDER BY c.next_attempt_at) AS nth,
        (SELECT count(*) FROM webhook_deliveries busy
         WHERE busy.endpoint_id = c.endpoint_id AND busy.status = 'pending' AND busy.leased_until > :now) AS busy
    FROM candidates c
), chosen AS (
    SELECT d.id FROM webhook_deliveries d JOIN ranked r ON r.id = d.id
    WHERE r.nth + r.busy <= :per_endpoint
    ORDER BY r.next_attempt_at
    LIMIT :limit
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d SET leased_until = :lease, updated_at = :now
FROM chosen, webhook_endpoints p, wallet_events e
WHERE d.id = chosen.id AND p.id = d.endpoint_id AND e.id = d.event_id
RETURNING d.id, d.endpoint_id, p.url, p.sealed_secret, e.public_id, e.type, e.data, e.created_at, d.attempts
"""
)
"""The oldest due deliveries (a bounded scan, then at most `per_endpoint` in flight per endpoint), leased as
they are claimed."""

_RECORD = text(
    """
UPDATE webhook_deliveries d
SET status = r.status, attempts = r.attempts, next_attempt_at = r.next_at, leased_until = NULL,
    last_status_code = r.code, last_error = r.error, delivered_at = r.delivered_at, updated_at = :now
FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:attempts AS int[]),
            CAST(:next_ats AS timestamptz[]), CAST(:codes AS int[]), CAST(:errors AS text[]),
            CAST(:delivered_ats AS timestamptz[])) AS r(id, status, attempts, next_at, code, error, delivered_at)
WHERE d.id = r.id AND d.status = 'pending'
"""
)
"""The outcomes of a batch of attempts, in one statement."""


@dataclass(frozen=True)
class Recorded:
    """What a batch of attempts left: each delivery's status, and the endpoints it disabled."""

    statuses: list[str]
    disabled: int


class DeliveryLog:
    """The delivery rows, in the transactions of `uow` (each call is its own short transaction)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def claim(self, limit: int, in_flight: list[UUID], *, lease: timedelta) -> list[Claimed]:
        """Up to `limit` due deliveries, leased for `lease` (`WEBHOOK_LEASE_SECONDS`: longer than any attempt,
        so an expired lease means a dead worker)."""
        now = datetime.now(UTC)

        async def claim() -> list[Claimed]:
            rows = await self.uow.session.execute(
                _CLAIM,
                {
                    "now": now,
                    "lease": now + lease,
                    "in_flight": in_flight,
                    "scan": limit * 10,
                    "limit": limit,
                    "per_endpoint": PER_ENDPOINT,
                },
            )
            return [Claimed(*row) for row in rows]

        return await self.uow.run(claim)

    async def record(
        self, attempts: list[tuple[Claimed, Attempt]], *, max_attempts: int, retry_base_seconds: int
    ) -> Recorded:
        """Note a batch of attempts in one transaction: each delivery `delivered`, `pending` again (a retry
        after its backoff) or `failed`; each endpoint's failing streak followed (and 3 days of it disable it)."""
        now = datetime.now(UTC)
        rows: list[tuple[UUID, str, int, datetime, int | None, str | None, datetime | None]] = []
        for claimed, attempt in attempts:
            tried = claimed.attempts + 1
            if attempt.delivered:
                status, next_at = DeliveryStatus.DELIVERED, now
            elif tried >= max_attempts:
                status, next_at = DeliveryStatus.FAILED, now
            else:
                status, next_at = DeliveryStatus.PENDING, now + backoff(tried, retry_base_seconds)
            delivered_at = now if attempt.delivered else None
            rows.append((claimed.id, status.value, tried, next_at, attempt.status_code, attempt.error, delivered_at))
        healthy = sorted({claimed.endpoint_id for claimed, attempt in attempts if attempt.delivered})
        failing = sorted({claimed.endpoint_id for claimed, attempt in attempts if not attempt.delivered} - set(healthy))

        async def write() -> int:
            session = self.uow.session
            columns = list(zip(*rows, strict=True))
            await session.execute(
                _RECORD,
                {
                    "now": now,
                    "ids": list(columns[0]),
                    "statuses": list(columns[1]),
                    "attempts": list(columns[2]),
                    "next_ats": list(columns[3]),
                    "codes": list(columns[4]),
                    "errors": list(columns[5]),
                    "delivered_ats": list(columns[6]),
                },
            )
            if healthy:
                await session.execute(
                    text(
                        "UPDATE webhook_endpoints SET failing_since = NULL "
                        "WHERE id = ANY(CAST(:ids AS uuid[])) AND failing_since IS NOT NULL"
                    ),
                    {"ids": healthy},
                )
            disabled = 0
            for endpoint_id in failing:
                disabled += await self._note_failing(endpoint_id, now)
            return disabled

        disabled = await self.uow.run(write) if rows else 0
        return Recorded(statuses=[row[1] for row in rows], disabled=disabled)

    async def _note_failing(self, endpoint_id: UUID, now: datetime) -> bool:
        """A failure starts the endpoint's failing streak, or disables it after 3 days of it (True then)."""
        session = self.uow.session
        disabled = await session.scalar(
            text(
                "UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, :now), "
                "disabled_at = CASE WHEN coalesce(failing_since, :now) <= :cutoff THEN :now END, updated_at = :now "
                "WHERE id = :id AND disabled_at IS NULL RETURNING disabled_at IS NOT NULL"
            ),
            {"id": endpoint_id, "now": now, "cutoff": now - DISABLE_AFTER},
        )
        if disabled:
            await session.execute(
                text(
                    "UPDATE webhook_deliveries SET status = 'failed', leased_until = NULL, updated_at = :now, "
                    "last_error = coalesce(last_error, '') || ' (endpoint disabled)' "
                    "WHERE endpoint_id = :id AND status = 'pending'"
                ),
                {"id": endpoint_id, "now": now},
            )
            logger.error("webhook endpoint %s failed for %s in a row: disabled", endpoint_id, DISABLE_AFTER)
        return bool(disabled)


def backoff(attempts: int, base_seconds: int) -> timedelta:
    """The wait after the `attempts`-th failure: `base` doubling each time, capped at 6 hours, with jitter (half
    to all of it) so that endpoints failing together do not come back in lockstep."""
    ceiling = min(base_seconds * 2 ** max(attempts - 1, 0), MAX_BACKOFF.total_seconds())
    return timedelta(seconds=ceiling * (0.5 + random.random() / 2))


def event_body(claimed: Claimed) -> bytes:
    """The same bytes at every attempt: `{"id","type","created_at","data"}`."""
    created_at = claimed.event_created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    payload = {"id": claimed.public_id, "type": claimed.type, "created_at": created_at, "data": claimed.data}
    return json.dumps(payload, separators=(",", ":")).encode()


class Sender:
    """One attempt of one delivery: check the address again, sign, POST, read at most 1 KB of the answer."""

    def __init__(self, http: httpx.AsyncClient, secrets: SecretBox, *, allow_private: bool) -> None:
        self.http = http
        self.secrets = secrets
        self.allow_private = allow_private

    async def send(self, claimed: Claimed) -> Attempt:
        try:
            target = await destination(claimed.url, allow_private=self.allow_private)
            secret = self.secrets.open(claimed.sealed_secret)
        except (UnsafeUrl, ValueError) as exc:
            return Attempt(delivered=False, status_code=None, error=f"not sent: {exc}")
        body = event_body(claimed)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "wallet-service-webhooks/1",
            "Host": target.host if target.port in {80, 443} else f"{target.host}:{target.port}",
            EVENT_ID_HEADER: claimed.public_id,
            EVENT_TYPE_HEADER: claimed.type,
            SIGNATURE_HEADER: signature(secret, int(time.time()), body),
        }
        # Sent to the address just checked, not to the name again: DNS cannot change its answer in between.
        extensions = {"sni_hostname": target.host} if target.url.startswith("https") else {}
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                async with self.http.stream(
                    "POST", target.pinned_url, content=body, headers=headers, extensions=extensions
                ) as response:
                    kept = await _first_bytes(response.aiter_bytes(), RESPONSE_BYTES_KEPT)
        except TimeoutError:
            return Attempt(delivered=False, status_code=None, error=f"no answer within {TIMEOUT_SECONDS:.0f} s")
        except httpx.HTTPError as exc:
            return Attempt(delivered=False, status_code=None, error=f"{type(exc).__name__}: {exc}"[:500])
        if response.is_success:
            return Attempt(delivered=True, status_code=response.status_code, error=None)
        answer = storable_text(kept.decode("utf-8", "replace"))
        return Attempt(
            delivered=False, status_code=response.status_code, error=f"HTTP {response.status_code}: {answer}"
        )


async def _first_bytes(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    kept = b""
    async for chunk in chunks:
        kept += chunk[: limit - len(kept)]
        if len(kept) >= limit:
            break
    return kept


def sending_client() -> httpx.AsyncClient:
    """No redirects (a 3xx is a failed attempt), no proxy from the environment, a fresh pool per run."""
    return httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=httpx.Timeout(TIMEOUT_SECONDS))


async def deliver_due(
    units: Callable[[], AbstractAsyncContextManager[UnitOfWork]], settings: Settings, redis: Redis
) -> int:
    """A run of `DELIVERIES`: deliver what is due, `CONCURRENCY` at a time, until nothing is; how many attempts.

    `units` opens a unit of work (one per claim and per record: deliveries run concurrently).
    """
    hooks = settings.webhooks
    in_flight: dict[asyncio.Task[tuple[Claimed, Attempt]], UUID] = {}
    attempts = 0

    async with sending_client() as http:
        sender = Sender(http, SecretBox(settings.auth.jwt_secret), allow_private=settings.webhook_allow_private_urls)

        async def deliver(claimed: Claimed) -> tuple[Claimed, Attempt]:
            return claimed, await sender.send(claimed)

        async def record(finished: list[tuple[Claimed, Attempt]]) -> None:
            if not finished:
                return
            async with units() as uow:
                recorded = await DeliveryLog(uow).record(
                    finished, max_attempts=hooks.max_attempts, retry_base_seconds=hooks.retry_base_seconds
                )
            await _count(redis, finished, recorded)

        async def take_batch() -> int:
            nonlocal attempts
            free = CONCURRENCY - len(in_flight)
            claimed: list[Claimed] = []
            if free > 0:
                async with units() as uow:
                    claimed = await DeliveryLog(uow).claim(
                        free, list(in_flight.values()), lease=timedelta(seconds=hooks.lease_seconds)
                    )
            for item in claimed:
                in_flight[asyncio.create_task(deliver(item))] = item.id
            attempts += len(claimed)
            if not in_flight:
                return 0
            done, _ = await asyncio.wait(in_flight, timeout=IDLE_POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                in_flight.pop(task)
            # Recorded together: one transaction for every attempt that finished meanwhile.
            await record([task.result() for task in done])
            return len(claimed) + len(in_flight) + len(done)

        try:
            await DELIVERIES.run(redis, take_batch)
        finally:
            if in_flight:
                done, _ = await asyncio.wait(in_flight)
                await record([task.result() for task in done])
    async with units() as uow:
        await _run_again_for_retries(uow, redis)
    return attempts


async def _count(redis: Redis, finished: list[tuple[Claimed, Attempt]], recorded: Recorded) -> None:
    """The batch's outcomes, lags and disabled endpoints in the metrics: one round trip; never fails the run."""
    now = datetime.now(UTC)
    outcomes = Counter("retry" if status == "pending" else status for status in recorded.statuses)
    lags = [max((now - claimed.event_created_at).total_seconds(), 0.0) for claimed, a in finished if a.delivered]
    for claimed, attempt in finished:
        if not attempt.delivered:
            logger.info("webhook delivery %s (%s) failed: %s", claimed.id, claimed.public_id, attempt.error)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for outcome, number in outcomes.items():
                counted("webhook_deliveries", number, outcome=outcome)(pipe)
            if recorded.disabled:
                counted("webhook_endpoints_disabled", recorded.disabled)(pipe)
            lag_observed(lags, DELIVERY_LAG_KEY)(pipe)
            await pipe.execute()
    except (RedisError, OSError):
        logger.debug("metrics: could not count webhook deliveries", exc_info=True)


async def _run_again_for_retries(uow: UnitOfWork, redis: Redis) -> None:
    """Retries due within `RETRY_RUN_HORIZON` get a run at their time (one scheduled run at a time), so a retry
    after 30 s does not wait for beat's next sweep; later ones are beat's."""
    soonest = await uow.read(
        lambda: uow.session.scalar(
            text(
                "SELECT extract(epoch FROM min(next_attempt_at) - now()) FROM webhook_deliveries "
                "WHERE status = 'pending' AND leased_until IS NULL"
            )
        )
    )
    if soonest is None or float(soonest) > RETRY_RUN_HORIZON.total_seconds():
        return
    delay = max(float(soonest), MIN_RETRY_DELAY_SECONDS)
    try:
        if await redis.set(RETRY_RUN_KEY, "1", nx=True, px=int(delay * 1000)):
            await enqueue(redis, TaskName.DELIVER_WEBHOOKS, countdown=delay)
    except (RedisError, OSError):
        logger.warning("could not schedule the next delivery run; beat's sweep will", exc_info=True)


async def request_due_deliveries(uow: UnitOfWork, redis: Redis) -> int:
    """Beat: when deliveries are due (a retry whose time came, a lease a dead worker left), start a run."""
    due = int(
        await uow.read(
            lambda: uow.session.scalar(
                text(
                    "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= now() "
                    "AND (leased_until IS NULL OR leased_until <= now())"
                )
            )
        )
        or 0
    )
    if due:
        # Whatever the request flag says: the run that set it may have died with its worker.
        await DELIVERIES.hand_over(redis)
    return due
