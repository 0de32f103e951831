"""Ledger tasks: settle pending transfers, re-enqueue stale ones, check the invariants.

Thin: the rules live in `app.domain.wallets`. Settlement claims only transfers still pending, under row
locks, so a task delivered twice, or a batch whose worker died before its commit, moves no money twice.
"""

from __future__ import annotations

import logging

from app.domain.wallets.checks import check_ledger
from app.domain.wallets.settlement import requeue_stale_transfers, settle_all_pending
from app.lib.tasks import TaskName
from tasks import app, runtime
from tasks.base import WalletTask

logger = logging.getLogger(__name__)


async def _settle_all_pending(context: runtime.WorkerContext) -> int:
    async with context.unit_of_work() as uow:
        return await settle_all_pending(uow, context.settings.money, context.redis)


@app.task(name=TaskName.SETTLE_TRANSFERS, base=WalletTask, bind=True)
def settle_transfers(self: WalletTask) -> int:
    """Settle every pending transfer, batch by batch (any run drains all: it takes no arguments)."""
    return self.run_async(_settle_all_pending)


async def _requeue_stale_transfers(context: runtime.WorkerContext) -> int:
    async with context.unit_of_work() as uow:
        return await requeue_stale_transfers(uow, context.settings.money, context.redis)


@app.task(name=TaskName.REQUEUE_STALE_TRANSFERS, base=WalletTask, bind=True, max_retries=0)
def requeue_stale(self: WalletTask) -> int:
    """Beat: re-enqueue settlement when transfers wait too long (a lost message, a killed worker)."""
    return self.run_async(_requeue_stale_transfers)


async def _check(context: runtime.WorkerContext) -> int:
    async with context.sessions() as session:
        report = await check_ledger(session)
    for violation in report.violations:
        logger.error("ledger invariant violated: %s", violation)
    (logger.info if report.ok else logger.error)(report.summary())
    return len(report.violations)


@app.task(name=TaskName.CHECK_LEDGER, base=WalletTask, bind=True, max_retries=0)
def check_ledger_task(self: WalletTask) -> int:
    """Beat: verify the ledger's invariants; every violation is logged at ERROR."""
    return self.run_async(_check)
