"""Receiving Paystack's webhooks (the request side): only Paystack's, stored durably before the 200, once.

The signature, then the source address; a verified body is stored under the SHA-256 of its raw bytes (a
redelivery is the same row), by a group commit that stores every body that arrived during the previous insert
in one statement. Applying the events is the worker's (`app.domain.payments.events`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Final

from uuid_utils.compat import uuid7

from app.domain.payments.events import APPLY_EVENTS
from app.domain.payments.paystack import event_head, is_valid_signature
from app.lib.drain import CoalescedRequests
from app.lib.errors import InvalidSignature, PermissionDenied

if TYPE_CHECKING:
    from uuid import UUID

    import asyncpg
    from redis.asyncio import Redis

    from app.config import PaystackSettings
    from app.lib.uow import UnitOfWork

logger = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "x-paystack-signature"
MAX_GROUP_SIZE: Final = 500
"""Most events one flush of the inbox stores in one statement."""

_STORE_EVENTS = """
INSERT INTO webhook_events (id, event_key, event_type, reference, raw_body, status, attempts, created_at, updated_at)
SELECT event.id, event.event_key, event.event_type, event.reference, event.raw_body, 'received', 0, $6, $6
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[])
    AS event(id, event_key, event_type, reference, raw_body)
ON CONFLICT (event_key) DO NOTHING
RETURNING event_key, id
"""
"""Many events in one statement; a body already stored (the same SHA-256) is left alone and not returned."""
_STORED_BEFORE = "SELECT event_key, id FROM webhook_events WHERE event_key = ANY($1::text[])"


@dataclass(frozen=True)
class ReceivedEvent:
    event_id: UUID
    new: bool
    """False for a redelivery of an event already stored."""


def event_key(raw_body: bytes) -> str:
    """What makes a redelivery a duplicate: the hex SHA-256 of the raw body."""
    return hashlib.sha256(raw_body).hexdigest()


def check_paystack_origin(raw_body: bytes, *, signature: str | None, source: str, paystack: PaystackSettings) -> None:
    """Only Paystack may deliver events: the signature first, then (when configured) the source address.

    Raises:
        InvalidSignature: the signature is missing or is not the HMAC-SHA512 of the raw body (401).
        PermissionDenied: correctly signed, but from an address outside `PAYSTACK_WEBHOOK_IPS` (403).
    """
    if not is_valid_signature(raw_body, signature, paystack.webhook_secret):
        raise InvalidSignature
    if paystack.webhook_ips and source not in paystack.webhook_ips:
        logger.warning("signed Paystack webhook from %s, which is not in PAYSTACK_WEBHOOK_IPS: refused", source)
        raise PermissionDenied("This address may not deliver Paystack webhooks.")


async def store_events(connection: asyncpg.Connection, raw_bodies: Sequence[bytes]) -> list[ReceivedEvent]:
    """Store verified events, each once, in one statement (a transaction by itself); answers in the same order.

    A body stored before, or twice in this group, is `new` only where it was first inserted.
    """
    keys = [event_key(body) for body in raw_bodies]
    distinct = dict(zip(keys, raw_bodies, strict=True))
    heads = {key: event_head(body) for key, body in distinct.items()}
    stored = await connection.fetch(
        _STORE_EVENTS,
        [uuid7() for _ in distinct],
        list(distinct),
        [event_type for event_type, _ in heads.values()],
        [reference for _, reference in heads.values()],
        list(distinct.values()),
        datetime.now(UTC),
    )
    inserted: dict[str, UUID] = {row["event_key"]: row["id"] for row in stored}
    known = [key for key in distinct if key not in inserted]
    existing: dict[str, UUID] = {}
    if known:
        existing = {row["event_key"]: row["id"] for row in await connection.fetch(_STORED_BEFORE, known)}
    answers = []
    for key in keys:
        new = inserted.pop(key, None)
        if new is not None:
            event_type, reference = heads[key]
            logger.info("Paystack %s event for %s stored as %s", event_type, reference, new)
            answers.append(ReceivedEvent(event_id=new, new=True))
            existing[key] = new
        else:
            logger.info("Paystack redelivered event %s; already stored", existing[key])
            answers.append(ReceivedEvent(event_id=existing[key], new=False))
    return answers


class WebhookInbox:
    """Group commit of received events, one per API process.

    A request hands over its verified body and waits until the event's row is committed. One flush runs at a
    time and stores every body that arrived while the previous flush ran: alone, a request waits for nothing
    extra; in a burst, one statement serves the whole group. A failed flush fails exactly its group's requests
    (Paystack redelivers). After each stored group, one run of the workers' `APPLY_EVENTS` is requested.
    """

    def __init__(self, uow: Callable[[], UnitOfWork], redis: Redis) -> None:
        self._uow = uow
        self._redis = redis
        # After each stored group a run of the workers is requested: one Redis round trip per in-flight window.
        self._apply_requests = CoalescedRequests(APPLY_EVENTS, redis)
        self._waiting: list[tuple[bytes, asyncio.Future[ReceivedEvent]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def receive(self, raw_body: bytes) -> ReceivedEvent:
        """Store a verified event (once, however often it is delivered); returns after its commit."""
        future: asyncio.Future[ReceivedEvent] = asyncio.get_running_loop().create_future()
        self._waiting.append((raw_body, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="webhook-inbox-flush")
        return await future

    async def close(self) -> None:
        """Finish the flush under way and send the folded request for its events (process shutdown)."""
        if self._flusher is not None and not self._flusher.done():
            await self._flusher
        await self._apply_requests.close()

    async def _flush(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[:MAX_GROUP_SIZE], self._waiting[MAX_GROUP_SIZE:]
            bodies = [body for body, _ in group]
            try:
                received = await self._uow().run_statement(partial(store_events, raw_bodies=bodies))
            except Exception as exc:  # noqa: BLE001 - handed to each waiting request, whose handler maps it
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), answer in zip(group, received, strict=True):
                if not future.done():
                    future.set_result(answer)
            # A redelivery asks too: its first delivery may have been stored without its request getting through.
            self._apply_requests.request()
