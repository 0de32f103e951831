"""Event delivery tasks, on their own queue (`webhooks_out`): a slow receiver never holds up money moving.

Thin: the rules live in `app.domain.webhooks.delivery`.
"""

from __future__ import annotations

import logging
import threading

from app.domain.webhooks.delivery import deliver_due, request_due_deliveries
from app.lib.tasks import TaskName
from tasks import app, runtime
from tasks.base import WalletTask

logger = logging.getLogger(__name__)


_ONE_RUN_PER_PROCESS = threading.BoundedSemaphore(1)
"""A worker process's threads are shared by every queue: however many delivery runs arrive (a request, a
scheduled retry, beat's sweep), one at a time may use a thread, so settlement and crediting always keep one.
A run loops while anything is due, so a run that finds another going leaves the work to it."""
WAIT_FOR_RUN_SECONDS = 2.0
"""How long a run waits for the one going to finish (it may be on its last look) before leaving it the work."""


async def _deliver(context: runtime.WorkerContext) -> int:
    return await deliver_due(context.unit_of_work, context.settings, context.redis)


@app.task(name=TaskName.DELIVER_WEBHOOKS, base=WalletTask, bind=True)
def deliver_webhooks(self: WalletTask) -> int:
    """Deliver every event delivery that is due (requested after the commits that create them)."""
    if not _ONE_RUN_PER_PROCESS.acquire(timeout=WAIT_FOR_RUN_SECONDS):
        logger.info("a delivery run is going in this process; it takes what is due")
        return 0
    try:
        return self.run_async(_deliver)
    finally:
        _ONE_RUN_PER_PROCESS.release()


async def _request_due(context: runtime.WorkerContext) -> int:
    async with context.unit_of_work() as uow:
        return await request_due_deliveries(uow, context.redis)


@app.task(name=TaskName.REQUEST_DUE_DELIVERIES, base=WalletTask, bind=True, max_retries=0)
def request_due_webhook_deliveries(self: WalletTask) -> int:
    """Beat: start a delivery run when deliveries are due (retries whose time came, leases dead workers left)."""
    return self.run_async(_request_due)
