"""Service identity and health."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.domain.auth.guards import RATE_LIMITED
from app.domain.system.metrics import database_gauges
from app.lib.metrics import render as render_metrics
from app.lib.uow import UnitOfWork

HEALTH_CHECK_TIMEOUT_SECONDS = 2.0
logger = logging.getLogger(__name__)


class ServiceInfo(msgspec.Struct):
    name: str
    version: str
    docs: str


class HealthChecks(msgspec.Struct):
    database: str
    redis: str


class Health(msgspec.Struct):
    status: str
    checks: HealthChecks


async def _check_database(engine: AsyncEngine) -> str:
    try:
        async with asyncio.timeout(HEALTH_CHECK_TIMEOUT_SECONDS):
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means the database is not usable
        logger.warning("health: database check failed: %r", exc)
        return "error"
    return "ok"


async def _check_redis(redis: Redis) -> str:
    try:
        async with asyncio.timeout(HEALTH_CHECK_TIMEOUT_SECONDS):
            await redis.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means Redis is not usable
        logger.warning("health: redis check failed: %r", exc)
        return "error"
    return "ok"


class SystemController(Controller):
    tags = ["system"]

    @get(
        "/",
        operation_id="getServiceInfo",
        response_description="The service's name and version, and the path of its docs.",
        summary="Service name, version and where the docs are",
        responses={429: RATE_LIMITED},
    )
    async def root(self, settings: NamedDependency[Settings]) -> ServiceInfo:
        return ServiceInfo(name=settings.app_name, version=settings.app_version, docs="/docs")

    @get(
        "/metrics",
        operation_id="getMetrics",
        response_description="Prometheus text exposition format.",
        summary="Prometheus metrics",
        media_type="text/plain; version=0.0.4; charset=utf-8",
        responses={429: RATE_LIMITED},
    )
    async def metrics(self, redis: NamedDependency[Redis], uow: NamedDependency[UnitOfWork]) -> bytes:
        """HTTP requests and latencies by route and status, and the business counters (docs/operations.md)."""
        return await render_metrics(redis, lambda: uow.read(lambda: database_gauges(uow.session)))

    @get(
        "/health",
        operation_id="getHealth",
        response_description="PostgreSQL and Redis both answer.",
        summary="Whether PostgreSQL and Redis answer",
        responses={503: ResponseSpec(data_container=Health, description="PostgreSQL or Redis is down")},
    )
    async def health(self, redis: NamedDependency[Redis], engine: NamedDependency[AsyncEngine]) -> Response[Health]:
        database, redis_check = await asyncio.gather(_check_database(engine), _check_redis(redis))
        healthy = database == "ok" and redis_check == "ok"
        return Response(
            Health(status="ok" if healthy else "degraded", checks=HealthChecks(database=database, redis=redis_check)),
            status_code=200 if healthy else 503,
        )
