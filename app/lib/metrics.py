"""Prometheus: HTTP metrics by route and status, and the business counters every process shares.

Counters and the settlement-lag histogram live in Redis hashes that API and worker processes increment, so any
API process serves the whole picture; losing Redis resets them, which Prometheus treats as a counter reset.
Gauges of what the database holds are read at scrape time by their domain (`app.domain.system.metrics`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

logger = logging.getLogger(__name__)

COUNTERS_KEY = "metrics:counters"
LAG_KEY = "metrics:settlement_lag"
DELIVERY_LAG_KEY = "metrics:delivery_lag"
LAGS = {
    LAG_KEY: ("wallet_settlement_lag_seconds", "Time from a transfer's acceptance to its settlement."),
    DELIVERY_LAG_KEY: (
        "wallet_webhook_delivery_lag_seconds",
        "Time from an event's movement to its delivery to the user's endpoint.",
    ),
}
"""Each lag histogram: its Redis hash, and its metric's name and help."""
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

COUNTER_HELP = {
    "transfers_accepted": "Transfers accepted (sender debited, settlement pending).",
    "transfers_settled": "Transfers settled (recipient credited).",
    "webhook_events": "Paystack webhook events by processing outcome.",
    "webhook_deliveries": "Event deliveries to users' endpoints by outcome (delivered, retry, failed).",
    "webhook_endpoints_disabled": "Users' endpoints disabled after failing for 3 days in a row.",
}


def _field(name: str, labels: Mapping[str, str]) -> str:
    return name + "".join(f"|{key}={value}" for key, value in sorted(labels.items()))


def counted(name: str, amount: int = 1, **labels: str) -> Callable[[Pipeline], object]:
    """The increment of a business counter, to send in a pipeline with other commands."""
    field = _field(name, labels)
    return lambda pipe: pipe.hincrby(COUNTERS_KEY, field, amount)


async def count(redis: Redis, name: str, amount: int = 1, **labels: str) -> None:
    """Add to a business counter; never fails the caller (metrics are best effort)."""
    try:
        await redis.hincrby(COUNTERS_KEY, _field(name, labels), amount)
    except Exception:  # a metrics outage must not fail money movement
        logger.debug("metrics: could not count %s", name, exc_info=True)


def lag_observed(lags_seconds: Iterable[float], key: str = LAG_KEY) -> Callable[[Pipeline], object]:
    """Times added to a lag histogram's buckets (acceptance-to-settlement by default), to send in a pipeline.

    Added up here: one command per bucket for a whole settlement batch, not one per bucket per transfer.
    """
    lags = list(lags_seconds)

    def add(pipe: Pipeline) -> None:
        if not lags:
            return
        for bound in LAG_BUCKETS:
            within = sum(1 for lag in lags if lag <= bound)
            if within:
                pipe.hincrby(key, f"le={bound}", within)
        pipe.hincrby(key, "count", len(lags))
        pipe.hincrbyfloat(key, "sum", sum(lags))

    return add


async def observe_lag(redis: Redis, lags_seconds: Iterable[float], key: str = LAG_KEY) -> None:
    """Record times in a lag histogram (acceptance-to-settlement by default); never fails the caller."""
    try:
        async with redis.pipeline(transaction=False) as pipe:
            lag_observed(lags_seconds, key)(pipe)
            await pipe.execute()
    except Exception:  # a metrics outage must not fail money movement
        logger.debug("metrics: could not observe %s", key, exc_info=True)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _Snapshot(Collector):
    """The shared counters and the lag histograms as read from Redis, plus gauges read elsewhere."""

    def __init__(
        self,
        counters: Mapping[bytes | str, bytes | str],
        lags: Mapping[str, Mapping[bytes | str, bytes | str]],
        gauges: Iterable[Metric],
    ) -> None:
        self.counters = {_text(k): int(v) for k, v in counters.items()}
        self.lags = {key: {_text(k): float(v) for k, v in lag.items()} for key, lag in lags.items()}
        self.gauges = list(gauges)

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
        for key, (name, help_text) in LAGS.items():
            lag = self.lags.get(key, {})
            buckets = [(str(bound), lag.get(f"le={bound}", 0.0)) for bound in LAG_BUCKETS]
            buckets.append(("+Inf", lag.get("count", 0.0)))
            histogram = HistogramMetricFamily(name, help_text)
            histogram.add_metric([], buckets, lag.get("sum", 0.0))
            yield histogram
        yield from self.gauges


async def render(redis: Redis, gauges: Callable[[], Awaitable[Iterable[Metric]]]) -> bytes:
    """The exposition text: this process's HTTP metrics, the shared counters and `gauges()` (read at scrape)."""
    business = b""
    try:
        registry = CollectorRegistry()
        lags = {key: await redis.hgetall(key) for key in LAGS}
        registry.register(_Snapshot(await redis.hgetall(COUNTERS_KEY), lags, await gauges()))
        business = generate_latest(registry)
    except Exception:  # HTTP metrics are still worth serving without Redis or PostgreSQL
        logger.warning("metrics: business counters unavailable", exc_info=True)
    return bytes(generate_latest(REGISTRY)) + business
