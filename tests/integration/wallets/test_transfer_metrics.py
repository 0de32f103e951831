"""The business metrics of transfers: an accepted and settled transfer moves its counters and the lag histogram."""

from __future__ import annotations

from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.lib.metrics import COUNTERS_KEY, LAG_KEY
from tests.support.factories import fund
from tests.support.processes import ServiceProcess
from tests.support.waiting import wait_for, wait_until_settled


async def _metric(redis: Redis, key: str, field: str) -> float:
    return float(await redis.hget(key, field) or 0)


async def test_a_settled_transfer_counts_as_accepted_and_settled_and_records_its_settlement_lag(
    client: AsyncTestClient, worker: ServiceProcess, redis: Redis, engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    sender, recipient = await make_user(), await make_user()
    await fund(engine, sender.wallet_id, 1_000)
    accepted_before = await _metric(redis, COUNTERS_KEY, "transfers_accepted")
    settled_before = await _metric(redis, COUNTERS_KEY, "transfers_settled")
    lags_before = await _metric(redis, LAG_KEY, "count")
    lag_sum_before = await _metric(redis, LAG_KEY, "sum")

    response = await client.post(
        "/wallet/transfer", json={"wallet_number": recipient.wallet_number, "amount": 250}, headers=sender.headers
    )
    assert response.status_code in {200, 202}, response.text
    await wait_until_settled(db, [response.json()["reference"]])

    assert await _metric(redis, COUNTERS_KEY, "transfers_accepted") == accepted_before + 1

    # The worker counts after its commit (and after announcing it), so the metrics may trail the row.
    async def settlement_observed() -> bool:
        return await _metric(redis, LAG_KEY, "count") > lags_before

    await wait_for(settlement_observed, timeout=10, what="the settlement lag observation")
    settled = await _metric(redis, COUNTERS_KEY, "transfers_settled") - settled_before
    assert settled >= 1
    # One lag observation per settled transfer.
    assert await _metric(redis, LAG_KEY, "count") - lags_before == settled
    assert await _metric(redis, LAG_KEY, "sum") > lag_sum_before
    exposition = (await client.get("/metrics")).text
    assert "wallet_transfers_accepted_total" in exposition
    assert "wallet_transfers_settled_total" in exposition
