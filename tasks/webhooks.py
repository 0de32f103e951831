"""Event delivery tasks, on their own queue (`webhooks_out`): a slow receiver never holds up money moving.

Thin: the rules live in `app.domain.webhooks.delivery`.
"""

from __future__ import annotations

from app.domain.webhooks.delivery import deliver_due, request_due_deliveries
from app.lib.tasks import TaskName
from tasks import app, runtime
from tasks.base import WalletTask


async def _deliver(context: runtime.WorkerContext) -> int:
    return await deliver_due(context.unit_of_work, context.settings, context.redis)


@app.task(name=TaskName.DELIVER_WEBHOOKS, base=WalletTask, bind=True)
def deliver_webhooks(self: WalletTask) -> int:
    """Deliver every event delivery that is due (requested after the commits that create them)."""
    return self.run_async(_deliver)


async def _request_due(context: runtime.WorkerContext) -> int:
    async with context.unit_of_work() as uow:
        return await request_due_deliveries(uow, context.redis)


@app.task(name=TaskName.REQUEST_DUE_DELIVERIES, base=WalletTask, bind=True, max_retries=0)
def request_due_webhook_deliveries(self: WalletTask) -> int:
    """Beat: start a delivery run when deliveries are due (retries whose time came, leases dead workers left)."""
    return self.run_async(_request_due)
