"""Bodies of `/webhooks`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from app.lib.schema import BaseStruct, NamedEnum


class EventType(NamedEnum):
    """An event an endpoint can subscribe to; `*` is every one of them."""

    DEPOSIT_SUCCEEDED = "deposit.succeeded"
    TRANSFER_SENT = "transfer.sent"
    TRANSFER_RECEIVED = "transfer.received"
    WITHDRAWAL_SUCCEEDED = "withdrawal.succeeded"
    WITHDRAWAL_FAILED = "withdrawal.failed"
    DEPOSIT_REFUNDED = "deposit.refunded"
    ALL = "*"


EndpointUrl = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=2048,
        description="`https` in production, resolving only to public addresses.",
        examples=["https://example.com/hooks/wallet"],
    ),
]


class CreateEndpointRequest(BaseStruct):
    url: EndpointUrl
    events: Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=7)]
    """A non-empty subset of the event types, or `["*"]` for all of them."""


class CreatedEndpoint(BaseStruct):
    """The endpoint, with its signing secret: shown only in this answer."""

    id: UUID
    url: str
    events: list[str]
    secret: str
    created_at: datetime


class Endpoint(BaseStruct):
    id: UUID
    url: str
    events: list[str]
    created_at: datetime
    disabled_at: datetime | None
    """Set when its deliveries failed for 3 days in a row: it receives nothing until registered again."""


class Delivery(BaseStruct):
    id: UUID
    event_id: str
    event_type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    """When the next attempt is due; null once delivered or failed."""
    delivered_at: datetime | None
    created_at: datetime


class Redelivery(BaseStruct):
    id: UUID
    """The new delivery of the same event."""
    status: Literal["pending"]
