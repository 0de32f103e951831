"""Beat's key-expiry sweep, and forgetting logouts of tokens that have expired anyway."""

from __future__ import annotations

import logging

from app.domain.auth.tokens import forget_expired_revocations
from app.domain.keys.service import ApiKeyService
from app.lib.tasks import TaskName
from tasks import app, runtime
from tasks.base import WalletTask

logger = logging.getLogger(__name__)


async def _sweep(context: runtime.WorkerContext) -> int:
    async with context.unit_of_work() as uow:
        expired = await uow.run(lambda: ApiKeyService(session=uow.session).expire_due_keys())
        forgotten = await uow.run(lambda: forget_expired_revocations(uow.session))
    if expired:
        logger.info("marked %d API keys expired", expired)
    if forgotten:
        logger.info("forgot %d logouts of tokens that have expired anyway", forgotten)
    return expired


@app.task(name=TaskName.SWEEP_EXPIRED_KEYS, base=WalletTask, bind=True)
def sweep_expired_keys(self: WalletTask) -> int:
    """Mark keys past their expiry as expired, and forget logouts of tokens past theirs."""
    return self.run_async(_sweep)
