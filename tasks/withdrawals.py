"""Payout tasks: move a withdrawal forward with Paystack, and beat's sweep of withdrawals with no outcome.

Thin: the rules live in `app.domain.withdrawals`. A run whose Paystack call has an unknown outcome raises and is
retried with backoff; the retry asks Paystack about the reference before anything else, so it never pays twice.
"""

from __future__ import annotations

import logging
from typing import Any

from app.domain.payments.paystack import PaystackClient
from app.domain.withdrawals.payouts import Payouts, request_stale_payouts
from app.lib.tasks import TaskName
from tasks import app, runtime
from tasks.base import WalletTask

logger = logging.getLogger(__name__)


class PayOutTask(WalletTask):
    """A payout step; a Paystack that fails or does not answer is asked again a few times, then beat asks."""

    abstract = True
    max_retries = 5
    retry_base_seconds = 2.0
    retry_any_failure = True

    def given_up(self, exc: BaseException, args: tuple[Any, ...]) -> str:
        logger.error(
            "payout of withdrawal %s failed %d times; beat's sweep tries again: %r",
            args[0],
            self.request.retries + 1,
            exc,
        )
        return "error"


async def _pay_out(context: runtime.WorkerContext, reference: str) -> str:
    # A client per payout: payouts are rare, and it keeps no connection across forks or loops.
    async with PaystackClient(context.settings.paystack) as paystack, context.unit_of_work() as uow:
        return await Payouts(uow, paystack).advance(reference)


@app.task(name=TaskName.PAY_OUT, base=PayOutTask, bind=True)
def pay_out(self: PayOutTask, reference: str) -> str:
    """Move the withdrawal `reference` one step forward: initiate its transfer, or verify it."""
    if not isinstance(reference, str) or not reference:
        logger.error("pay_out got %r, which is not a withdrawal reference", reference)
        return "missing"
    return self.run_async(lambda context: _pay_out(context, reference))


async def _check_stale(context: runtime.WorkerContext) -> int:
    async with context.unit_of_work() as uow:
        return await request_stale_payouts(uow, context.settings.money, context.redis)


@app.task(name=TaskName.CHECK_STALE_WITHDRAWALS, base=WalletTask, bind=True, max_retries=0)
def check_stale_withdrawals(self: WalletTask) -> int:
    """Beat: send the payout task again for withdrawals with no outcome after WITHDRAWAL_CHECK_AFTER_SECONDS."""
    return self.run_async(_check_stale)
