"""Sending money: accept in the request, settle in a worker, answer 200 if that happened within the wait.

`TransferService.send` is what `POST /wallet/transfer` runs: the ledger reserves the sender's funds and
commits, settlement is requested only after that commit (one settlement run pending or running at a time,
however many transfers arrive: `app.lib.queue.request_drain`), and the request then waits up to
`TRANSFER_WAIT_MS` for the worker's settlement notification (Redis pub/sub, never a database polling loop;
one status read at the end catches a notification that was lost; with no wait at all the answer is 202 at
once). When Redis is down the transfer is still accepted (it is committed; beat re-enqueues its settlement)
and the answer is 202.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.domain.wallets.ledger import AcceptedTransfer, LedgerService, new_transfer_reference
from app.lib.metrics import count
from app.lib.queue import enqueue, request_drain

if TYPE_CHECKING:
    from uuid import UUID

    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.domain.wallets.notifications import SettlementNotifier, SettlementWaiter

logger = logging.getLogger(__name__)

SETTLE_TRANSFERS_TASK = "tasks.ledger.settle_transfers"


@dataclass(frozen=True)
class TransferOutcome:
    reference: str
    settled: bool
    """The recipient was credited before the answer (200); otherwise the transfer is pending (202)."""


BROKER_BACKOFF_SECONDS = 5.0
"""After a failed request, skip requesting this long: beat settles the backlog, and requests stay fast."""
_broker_down_until = 0.0


def enqueue_settlement() -> bool:
    """Enqueue a settlement run unconditionally (beat's sweep, a run that ran out of time): no debounce."""
    return enqueue(SETTLE_TRANSFERS_TASK)


async def request_settlement(redis: Redis) -> bool:
    """Make sure a settlement run looks for this transfer after this call (`request_drain`: one run at a time).

    While Redis is known to be down, returns False at once instead of waiting for a connect timeout on
    every transfer; the committed transfers are settled by beat's sweep once Redis is back.
    """
    global _broker_down_until  # noqa: PLW0603 - one breaker per process is the point
    if time.monotonic() < _broker_down_until:
        return False
    requested = await request_drain(redis, SETTLE_TRANSFERS_TASK)
    if not requested:
        _broker_down_until = time.monotonic() + BROKER_BACKOFF_SECONDS
    return requested


@contextlib.contextmanager
def _waiting(notifier: SettlementNotifier | None, reference: str) -> Iterator[SettlementWaiter | None]:
    if notifier is None:
        yield None
        return
    with notifier.expect(reference) as waiter:
        yield waiter


class TransferService:
    """Wallet-to-wallet transfers as the API offers them."""

    def __init__(
        self, session: AsyncSession, *, redis: Redis, notifier: SettlementNotifier | None, wait_ms: int
    ) -> None:
        self.session = session
        self.ledger = LedgerService(session)
        self.redis = redis
        self.notifier = notifier
        self.wait_seconds = max(wait_ms, 0) / 1000

    async def send(
        self,
        *,
        sender_user_id: UUID,
        recipient_wallet_number: str,
        amount: int,
        actor: str,
        before_commit: Callable[[AcceptedTransfer], Awaitable[None]] | None = None,
    ) -> TransferOutcome:
        """Move `amount` from the caller's wallet to the wallet with this number (`actor`: who sends it).

        Raises:
            WalletNotFound: no wallet has this number.
            SelfTransfer: it is the caller's own wallet.
            InsufficientBalance: the caller's balance is lower than the amount.
        """
        reference = new_transfer_reference()
        # Listen before the commit: a settlement that is quicker than us cannot be missed.
        with _waiting(self.notifier, reference) as waiter:
            await self.ledger.accept_transfer(
                sender_user_id=sender_user_id,
                recipient_wallet_number=recipient_wallet_number,
                amount=amount,
                actor=actor,
                reference=reference,
                before_commit=before_commit,
            )
            requested = await request_settlement(self.redis)
            if requested:  # the counter lives in Redis too: not worth a connect timeout while it is down
                await count(self.redis, "transfers_accepted")
            settled = False
            if requested and waiter is not None and self.wait_seconds > 0:
                settled = await waiter.wait(self.wait_seconds)
        if not settled and self.wait_seconds > 0:
            settled = await self._settled_meanwhile(reference)
        return TransferOutcome(reference=reference, settled=settled)

    async def _settled_meanwhile(self, reference: str) -> bool:
        """One look at the status (not a loop): covers a notification lost or a subscriber reconnecting."""
        try:
            status = await self.ledger.transfer_status(reference)
            await self.session.commit()
        except Exception:
            logger.warning("could not read the status of transfer %s", reference, exc_info=True)
            return False
        return status == "success"
