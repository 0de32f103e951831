"""Beat's clean-up of old `Idempotency-Key` records (kept at least 24 hours, as the contract promises)."""

from __future__ import annotations

import logging

from app.lib.idempotency import RETENTION, purge_expired_records
from app.lib.tasks import TaskName
from tasks import app, runtime
from tasks.base import WalletTask

logger = logging.getLogger(__name__)


async def _purge(context: runtime.WorkerContext) -> int:
    async with context.unit_of_work() as uow:
        purged = await uow.run(lambda: purge_expired_records(uow.session, RETENTION))
    if purged:
        logger.info("deleted %d idempotency records older than %s", purged, RETENTION)
    return purged


@app.task(name=TaskName.PURGE_IDEMPOTENCY_RECORDS, base=WalletTask, bind=True)
def purge_idempotency_records(self: WalletTask) -> int:
    """Delete idempotency records older than the retention period."""
    return self.run_async(_purge)
