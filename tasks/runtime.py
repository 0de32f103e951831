"""One long-lived event loop, engine and Redis client per task thread, and the context tasks run in.

Celery tasks are synchronous and the services are async. `asyncio.run()` per task would leave a pooled
asyncpg engine attached to a dead loop after the first task, so each thread that runs tasks (one in a prefork child,
`-c` of them in the default threads pool) keeps one `asyncio.Runner` and makes its engine inside it; the pool
then lives as long as the thread. A task's coroutine gets a
`WorkerContext`, whose `unit_of_work()` owns the task's transactions.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from celery.signals import task_postrun, task_prerun, worker_process_init, worker_process_shutdown, worker_shutdown
from sqlalchemy import event
from sqlalchemy.util import await_only

from app.config import Settings, get_settings
from app.domain.webhooks.delivery import DELIVERIES
from app.domain.webhooks.outbox import DELIVERIES_CREATED
from app.lib.db import session_maker
from app.lib.heap import freeze_long_lived
from app.lib.logging import request_id_var
from app.lib.redis import create_redis
from app.lib.uow import UnitOfWork

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
    from sqlalchemy.orm import ORMExecuteState, Session

T = TypeVar("T")
logger = logging.getLogger(__name__)

TEST_COMMIT_PAUSE_ENV = "WALLET_TEST_COMMIT_PAUSE_SECONDS"
"""TEST-ONLY hook: seconds a worker process sleeps before each commit of a task's session that writes
something (its writes sent, its row locks held), so a test can SIGKILL the worker in the middle of, e.g.,
processing a webhook, whatever the task. Ignored when APP_ENV=production; never set it elsewhere."""


def pause_hook_seconds(variable: str, app_env: str) -> float:
    """The seconds a TEST-ONLY pause variable asks for; always 0 in production or when unreadable."""
    if app_env == "production":
        return 0.0
    try:
        return max(float(os.environ.get(variable, "0") or 0), 0.0)
    except ValueError:
        return 0.0


def _pause_before_writing_commits(session: AsyncSession, seconds: float) -> None:
    wrote = False

    def note_write(state: ORMExecuteState) -> None:
        nonlocal wrote
        wrote = wrote or state.is_insert or state.is_update or state.is_delete

    def paused_before_commit(sync_session: Session) -> None:
        nonlocal wrote
        if wrote or sync_session.new or sync_session.dirty or sync_session.deleted:
            wrote = False
            logger.warning("TEST HOOK: commit paused %.1fs", seconds)
            await_only(asyncio.sleep(seconds))  # inside the session's greenlet: the loop keeps running

    def forget_writes(_: Session) -> None:
        nonlocal wrote
        wrote = False

    event.listen(session.sync_session, "do_orm_execute", note_write)
    event.listen(session.sync_session, "before_commit", paused_before_commit)
    event.listen(session.sync_session, "after_rollback", forget_writes)


@dataclass
class WorkerContext:
    """What a task's coroutine gets: the settings, Redis, and units of work over the process's engine."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        """A unit of work over a session of its own, closed when the block ends."""
        async with self.sessions() as session:
            pause = pause_hook_seconds(TEST_COMMIT_PAUSE_ENV, self.settings.app_env)
            if pause:
                _pause_before_writing_commits(session, pause)
            yield UnitOfWork(session, on_commit={DELIVERIES_CREATED: partial(DELIVERIES.request, self.redis)})


class _Runtime(threading.local):
    runner: asyncio.Runner | None = None
    context: WorkerContext | None = None


_local = _Runtime()
_lock = threading.Lock()
_started: list[tuple[asyncio.Runner, WorkerContext]] = []
"""Every thread's runtime, so process shutdown can close them all (the threads pool runs tasks on several)."""


def _start() -> tuple[asyncio.Runner, WorkerContext]:
    runner, context = _local.runner, _local.context
    if runner is None or context is None:
        settings = get_settings()
        runner = asyncio.Runner()

        async def build() -> WorkerContext:
            engine = settings.database.create_engine()
            return WorkerContext(settings, engine, session_maker(engine), create_redis(settings.redis.url))

        context = runner.run(build())
        freeze_long_lived()
        _local.runner, _local.context = runner, context
        with _lock:
            _started.append((runner, context))
    return runner, context


def run(work: Callable[[WorkerContext], Awaitable[T]]) -> T:
    """Run a task's coroutine on this thread's loop (one thread per task slot, each with its own loop)."""
    runner, context = _start()

    async def call() -> T:
        return await work(context)

    # The runner would run `call` in the context it saved when it was made; this thread's context holds
    # the task id that `_stamp_task_id` set for the log lines.
    return runner.run(call(), context=contextvars.copy_context())


def shutdown() -> None:
    """Dispose every thread's engine and Redis client and close its loop (process exit)."""
    with _lock:
        started = list(_started)
        _started.clear()
    for runner, context in started:

        async def close(context: WorkerContext = context) -> None:
            await context.redis.aclose()
            await context.engine.dispose()

        try:
            runner.run(close())
        except Exception:
            logger.warning("could not close a task thread's connections", exc_info=True)
        finally:
            runner.close()
    _local.runner, _local.context = None, None


@worker_process_init.connect
def _on_process_init(**_: object) -> None:
    # A forked child must not reuse the parent's loops or sockets (it inherited their objects, not their use).
    with _lock:
        _started.clear()
    _local.runner, _local.context = None, None
    _start()


@worker_process_shutdown.connect
def _on_process_shutdown(**_: object) -> None:
    shutdown()


@worker_shutdown.connect
def _on_worker_shutdown(**_: object) -> None:
    shutdown()


@task_prerun.connect
def _stamp_task_id(task_id: str | None = None, **_: object) -> None:
    request_id_var.set(task_id or "-")


@task_postrun.connect
def _clear_task_id(**_: object) -> None:
    request_id_var.set("-")
