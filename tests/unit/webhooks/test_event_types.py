"""The event types an endpoint may subscribe to are exactly those the outbox writes, plus `*`."""

from __future__ import annotations

from app.db.models import EventType as WrittenEventType
from app.domain.webhooks.schemas import EventType as SubscribableEventType


def test_every_written_event_type_can_be_subscribed_to_and_nothing_else_but_all() -> None:
    subscribable = {member.value for member in SubscribableEventType}
    assert subscribable == {member.value for member in WrittenEventType} | {"*"}
