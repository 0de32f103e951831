"""Beat's key-expiry sweep."""

from __future__ import annotations

import logging

from app.domain.auth.tokens import forget_expired_revocations
from app.domain.keys.service import ApiKeyService
from tasks import app, runtime

logger = logging.getLogger(__name__)


async def _sweep(context: runtime.WorkerContext) -> int:
    async with context.session() as session:
        expired = await ApiKeyService(session=session).expire_due_keys()
        forgotten = await forget_expired_revocations(session)
    if expired:
        logger.info("marked %d API keys expired", expired)
    if forgotten:
        logger.info("forgot %d logouts of tokens that have expired anyway", forgotten)
    return expired


@app.task(name="tasks.keys.sweep_expired_keys")
def sweep_expired_keys() -> int:
    """Mark keys past their expiry as expired, and forget logouts of tokens past theirs."""
    return runtime.run(_sweep)
