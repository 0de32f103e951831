"""The audit log records key creation, rollover and revocation and every movement of money, with who did
it, in the transaction of the change itself; it never holds a secret and cannot be edited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import Row, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db import models as m
from tests.support.factories import fund
from tests.support.processes import ServiceProcess
from tests.support.users import add_api_key
from tests.support.waiting import wait_until_settled


async def _events(db: AsyncSession, **where: str) -> list[Row[Any]]:
    """Audit events as plain rows (they outlive the session's next rollback, unlike ORM objects)."""
    await db.rollback()
    event = m.AuditEvent
    query = select(event.actor, event.action, event.subject, event.amount, event.details).order_by(event.id)
    for column, value in where.items():
        query = query.where(getattr(event, column) == value)
    return list((await db.execute(query)).all())


async def test_key_creation_rollover_and_revocation_are_audited_with_the_user_and_without_the_secret(
    client: AsyncTestClient, db: AsyncSession, make_user
) -> None:
    user = await make_user()
    created = await client.post(
        "/keys/create", json={"name": "audited", "permissions": ["read"], "expiry": "1H"}, headers=user.headers
    )
    assert created.status_code == 201, created.text
    key_id, secret = created.json()["id"], created.json()["api_key"]
    await db.execute(update(m.ApiKey).where(m.ApiKey.id == key_id).values(expires_at=datetime.now(UTC) - timedelta(1)))
    await db.commit()
    rolled = await client.post("/keys/rollover", json={"expired_key_id": key_id, "expiry": "1D"}, headers=user.headers)
    assert rolled.status_code == 201, rolled.text
    new_id = rolled.json()["id"]
    revoked = await client.post(f"/keys/revoke/{new_id}", headers=user.headers)
    assert revoked.status_code == 200, revoked.text

    events = await _events(db, actor=f"user:{user.user_id}")
    assert [(e.action, e.subject) for e in events] == [
        ("api_key.created", key_id),
        ("api_key.rolled_over", new_id),
        ("api_key.revoked", new_id),
    ]
    assert events[1].details is not None
    assert events[1].details["replaces"] == key_id
    for event in events:
        assert secret not in str(event.details)
        assert rolled.json()["api_key"] not in str(event.details)


async def test_every_movement_of_money_is_audited_with_who_moved_it(
    client: AsyncTestClient, worker: ServiceProcess, engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    sender, recipient = await make_user(), await make_user()
    deposit_reference = await fund(engine, sender.wallet_id, 5_000)
    key_headers = await add_api_key(db, sender.user_id, ["transfer"])
    key_id = await db.scalar(select(m.ApiKey.id).where(m.ApiKey.user_id == sender.user_id))

    by_jwt = await client.post(
        "/wallet/transfer", json={"wallet_number": recipient.wallet_number, "amount": 1_000}, headers=sender.headers
    )
    by_key = await client.post(
        "/wallet/transfer", json={"wallet_number": recipient.wallet_number, "amount": 2_000}, headers=key_headers
    )
    assert by_jwt.status_code in (200, 202), by_jwt.text
    assert by_key.status_code in (200, 202), by_key.text
    jwt_reference, key_reference = by_jwt.json()["reference"], by_key.json()["reference"]
    await wait_until_settled(db, [jwt_reference, key_reference])

    (credit,) = await _events(db, subject=deposit_reference)
    assert (credit.action, credit.amount) == ("deposit.credited", 5_000)
    (jwt_event,) = await _events(db, subject=jwt_reference)
    assert (jwt_event.actor, jwt_event.action, jwt_event.amount) == (
        f"user:{sender.user_id}",
        "transfer.accepted",
        1_000,
    )
    (key_event,) = await _events(db, subject=key_reference)
    assert (key_event.actor, key_event.amount) == (f"api_key:{key_id}", 2_000)

    journals = (
        await db.scalars(
            select(m.LedgerJournal.reference)
            .join(m.Transfer, m.Transfer.settlement_journal_id == m.LedgerJournal.id)
            .where(m.Transfer.reference.in_([jwt_reference, key_reference]))
        )
    ).all()
    settled = [event for journal in set(journals) for event in await _events(db, subject=journal)]
    assert {event.actor for event in settled} == {"system:settlement"}
    assert all(event.action == "transfers.settled" for event in settled)


async def test_a_refused_transfer_leaves_no_audit_event(client: AsyncTestClient, db: AsyncSession, make_user) -> None:
    sender, recipient = await make_user(), await make_user()
    before = await db.scalar(select(func.count()).select_from(m.AuditEvent))
    response = await client.post(
        "/wallet/transfer", json={"wallet_number": recipient.wallet_number, "amount": 1}, headers=sender.headers
    )
    assert response.json()["error_code"] == "INSUFFICIENT_BALANCE"
    await db.rollback()
    assert await db.scalar(select(func.count()).select_from(m.AuditEvent)) == before


@pytest.mark.parametrize("statement", ["UPDATE audit_events SET actor = 'someone else'", "DELETE FROM audit_events"])
async def test_audit_events_cannot_be_edited_or_deleted(
    client: AsyncTestClient, db: AsyncSession, make_user, statement: str
) -> None:
    user = await make_user()
    created = await client.post(
        "/keys/create", json={"name": "immutable", "permissions": ["read"], "expiry": "1H"}, headers=user.headers
    )
    assert created.status_code == 201
    with pytest.raises(DBAPIError, match="immutable"):
        await db.execute(text(statement))
    await db.rollback()
