"""Prometheus metrics: HTTP requests by route and status, and the business's own counters.

HTTP metrics come from Litestar's Prometheus middleware (per API process). Business events happen in
several processes (the API accepts transfers, workers settle them and process webhooks), so their
counters live in Redis hashes that every process increments, and `/metrics` reads them at scrape time.
Losing Redis resets these counters, which Prometheus treats like any counter reset. Deposits by status are
a gauge read from PostgreSQL at scrape time (`deposit_counts`): the table is the truth, and a count per
status on every scrape needs no bookkeeping in the payment paths.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.db import models as m
from app.domain.review.service import open_items_by_kind

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession

logger = logging.getLogger(__name__)

COUNTERS_KEY = "metrics:counters"
LAG_KEY = "metrics:settlement_lag"
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

COUNTER_HELP = {
    "transfers_accepted": "Transfers accepted (sender debited, settlement pending).",
    "transfers_settled": "Transfers settled (recipient credited).",
    "webhook_events": "Paystack webhook events by processing outcome.",
}


def _field(name: str, labels: Mapping[str, str]) -> str:
    return name + "".join(f"|{key}={value}" for key, value in sorted(labels.items()))


async def count(redis: Redis, name: str, amount: int = 1, **labels: str) -> None:
    """Add to a business counter; never fails the caller (metrics are best effort)."""
    try:
        await redis.hincrby(COUNTERS_KEY, _field(name, labels), amount)
    except Exception:  # a metrics outage must not fail money movement
        logger.debug("metrics: could not count %s", name, exc_info=True)


async def observe_settlement_lag(redis: Redis, lags_seconds: Iterable[float]) -> None:
    """Record acceptance-to-settlement times into the histogram's buckets."""
    lags = list(lags_seconds)
    if not lags:
        return
    # Added up here: one command per bucket for a whole settlement batch, not one per bucket per transfer.
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for bound in LAG_BUCKETS:
                within = sum(1 for lag in lags if lag <= bound)
                if within:
                    pipe.hincrby(LAG_KEY, f"le={bound}", within)
            pipe.hincrby(LAG_KEY, "count", len(lags))
            pipe.hincrbyfloat(LAG_KEY, "sum", sum(lags))
            await pipe.execute()
    except Exception:  # as above
        logger.debug("metrics: could not observe settlement lag", exc_info=True)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _BusinessSnapshot(Collector):
    def __init__(
        self,
        counters: Mapping[bytes | str, bytes | str],
        lag: Mapping[bytes | str, bytes | str],
        deposits: Mapping[str, int],
        review: Mapping[str, int],
        failing_events: int,
    ) -> None:
        self.counters = {_text(k): int(v) for k, v in counters.items()}
        self.lag = {_text(k): float(v) for k, v in lag.items()}
        self.deposits = deposits
        self.review = review
        self.failing_events = failing_events

    def collect(self) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily] = {}
        for name, help_text in COUNTER_HELP.items():
            label_names = sorted(
                {
                    part.split("=", 1)[0]
                    for field in self.counters
                    if field.split("|")[0] == name
                    for part in field.split("|")[1:]
                }
            )
            families[name] = CounterMetricFamily(f"wallet_{name}", help_text, labels=label_names)
        for field, value in sorted(self.counters.items()):
            name, *parts = field.split("|")
            family = families.get(name)
            if family is None:
                continue
            labels = dict(part.split("=", 1) for part in parts)
            family.add_metric([labels.get(label, "") for label in family._labelnames], value)  # noqa: SLF001
        yield from families.values()
        buckets = [(str(bound), self.lag.get(f"le={bound}", 0.0)) for bound in LAG_BUCKETS]
        buckets.append(("+Inf", self.lag.get("count", 0.0)))
        histogram = HistogramMetricFamily(
            "wallet_settlement_lag_seconds", "Time from a transfer's acceptance to its settlement."
        )
        histogram.add_metric([], buckets, self.lag.get("sum", 0.0))
        yield histogram
        deposits = GaugeMetricFamily("wallet_deposits", "Deposits by status, now.", labels=["status"])
        for status, number in sorted(self.deposits.items()):
            deposits.add_metric([status], number)
        yield deposits
        review = GaugeMetricFamily(
            "wallet_review_items_open", "Items waiting in the operator review queue, by kind.", labels=["kind"]
        )
        for kind in m.ReviewKind:
            review.add_metric([kind.value], self.review.get(kind.value, 0))
        yield review
        yield GaugeMetricFamily(
            "wallet_webhook_events_failing",
            "Stored Paystack events that kept failing to apply (status `failed`); each is also a review item.",
            value=self.failing_events,
        )


async def deposit_counts(session: AsyncSession) -> dict[str, int]:
    """Deposits per status, plus `needs_review` (flagged for an operator, whatever their status)."""
    rows = await session.execute(
        select(m.Deposit.status, func.count()).group_by(m.Deposit.status).order_by(m.Deposit.status)
    )
    counts = {status: int(number) for status, number in rows.tuples()}
    counts["needs_review"] = int(
        await session.scalar(select(func.count()).select_from(m.Deposit).where(m.Deposit.needs_review)) or 0
    )
    return counts


async def failing_event_count(session: AsyncSession) -> int:
    """Stored Paystack events whose processing kept failing."""
    return int(
        await session.scalar(
            select(func.count())
            .select_from(m.WebhookEvent)
            .where(m.WebhookEvent.status == m.WebhookEventStatus.FAILED.value)
        )
        or 0
    )


async def render(redis: Redis, session: AsyncSession) -> bytes:
    """The exposition text: this process's HTTP metrics and the shared business counters."""
    business = b""
    try:
        registry = CollectorRegistry()
        snapshot = _BusinessSnapshot(
            await redis.hgetall(COUNTERS_KEY),
            await redis.hgetall(LAG_KEY),
            await deposit_counts(session),
            await open_items_by_kind(session),
            await failing_event_count(session),
        )
        registry.register(snapshot)
        business = generate_latest(registry)
    except Exception:  # HTTP metrics are still worth serving without Redis or PostgreSQL
        logger.warning("metrics: business counters unavailable", exc_info=True)
    return bytes(generate_latest(REGISTRY)) + business
