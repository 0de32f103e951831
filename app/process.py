"""The API process's singletons, made once at start-up and closed at shutdown, and provided by Litestar's DI.

One engine, one Redis client, one Paystack client (one connection pool), one settlement subscriber, one webhook
inbox, one credential verifier and the callers' in-flight slots per process. Handlers receive them as
dependencies; middleware and guards, which Litestar does not inject, read them with `process_of`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from litestar.datastructures import State
from litestar.di import Provide
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.domain.auth.credential_cache import LISTENER_APPLICATION_NAME, CredentialCache
from app.domain.auth.credentials import CredentialVerifier
from app.domain.payments.inbox import WebhookInbox
from app.domain.payments.paystack import PaystackClient
from app.domain.wallets.notifications import SettlementNotifier
from app.domain.wallets.transfers import unwaited_settlement_requests
from app.domain.webhooks.delivery import DELIVERIES
from app.domain.webhooks.outbox import DELIVERIES_CREATED
from app.lib.db import session_maker
from app.lib.drain import CoalescedRequests
from app.lib.inflight import CallerSlots
from app.lib.redis import create_redis
from app.lib.uow import UnitOfWork

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import asyncpg
    from litestar import Litestar

PROCESS_STATE_KEY = "process"


@dataclass
class ApiProcess:
    settings: Settings
    engine: AsyncEngine
    pool: asyncpg.Pool
    """Plain asyncpg connections for the hot statements (`UnitOfWork.run_statement`, reads)."""
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    verifier: CredentialVerifier
    slots: CallerSlots
    paystack: PaystackClient
    inbox: WebhookInbox
    notifier: SettlementNotifier
    unwaited_settlements: CoalescedRequests
    """Requests for settlement nobody waits for (`TRANSFER_WAIT_MS=0`), folded per process."""
    delivery_requests: CoalescedRequests
    """Requests for a run delivering the events a commit created for subscribed endpoints, folded per process."""

    def unit_of_work(self) -> UnitOfWork:
        """A unit of work of this process; a commit that created event deliveries requests a delivery run."""
        return UnitOfWork(self.sessions, self.pool, on_commit={DELIVERIES_CREATED: self._request_deliveries})

    async def _request_deliveries(self) -> None:
        self.delivery_requests.request()

    @classmethod
    async def start(cls, settings: Settings, engine: AsyncEngine) -> ApiProcess:
        redis = create_redis(settings.redis.url)
        sessions = session_maker(engine)
        pool = await settings.database.create_pool()
        notifier = SettlementNotifier(settings.redis.url)
        notifier.start()  # connects in the background
        credentials = CredentialCache(partial(settings.database.connect, LISTENER_APPLICATION_NAME))
        credentials.start()  # listens in the background; until then every credential is checked in PostgreSQL

        def units() -> UnitOfWork:
            return process.unit_of_work()

        process = cls(
            settings=settings,
            engine=engine,
            pool=pool,
            sessions=sessions,
            redis=redis,
            verifier=CredentialVerifier(settings, pool, credentials),
            slots=CallerSlots(settings.http.max_requests_in_flight_per_caller),
            paystack=PaystackClient(settings.paystack),
            inbox=WebhookInbox(units, redis),
            notifier=notifier,
            unwaited_settlements=unwaited_settlement_requests(redis),
            delivery_requests=CoalescedRequests(DELIVERIES, redis),
        )
        return process

    async def stop(self) -> None:
        # Requests folded but not yet sent go out before Redis closes (beat would otherwise find them later).
        await self.inbox.close()
        await self.unwaited_settlements.close()
        await self.delivery_requests.close()
        await self.verifier.cache.stop()
        await self.paystack.aclose()
        await self.notifier.stop()
        await self.redis.aclose()
        await self.pool.close()
        await self.engine.dispose()


def process_of(app: Litestar) -> ApiProcess:
    process: ApiProcess = app.state[PROCESS_STATE_KEY]
    return process


def _process(state: State) -> ApiProcess:
    process: ApiProcess = state[PROCESS_STATE_KEY]
    return process


async def provide_uow(state: State) -> AsyncIterator[UnitOfWork]:
    """The request's unit of work; its session (made only if the request needs one) closes with the request."""
    uow = _process(state).unit_of_work()
    try:
        yield uow
    finally:
        await uow.close()


def provide_settings(state: State) -> Settings:
    return _process(state).settings


def provide_redis(state: State) -> Redis:
    return _process(state).redis


def provide_paystack(state: State) -> PaystackClient:
    return _process(state).paystack


def provide_inbox(state: State) -> WebhookInbox:
    return _process(state).inbox


def provide_notifier(state: State) -> SettlementNotifier:
    return _process(state).notifier


def provide_verifier(state: State) -> CredentialVerifier:
    return _process(state).verifier


def provide_engine(state: State) -> AsyncEngine:
    return _process(state).engine


def provide_unwaited_settlements(state: State) -> CoalescedRequests:
    return _process(state).unwaited_settlements


DEPENDENCIES: dict[str, Any] = {
    "uow": Provide(provide_uow),
    "settings": Provide(provide_settings, sync_to_thread=False),
    "redis": Provide(provide_redis, sync_to_thread=False),
    "paystack": Provide(provide_paystack, sync_to_thread=False),
    "inbox": Provide(provide_inbox, sync_to_thread=False),
    "notifier": Provide(provide_notifier, sync_to_thread=False),
    "verifier": Provide(provide_verifier, sync_to_thread=False),
    "engine": Provide(provide_engine, sync_to_thread=False),
    "unwaited_settlements": Provide(provide_unwaited_settlements, sync_to_thread=False),
}
"""The app's dependencies, by the name a handler declares them with."""
