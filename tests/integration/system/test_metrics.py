"""`/metrics`: Prometheus text with HTTP metrics by route and status, and the business counters."""

from __future__ import annotations

from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.lib.metrics import count, observe_lag
from tests.support.factories import fund


async def test_metrics_report_requests_by_route_template_and_status(client: AsyncTestClient) -> None:
    await client.get("/health")
    await client.get("/no/such/route")
    await client.get("/wallet/deposit/some-reference/status")  # 401, counted under its template
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "wallet_requests_total{" in text
    assert 'path="/health"' in text
    assert 'status_code="200"' in text
    assert 'wallet_requests_total{app_name="wallet",method="GET",path="/wallet/deposit/{reference}/status"' in text
    assert "some-reference" not in text
    assert 'wallet_request_duration_seconds_bucket{app_name="wallet",le="0.005",method="GET",path="/health"' in text


async def test_business_counters_from_any_process_appear_in_metrics(client: AsyncTestClient, redis: Redis) -> None:
    before = await client.get("/metrics")
    await count(redis, "webhook_events", outcome="metrics-probe")
    await observe_lag(redis, [0.2])
    after = (await client.get("/metrics")).text
    assert 'wallet_webhook_events_total{outcome="metrics-probe"}' in after
    assert "wallet_settlement_lag_seconds_bucket" in after
    assert before.status_code == 200


async def test_deposits_by_status_are_counted_from_the_database(
    client: AsyncTestClient, engine: AsyncEngine, make_user
) -> None:
    def deposits_gauge(text: str) -> dict[str, float]:
        return {
            line.split('"')[1]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("wallet_deposits{")
        }

    before = deposits_gauge((await client.get("/metrics")).text)
    user = await make_user()
    await fund(engine, user.wallet_id, 100)
    after = deposits_gauge((await client.get("/metrics")).text)
    assert after["success"] == before.get("success", 0) + 1
    assert "needs_review" in after
