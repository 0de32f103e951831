"""Settling accepted transfers (the worker side): batch after batch, one run at a time, each transfer once.

`SETTLEMENT` is the drain of pending transfers: acceptance requests it after its commit, a run settles until
nothing is pending, and beat's sweep re-enqueues it when transfers wait too long (a lost message, a killed
worker). Each batch commits its journal, then announces the settled references to the waiting requests.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from app.domain.wallets.ledger import LedgerService, SettledBatch
from app.domain.wallets.notifications import publish_settled
from app.lib.drain import Drain
from app.lib.metrics import counted, lag_observed
from app.lib.tasks import TaskName

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from app.config import MoneySettings
    from app.lib.uow import UnitOfWork

logger = logging.getLogger(__name__)

SETTLEMENT = Drain(TaskName.SETTLE_TRANSFERS)


async def settle_all_pending(uow: UnitOfWork, money: MoneySettings, redis: Redis) -> int:
    """A run of `SETTLEMENT`: settle every pending transfer, batch by batch; how many it settled.

    Under load a batch waits `SETTLEMENT_LINGER_MS` before the next, so the next holds everything accepted
    meanwhile: the worker's fixed cost per batch is then spread over many transfers. A lone transfer (a batch of
    one) is settled at once.
    """
    ledger = LedgerService(uow.session)
    linger = money.settlement_linger_ms / 1000

    async def settle_one_batch() -> SettledBatch | None:
        batch = await ledger.settle_batch(batch_size=money.settlement_batch_size)
        if batch is not None:
            uow.after_commit(lambda: _announce(redis, batch))
        return batch

    async def take_batch() -> int:
        batch = await uow.run(settle_one_batch)
        taken = len(batch.references) if batch is not None else 0
        if 1 < taken < money.settlement_batch_size and linger > 0:
            await asyncio.sleep(linger)
        return taken

    return await SETTLEMENT.run(redis, take_batch)


async def _announce(redis: Redis, batch: SettledBatch) -> None:
    logger.info(
        "settled %d transfers to %d wallets (%d kobo) in journal %s",
        len(batch.references),
        len(batch.credits),
        batch.amount,
        batch.journal_reference,
    )
    await publish_settled(
        redis,
        batch.references,
        also=[counted("transfers_settled", len(batch.references)), lag_observed(batch.lags_seconds)],
    )


async def requeue_stale_transfers(uow: UnitOfWork, money: MoneySettings, redis: Redis) -> int:
    """Beat: when transfers wait longer than `STALE_TRANSFER_SECONDS`, start a settlement run whatever the flag."""
    stale = await uow.read(
        lambda: LedgerService(uow.session).count_stale_transfers(timedelta(seconds=money.stale_transfer_seconds))
    )
    if stale:
        logger.warning(
            "%d transfers pending longer than %ss; re-enqueueing settlement", stale, money.stale_transfer_seconds
        )
        await SETTLEMENT.hand_over(redis)
    return stale
