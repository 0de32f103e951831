"""Helpers of the withdrawal tests: ask for one over HTTP, read its row and journals, wait for workers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from app.db import models as m
from tests.support.waiting import eventually

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx
    from sqlalchemy.ext.asyncio import AsyncEngine

    from tests.support.users import TestUser

BANK_CODE = "058"
"""Guaranty Trust Bank in the stand-in's bank list."""


async def withdraw(
    api: httpx.AsyncClient,
    user: TestUser,
    amount: int,
    *,
    account_number: str = "0123456789",
    bank_code: str = BANK_CODE,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> httpx.Response:
    return await api.post(
        "/wallet/withdrawals",
        json={"amount": amount, "bank_code": bank_code, "account_number": account_number, **body},
        headers=headers if headers is not None else user.headers,
    )


async def accepted_withdrawal(api: httpx.AsyncClient, user: TestUser, amount: int, **kwargs: Any) -> str:
    """A withdrawal the API accepted (202): its reference."""
    response = await withdraw(api, user, amount, **kwargs)
    assert response.status_code == 202, response.text
    reference: str = response.json()["reference"]
    return reference


@dataclass(frozen=True)
class WithdrawalRow:
    status: str
    amount: int
    failure_reason: str | None
    initiations: int
    journals: dict[str, int]
    """Journals of this withdrawal by kind (`withdrawal`, `payout`, `payout_return`)."""


async def withdrawal_row(engine: AsyncEngine, reference: str) -> WithdrawalRow | None:
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(
                    m.Withdrawal.status, m.Withdrawal.amount, m.Withdrawal.failure_reason, m.Withdrawal.initiations
                ).where(m.Withdrawal.reference == reference)
            )
        ).one_or_none()
        if row is None:
            return None
        journals = await connection.execute(
            select(m.LedgerJournal.kind, func.count())
            .where(m.LedgerJournal.reference == reference)
            .group_by(m.LedgerJournal.kind)
        )
        return WithdrawalRow(
            status=row.status,
            amount=row.amount,
            failure_reason=row.failure_reason,
            initiations=row.initiations,
            journals=dict(journals.tuples().all()),
        )


async def wait_for_withdrawal(
    engine: AsyncEngine, reference: str, accept: Callable[[WithdrawalRow], bool], *, timeout: float = 30
) -> WithdrawalRow:
    row = await eventually(
        lambda: withdrawal_row(engine, reference), lambda r: r is not None and accept(r), timeout=timeout
    )
    assert row is not None, f"no withdrawal {reference}"
    assert accept(row), f"withdrawal {reference} is {row}"
    return row


async def review_kinds(engine: AsyncEngine, reference: str) -> list[str]:
    async with engine.connect() as connection:
        return sorted(await connection.scalars(select(m.ReviewItem.kind).where(m.ReviewItem.reference == reference)))
