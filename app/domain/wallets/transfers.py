"""Sending money: accept in the request, settle in a worker, answer 200 if that happened within the wait.

The acceptance commits (the sender's funds reserved), settlement is requested after that commit
(`settlement.SETTLEMENT`), and the request waits up to `TRANSFER_WAIT_MS` for the worker's notification
(Redis pub/sub, never a polling loop); one status read catches a notification that was lost. With Redis down
the transfer is still accepted (beat settles it) and the answer is 202.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.domain.wallets.ledger import AcceptedTransfer, accept_transfer, new_transfer_reference, transfer_status
from app.domain.wallets.settlement import SETTLEMENT
from app.domain.webhooks.outbox import DELIVERIES_CREATED
from app.lib.drain import CoalescedRequests
from app.lib.metrics import counted

if TYPE_CHECKING:
    from uuid import UUID

    import asyncpg
    from redis.asyncio import Redis

    from app.domain.wallets.notifications import SettlementNotifier, SettlementWaiter
    from app.lib.uow import UnitOfWork

logger = logging.getLogger(__name__)


def unwaited_settlement_requests(redis: Redis) -> CoalescedRequests:
    """The process's requests for settlement that nobody waits for (`TRANSFER_WAIT_MS=0`), folded."""
    return CoalescedRequests(SETTLEMENT, redis, counter="transfers_accepted")


@dataclass(frozen=True)
class TransferOutcome:
    reference: str
    settled: bool
    """The recipient was credited before the answer (200); otherwise the transfer is pending (202)."""


class TransferService:
    """Wallet-to-wallet transfers as the API offers them."""

    def __init__(
        self,
        uow: UnitOfWork,
        *,
        redis: Redis,
        notifier: SettlementNotifier | None,
        wait_ms: int,
        unwaited: CoalescedRequests | None = None,
    ) -> None:
        self.uow = uow
        self.redis = redis
        self.unwaited = unwaited or unwaited_settlement_requests(redis)
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
        requested = asyncio.get_running_loop().create_future()

        async def request_settlement() -> None:
            requested.set_result(await SETTLEMENT.request(self.redis, also=counted("transfers_accepted")))

        async def accept(connection: asyncpg.Connection) -> AcceptedTransfer:
            accepted = await accept_transfer(
                connection,
                sender_user_id=sender_user_id,
                recipient_wallet_number=recipient_wallet_number,
                amount=amount,
                actor=actor,
                reference=reference,
            )
            if accepted.deliveries:
                self.uow.note(DELIVERIES_CREATED)
            if self.wait_seconds > 0:
                self.uow.after_commit(request_settlement)
            else:
                # Nobody waits: the request leaves the response path (still after the commit), folded with others.
                self.uow.after_commit(self._request_settlement_unwaited)
            return accepted

        if self.wait_seconds <= 0:
            await self.uow.run_statement(accept)
            return TransferOutcome(reference=reference, settled=False)
        # Listen before the commit: a settlement that is quicker than us cannot be missed.
        with self._waiting(reference) as waiter:
            await self.uow.run_statement(accept)
            settled = False
            if requested.done() and requested.result() and waiter is not None:
                settled = await waiter.wait(self.wait_seconds)
        if not settled:
            settled = await self._settled_meanwhile(reference)
        return TransferOutcome(reference=reference, settled=settled)

    async def _request_settlement_unwaited(self) -> None:
        self.unwaited.request()

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
            status = await self.uow.run_statement(lambda connection: transfer_status(connection, reference))
        except Exception:
            logger.warning("could not read the status of transfer %s", reference, exc_info=True)
            return False
        return status == "success"
