"""Beat's clean-up of old `Idempotency-Key` records (kept at least 24 hours, as the contract promises)."""

from __future__ import annotations

import logging

from app.lib.idempotency import RETENTION, purge_expired_records
from tasks import app, runtime

logger = logging.getLogger(__name__)


async def _purge(context: runtime.WorkerContext) -> int:
    async with context.session() as session:
        purged = await purge_expired_records(session, RETENTION)
    if purged:
        logger.info("deleted %d idempotency records older than %s", purged, RETENTION)
    return purged


@app.task(name="tasks.idempotency.purge_expired_records")
def purge_idempotency_records() -> int:
    """Delete idempotency records older than the retention period."""
    return runtime.run(_purge)
