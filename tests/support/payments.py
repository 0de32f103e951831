"""Helpers of the payments tests: start deposits, deliver webhooks, wait for workers, read the outcome."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import func, select

from app.db import models as m
from tests.support.paystack_standin import CHARGE_SUCCESS_PATH
from tests.support.waiting import eventually

if TYPE_CHECKING:
    from datetime import timedelta

    from litestar import Litestar
    from sqlalchemy.ext.asyncio import AsyncEngine

    from app.config import Settings
    from tests.support.users import TestUser


@dataclass
class Deposit:
    reference: str
    authorization_url: str
    access_code: str


async def start_deposit(api: httpx.AsyncClient, user: TestUser, amount: int) -> Deposit:
    response = await api.post("/wallet/deposit", json={"amount": amount}, headers=user.headers)
    assert response.status_code == 201, response.text
    return Deposit(**response.json())


@dataclass(frozen=True)
class DepositRow:
    status: str
    amount: int
    currency: str
    needs_review: bool
    review_reason: str | None
    paid_at: Any
    last_verified_at: Any
    access_code: str | None
    credits: int
    """Deposit journals in the ledger for this reference."""


async def deposit_row(engine: AsyncEngine, reference: str) -> DepositRow | None:
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(
                    m.Deposit.status,
                    m.Deposit.amount,
                    m.Deposit.currency,
                    m.Deposit.needs_review,
                    m.Deposit.review_reason,
                    m.Deposit.paid_at,
                    m.Deposit.last_verified_at,
                    m.Deposit.access_code,
                ).where(m.Deposit.reference == reference)
            )
        ).one_or_none()
        credits = await connection.scalar(
            select(func.count())
            .select_from(m.LedgerJournal)
            .where(m.LedgerJournal.kind == m.JournalKind.DEPOSIT.value, m.LedgerJournal.reference == reference)
        )
    return None if row is None else DepositRow(*row, credits=int(credits or 0))


async def wait_for_deposit(
    engine: AsyncEngine, reference: str, accept: Callable[[DepositRow], bool], **kw: Any
) -> DepositRow:
    row = await eventually(lambda: deposit_row(engine, reference), lambda r: r is not None and accept(r), **kw)
    assert row is not None
    assert accept(row), f"deposit {reference} never reached the expected state: {row}"
    return row


@dataclass(frozen=True)
class EventRow:
    status: str
    event_type: str
    reference: str | None
    attempts: int
    last_error: str | None


async def events_with_body(engine: AsyncEngine, body: bytes) -> list[EventRow]:
    key = hashlib.sha256(body).hexdigest()
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(
                m.WebhookEvent.status,
                m.WebhookEvent.event_type,
                m.WebhookEvent.reference,
                m.WebhookEvent.attempts,
                m.WebhookEvent.last_error,
            ).where(m.WebhookEvent.event_key == key)
        )
        return [EventRow(*row) for row in rows]


async def wait_for_event(engine: AsyncEngine, body: bytes, status: str) -> EventRow:
    rows = await eventually(lambda: events_with_body(engine, body), lambda rs: len(rs) == 1 and rs[0].status == status)
    assert len(rows) == 1, rows
    assert rows[0].status == status, rows[0]
    return rows[0]


async def balance_of(api: httpx.AsyncClient, user: TestUser) -> int:
    response = await api.get("/wallet/balance", headers=user.headers)
    assert response.status_code == 200, response.text
    return int(response.json()["balance"])


async def backdate_deposit(engine: AsyncEngine, reference: str, by: timedelta) -> None:
    """Make a deposit look older (as if created `by` ago), for the age-based rules."""
    async with engine.begin() as connection:
        await connection.exec_driver_sql(
            "UPDATE deposits SET created_at = created_at - $1::interval, updated_at = updated_at - $1::interval "
            "WHERE reference = $2",
            (by, reference),
        )


def paystack_example(**data: Any) -> bytes:
    """Paystack's documented `charge.success` example with some `data` fields replaced, serialised compactly."""
    event = json.loads(CHARGE_SUCCESS_PATH.read_text(encoding="utf-8"))
    event["data"].update(data)
    return json.dumps(event).encode()


@asynccontextmanager
async def in_process(
    settings: Settings, *, client_address: str = "127.0.0.1", **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The app built with `settings` (and `overrides`), started on the test's own loop, reached over ASGI
    from `client_address`. Enter and leave it within one test: the lifespan is left by the task that entered it.
    """
    from app.main import create_app

    app: Litestar = create_app(settings.replaced(**overrides) if overrides else settings)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app, client=(client_address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://wallet.test", timeout=30) as client:
            yield client
