"""The API process's singletons, made once at start-up and closed at shutdown, and provided by Litestar's DI.

One engine, one Redis client, one Paystack client (one connection pool), one settlement subscriber, one webhook
inbox, one credential verifier and the callers' in-flight slots per process. Handlers receive them as
dependencies; middleware and guards, which Litestar does not inject, read them with `process_of`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.domain.auth.credentials import CredentialVerifier
from app.domain.payments.inbox import WebhookInbox
from app.domain.payments.paystack import PaystackClient
from app.domain.wallets.notifications import SettlementNotifier
from app.lib.db import session_maker
from app.lib.inflight import CallerSlots
from app.lib.redis import create_redis
from app.lib.uow import UnitOfWork

if TYPE_CHECKING:
    from litestar import Litestar

PROCESS_STATE_KEY = "process"


@dataclass
class ApiProcess:
    settings: Settings
    engine: AsyncEngine
    redis: Redis
    verifier: CredentialVerifier
    slots: CallerSlots
    paystack: PaystackClient
    inbox: WebhookInbox
    notifier: SettlementNotifier

    @classmethod
    def start(cls, settings: Settings, engine: AsyncEngine) -> ApiProcess:
        redis = create_redis(settings.redis.url)
        sessions = session_maker(engine)
        notifier = SettlementNotifier(settings.redis.url)
        notifier.start()  # connects in the background
        return cls(
            settings=settings,
            engine=engine,
            redis=redis,
            verifier=CredentialVerifier(settings, redis, sessions),
            slots=CallerSlots(settings.http.max_requests_in_flight_per_caller),
            paystack=PaystackClient(settings.paystack),
            inbox=WebhookInbox(sessions),
            notifier=notifier,
        )

    async def stop(self) -> None:
        await self.paystack.aclose()
        await self.notifier.stop()
        await self.redis.aclose()


def process_of(app: Litestar) -> ApiProcess:
    process: ApiProcess = app.state[PROCESS_STATE_KEY]
    return process


def _process(state: State) -> ApiProcess:
    process: ApiProcess = state[PROCESS_STATE_KEY]
    return process


async def provide_uow(db_session: NamedDependency[AsyncSession]) -> UnitOfWork:
    return UnitOfWork(db_session)


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


DEPENDENCIES: dict[str, Any] = {
    "uow": Provide(provide_uow),
    "settings": Provide(provide_settings, sync_to_thread=False),
    "redis": Provide(provide_redis, sync_to_thread=False),
    "paystack": Provide(provide_paystack, sync_to_thread=False),
    "inbox": Provide(provide_inbox, sync_to_thread=False),
    "notifier": Provide(provide_notifier, sync_to_thread=False),
    "verifier": Provide(provide_verifier, sync_to_thread=False),
    "engine": Provide(provide_engine, sync_to_thread=False),
}
"""The app's dependencies, by the name a handler declares them with."""
