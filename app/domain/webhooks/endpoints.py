"""Registering the user's endpoints and reading their delivery log (the API side of event webhooks).

At most `MAX_ENDPOINTS` live endpoints per user; the URL is checked against the SSRF rules when registered
(`addresses.py`) and again at every delivery. The secret is generated here, returned once, stored sealed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from sqlalchemy import func, select, update

from app.db import models as m
from app.domain.webhooks.addresses import UnsafeUrl, destination
from app.domain.webhooks.outbox import note_deliveries
from app.domain.webhooks.schemas import CreatedEndpoint, Delivery, Endpoint, Redelivery
from app.domain.webhooks.signing import SecretBox, new_endpoint_secret
from app.lib.errors import RequestValidationError, WebhookNotFound

if TYPE_CHECKING:
    from uuid import UUID

    from app.domain.webhooks.schemas import CreateEndpointRequest
    from app.lib.uow import UnitOfWork

logger = logging.getLogger(__name__)

MAX_ENDPOINTS: Final = 5
ALL_EVENTS: Final = "*"


def _invalid(key: str, detail: str) -> RequestValidationError:
    return RequestValidationError(detail, errors=[{"key": key, "source": "body", "message": detail}])


class WebhookEndpoints:
    """A user's endpoints, in the transactions of `uow`."""

    def __init__(self, uow: UnitOfWork, *, secrets: SecretBox, allow_private_urls: bool) -> None:
        self.uow = uow
        self.session = uow.session
        self.secrets = secrets
        self.allow_private_urls = allow_private_urls

    async def register(self, user_id: UUID, body: CreateEndpointRequest) -> CreatedEndpoint:
        """Raises RequestValidationError: an unsafe URL, `*` mixed with types, or a 6th endpoint."""
        events: list[str] = sorted(set(body.events))
        if ALL_EVENTS in events and len(events) > 1:
            raise _invalid("events", 'events is ["*"] for all events, or a list of event types, not both')
        try:
            await destination(body.url, allow_private=self.allow_private_urls)
        except UnsafeUrl as exc:
            raise _invalid("url", f"The URL cannot receive events: {exc}.") from exc
        secret = new_endpoint_secret()

        async def create() -> m.WebhookEndpoint:
            await self.session.execute(select(m.User.id).where(m.User.id == user_id).with_for_update())
            live = await self.session.scalar(
                select(func.count())
                .select_from(m.WebhookEndpoint)
                .where(m.WebhookEndpoint.user_id == user_id, m.WebhookEndpoint.deleted_at.is_(None))
            )
            if int(live or 0) >= MAX_ENDPOINTS:
                raise _invalid("url", f"A user can register at most {MAX_ENDPOINTS} webhook endpoints.")
            endpoint = m.WebhookEndpoint(
                user_id=user_id, url=body.url, events=events, sealed_secret=self.secrets.seal(secret)
            )
            self.session.add(endpoint)
            await self.session.flush()
            return endpoint

        endpoint = await self.uow.run(create)
        logger.info("webhook endpoint %s registered for %s", endpoint.id, events)
        return CreatedEndpoint(
            id=endpoint.id, url=endpoint.url, events=events, secret=secret, created_at=endpoint.created_at
        )

    async def of_user(self, user_id: UUID) -> list[Endpoint]:
        async def read() -> list[Endpoint]:
            rows = await self.session.scalars(
                select(m.WebhookEndpoint)
                .where(m.WebhookEndpoint.user_id == user_id, m.WebhookEndpoint.deleted_at.is_(None))
                .order_by(m.WebhookEndpoint.created_at, m.WebhookEndpoint.id)
            )
            return [
                Endpoint(id=e.id, url=e.url, events=list(e.events), created_at=e.created_at, disabled_at=e.disabled_at)
                for e in rows
            ]

        return await self.uow.read(read)

    async def delete(self, user_id: UUID, endpoint_id: UUID) -> None:
        """Nothing more is sent to it, pending deliveries included; its log is kept.

        Raises:
            WebhookNotFound: no live endpoint of this user has this id.
        """

        async def delete() -> None:
            now = datetime.now(UTC)
            deleted = await self.session.scalar(
                update(m.WebhookEndpoint)
                .where(
                    m.WebhookEndpoint.id == endpoint_id,
                    m.WebhookEndpoint.user_id == user_id,
                    m.WebhookEndpoint.deleted_at.is_(None),
                )
                .values(deleted_at=now, updated_at=now)
                .returning(m.WebhookEndpoint.id)
                .execution_options(synchronize_session=False)
            )
            if deleted is None:
                raise WebhookNotFound
            await self.session.execute(
                update(m.WebhookDelivery)
                .where(
                    m.WebhookDelivery.endpoint_id == endpoint_id,
                    m.WebhookDelivery.status == m.DeliveryStatus.PENDING.value,
                )
                .values(status=m.DeliveryStatus.FAILED.value, last_error="endpoint deleted", updated_at=now)
                .execution_options(synchronize_session=False)
            )

        await self.uow.run(delete)

    async def deliveries(self, user_id: UUID, endpoint_id: UUID, *, limit: int) -> list[Delivery]:
        """Newest first. Raises WebhookNotFound."""

        async def read() -> list[Delivery]:
            await self._own(user_id, endpoint_id)
            rows = await self.session.execute(
                select(m.WebhookDelivery, m.WalletEvent.public_id, m.WalletEvent.type)
                .join(m.WalletEvent, m.WalletEvent.id == m.WebhookDelivery.event_id)
                .where(m.WebhookDelivery.endpoint_id == endpoint_id)
                .order_by(m.WebhookDelivery.created_at.desc(), m.WebhookDelivery.id.desc())
                .limit(limit)
            )
            return [_delivery(d, public_id, event_type) for d, public_id, event_type in rows.tuples()]

        return await self.uow.read(read)

    async def redeliver(self, user_id: UUID, endpoint_id: UUID, delivery_id: UUID) -> Redelivery:
        """A new delivery of the same event to the same endpoint, due now. Raises WebhookNotFound."""

        async def again() -> Redelivery:
            endpoint = await self._own(user_id, endpoint_id)
            if endpoint.disabled_at is not None:
                raise _invalid("id", "This endpoint is disabled: register it again to receive events.")
            event_id = await self.session.scalar(
                select(m.WebhookDelivery.event_id).where(
                    m.WebhookDelivery.id == delivery_id, m.WebhookDelivery.endpoint_id == endpoint_id
                )
            )
            if event_id is None:
                raise WebhookNotFound("No delivery of this endpoint has this id.")
            delivery = m.WebhookDelivery(
                endpoint_id=endpoint_id,
                event_id=event_id,
                status=m.DeliveryStatus.PENDING.value,
                next_attempt_at=datetime.now(UTC),
            )
            self.session.add(delivery)
            await self.session.flush()
            note_deliveries(self.session, 1)
            return Redelivery(id=delivery.id, status="pending")

        return await self.uow.run(again)

    async def _own(self, user_id: UUID, endpoint_id: UUID) -> m.WebhookEndpoint:
        endpoint = await self.session.scalar(
            select(m.WebhookEndpoint).where(
                m.WebhookEndpoint.id == endpoint_id,
                m.WebhookEndpoint.user_id == user_id,
                m.WebhookEndpoint.deleted_at.is_(None),
            )
        )
        if endpoint is None:
            raise WebhookNotFound
        return endpoint


def _delivery(row: m.WebhookDelivery, public_id: str, event_type: str) -> Delivery:
    pending = row.status == m.DeliveryStatus.PENDING.value
    return Delivery(
        id=row.id,
        event_id=public_id,
        event_type=event_type,
        status=row.status,  # type: ignore[arg-type]
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        next_attempt_at=row.next_attempt_at if pending else None,
        delivered_at=row.delivered_at,
        created_at=row.created_at,
    )
