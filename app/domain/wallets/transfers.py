"""Sending money: accept in the request, settle in a worker, answer 200 if that happened within the wait.

The acceptance commits (the sender's funds reserved), settlement is requested after that commit
(`settlement.SETTLEMENT`), and the request waits up to `TRANSFER_WAIT_MS` for the worker's notification
(Redis pub/sub, never a polling loop); one status read catches a notification that was lost. With Redis down
the transfer is still accepted (beat settles it) and the answer is 202.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.domain.wallets.ledger import AcceptedTransfer, LedgerService, new_transfer_reference
from app.domain.wallets.settlement import SETTLEMENT
from app.lib.metrics import count

if TYPE_CHECKING:
    from uuid import UUID

    from redis.asyncio import Redis

    from app.domain.wallets.notifications import SettlementNotifier, SettlementWaiter
    from app.lib.uow import UnitOfWork

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransferOutcome:
    reference: str
    settled: bool
    """The recipient was credited before the answer (200); otherwise the transfer is pending (202)."""


class TransferService:
    """Wallet-to-wallet transfers as the API offers them."""

    def __init__(self, uow: UnitOfWork, *, redis: Redis, notifier: SettlementNotifier | None, wait_ms: int) -> None:
        self.uow = uow
        self.ledger = LedgerService(uow.session)
        self.redis = redis
        self.notifier = notifier
        self.wait_seconds = max(wait_ms, 0) / 1000

    async def send(
        self, *, sender_user_id: UUID, recipient_wallet_number: str, amount: int, actor: str
    ) -> TransferOutcome:
        """Move `amount` from the caller's wallet to the wallet with this number (`actor`: who sends it).

        Raises:
            WalletNotFound: no wallet has this number.
            SelfTransfer: it is the caller's own wallet.
            InsufficientBalance: the caller's balance is lower than the amount.
        """
        reference = new_transfer_reference()
        requested = False

        async def request_settlement() -> None:
            nonlocal requested
            requested = await SETTLEMENT.request(self.redis)
            if requested:  # the counter lives in Redis too: not worth a connect timeout while it is down
                await count(self.redis, "transfers_accepted")

        async def accept() -> AcceptedTransfer:
            accepted = await self.ledger.accept_transfer(
                sender_user_id=sender_user_id,
                recipient_wallet_number=recipient_wallet_number,
                amount=amount,
                actor=actor,
                reference=reference,
            )
            self.uow.after_commit(request_settlement)
            return accepted

        # Listen before the commit: a settlement that is quicker than us cannot be missed.
        with self._waiting(reference) as waiter:
            await self.uow.run(accept)
            settled = False
            if requested and waiter is not None and self.wait_seconds > 0:
                settled = await waiter.wait(self.wait_seconds)
        if not settled and self.wait_seconds > 0:
            settled = await self._settled_meanwhile(reference)
        return TransferOutcome(reference=reference, settled=settled)

    @contextlib.contextmanager
    def _waiting(self, reference: str) -> Iterator[SettlementWaiter | None]:
        if self.notifier is None:
            yield None
            return
        with self.notifier.expect(reference) as waiter:
            yield waiter

    async def _settled_meanwhile(self, reference: str) -> bool:
        """One look at the status (not a loop): covers a notification lost or a subscriber reconnecting."""
        try:
            status = await self.uow.read(lambda: self.ledger.transfer_status(reference))
        except Exception:
            logger.warning("could not read the status of transfer %s", reference, exc_info=True)
            return False
        return status == "success"
