"""Gauges read from PostgreSQL at scrape time: the tables are the truth, and counting on each scrape needs no
bookkeeping in the payment paths."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select

from app.db import models as m
from app.domain.review.service import open_items_by_kind

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


async def database_gauges(session: AsyncSession) -> list[Metric]:
    """Deposits by status (and held for review), open review items by kind, webhook events that keep failing."""
    deposits = GaugeMetricFamily("wallet_deposits", "Deposits by status, now.", labels=["status"])
    rows = await session.execute(
        select(m.Deposit.status, func.count()).group_by(m.Deposit.status).order_by(m.Deposit.status)
    )
    for status, number in rows.tuples():
        deposits.add_metric([status], int(number))
    held = await session.scalar(select(func.count()).select_from(m.Deposit).where(m.Deposit.needs_review))
    deposits.add_metric(["needs_review"], int(held or 0))

    review = GaugeMetricFamily(
        "wallet_review_items_open", "Items waiting in the operator review queue, by kind.", labels=["kind"]
    )
    open_items = await open_items_by_kind(session)
    for kind in m.ReviewKind:
        review.add_metric([kind.value], open_items.get(kind.value, 0))

    failing = await session.scalar(
        select(func.count()).select_from(m.WebhookEvent).where(m.WebhookEvent.status == m.WebhookEventStatus.FAILED)
    )
    return [
        deposits,
        review,
        GaugeMetricFamily(
            "wallet_webhook_events_failing",
            "Stored Paystack events that kept failing to apply (status `failed`); each is also a review item.",
            value=int(failing or 0),
        ),
    ]
