"""Ledger tasks: settle pending transfers, re-enqueue stale ones, check the invariants.

Thin: the rules live in `app.domain.wallets` (the ledger service and its checks). Every task is idempotent:
settlement claims only transfers that are still pending, under row locks, so a task delivered twice, or a
batch whose worker died before its commit, moves no money twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from app.domain.wallets.checks import check_ledger
from app.domain.wallets.ledger import LedgerService, SettledBatch
from app.domain.wallets.notifications import publish_settled
from app.domain.wallets.transfers import SETTLE_TRANSFERS_TASK, enqueue_settlement
from app.lib.db import is_retryable
from app.lib.errors import is_unavailable
from app.lib.metrics import count, observe_settlement_lag
from app.lib.queue import drain_finished
from tasks import app, runtime

logger = logging.getLogger(__name__)

SETTLEMENT_TIME_BUDGET_SECONDS = 60.0
"""One run settles for at most this long, then hands over to a fresh run (time limits are 240/300 s)."""

TEST_PAUSE_ENV = "WALLET_TEST_SETTLEMENT_PAUSE_SECONDS"
"""TEST-ONLY hook: seconds a worker sleeps inside each settlement batch, after writing it and before its
commit, so a test can SIGKILL the worker mid-batch. Ignored when APP_ENV=production; never set it elsewhere."""


async def _settle(context: runtime.WorkerContext) -> int:
    pause = runtime.pause_hook_seconds(TEST_PAUSE_ENV, context.settings.app_env)

    async def paused_before_commit(batch: SettledBatch) -> None:
        logger.warning(
            "TEST HOOK: settlement batch of %d transfers paused %.1fs before commit", len(batch.references), pause
        )
        await asyncio.sleep(pause)

    async def announce(batch: SettledBatch) -> None:
        logger.info(
            "settled %d transfers to %d wallets (%d kobo) in journal %s",
            len(batch.references),
            len(batch.credits),
            batch.amount,
            batch.journal_reference,
        )
        await publish_settled(context.redis, batch.references)
        await count(context.redis, "transfers_settled", len(batch.references))
        await observe_settlement_lag(context.redis, batch.lags_seconds)

    deadline = time.monotonic() + SETTLEMENT_TIME_BUDGET_SECONDS
    settled = 0
    last_look = False
    async with context.session() as session:
        ledger = LedgerService(session)
        while True:
            run = await ledger.settle_pending(
                batch_size=context.settings.settlement_batch_size,
                time_budget_seconds=max(deadline - time.monotonic(), 0.0),
                on_settled=announce,
                before_commit=paused_before_commit if pause else None,
            )
            settled += run.settled
            if run.more_pending or time.monotonic() > deadline:
                enqueue_settlement()  # a fresh run carries on, and clears the flag when it is done
                break
            if last_look:
                break
            if not run.settled:
                # Nothing pending. Transfers whose requests found the flag set were committed before this:
                # one last look after clearing it sees them. While passes find work, the flag stays set, so
                # requests keep relying on this run instead of enqueueing runs of their own.
                await drain_finished(context.redis, SETTLE_TRANSFERS_TASK)
                last_look = True
    return settled


@app.task(name="tasks.ledger.settle_transfers", bind=True, max_retries=10)
def settle_transfers(self) -> int:  # type: ignore[no-untyped-def]
    """Settle every pending transfer, batch by batch (takes no arguments: any run drains all).

    Requested through `app.lib.queue.request_drain` (one run pending or running at a time), enqueued
    directly by beat's sweep and by a run that ran out of time.
    """
    try:
        return runtime.run(_settle)
    except Exception as exc:
        # The service already retried its transaction a few times; a still-retryable failure, or a database
        # or Redis that went away mid-run (the batch rolled back), comes back later rather than wait for beat.
        if is_retryable(exc) or is_unavailable(exc):
            raise self.retry(exc=exc, countdown=min(2**self.request.retries, 30)) from exc
        raise


async def _requeue(context: runtime.WorkerContext) -> int:
    async with context.session() as session:
        stale = await LedgerService(session).count_stale_transfers(
            timedelta(seconds=context.settings.stale_transfer_seconds)
        )
    if stale:
        logger.warning(
            "%d transfers pending longer than %ss; re-enqueueing settlement",
            stale,
            context.settings.stale_transfer_seconds,
        )
        enqueue_settlement()
    return stale


@app.task(name="tasks.ledger.requeue_stale_transfers")
def requeue_stale_transfers() -> int:
    """Beat: re-enqueue settlement when transfers wait too long (a lost message, a killed worker)."""
    return runtime.run(_requeue)


async def _check(context: runtime.WorkerContext) -> int:
    async with context.session() as session:
        report = await check_ledger(session)
    for violation in report.violations:
        logger.error("ledger invariant violated: %s", violation)
    if report.ok:
        logger.info(report.summary())
    else:
        logger.error(report.summary())
    return len(report.violations)


@app.task(name="tasks.ledger.check_ledger")
def check_ledger_task() -> int:
    """Beat: verify the ledger's invariants; every violation is logged at ERROR."""
    return runtime.run(_check)
