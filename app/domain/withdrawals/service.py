"""Asking for a withdrawal (the API side) and reading them back.

`request` checks the bank against Paystack's list, resolves the account with Paystack, then in ONE transaction
reserves the money (wallet -> `withdrawals_in_flight`) and records the withdrawal `pending`; only after that
commit is the payout task enqueued (`payouts.py` does the rest). A lost enqueue is found by beat's sweep. The
daily limit is summed under the wallet's row lock, so two withdrawals at once cannot both slip under it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, insert, select

from app.db import models as m
from app.domain.payments.paystack import PaystackError
from app.domain.wallets.history import Cursor, keyset_page
from app.domain.wallets.ledger import LedgerService
from app.domain.withdrawals.schemas import Withdrawal, WithdrawalAccepted
from app.lib.db import for_no_key_update
from app.lib.errors import (
    BankAccountInvalid,
    LimitExceeded,
    PaymentProviderError,
    RequestValidationError,
    WalletNotFound,
    WithdrawalNotFound,
)
from app.lib.tasks import TaskName, enqueue

if TYPE_CHECKING:
    from uuid import UUID

    import asyncpg
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.config import MoneySettings
    from app.domain.payments.paystack import PaystackClient, ResolvedAccount
    from app.domain.withdrawals.banks import BankDirectory
    from app.domain.withdrawals.schemas import Bank, WithdrawalRequest
    from app.lib.uow import UnitOfWork

logger = logging.getLogger(__name__)

COUNTED_AGAINST_LIMIT = (
    m.WithdrawalStatus.PENDING.value,
    m.WithdrawalStatus.PROCESSING.value,
    m.WithdrawalStatus.SUCCESS.value,
)
"""What the daily limit counts: money on its way out or gone (failed and reversed ones came back)."""


def new_withdrawal_reference() -> str:
    """Ours and Paystack's transfer reference: lowercase letters, digits and `-` (what both sides accept)."""
    return f"wd-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class _Wallet:
    id: UUID
    currency: str


class WithdrawalService:
    """Withdrawals as the API offers them, in the transactions of `uow`."""

    def __init__(
        self, uow: UnitOfWork, *, redis: Redis, paystack: PaystackClient, banks: BankDirectory, money: MoneySettings
    ) -> None:
        self.uow = uow
        self.session = uow.session
        self.redis = redis
        self.paystack = paystack
        self.banks = banks
        self.money = money

    async def request(self, *, user_id: UUID, body: WithdrawalRequest, actor: str) -> WithdrawalAccepted:
        """Reserve the money and record the withdrawal; the payout follows in a worker.

        Raises:
            WalletNotFound: the user has no wallet.
            RequestValidationError: `bank_code` is not one of Paystack's banks for the wallet's currency.
            BankAccountInvalid: Paystack cannot resolve the account at that bank.
            PaymentProviderError: Paystack failed or could not be reached (nothing was reserved).
            LimitExceeded: the withdrawal would pass `WITHDRAWAL_DAILY_LIMIT`.
            InsufficientBalance: the wallet holds less than the amount.
        """
        wallet = await self.uow.read(lambda: self._wallet_of(user_id))
        bank = await self._bank(wallet.currency, body.bank_code)
        account = await self._resolve(body)
        reference = new_withdrawal_reference()

        order = PayoutOrder(
            amount=body.amount,
            bank=bank,
            account_number=body.account_number,
            account_name=account.account_name,
            narration=body.narration,
        )

        async def reserve() -> WithdrawalAccepted:
            accepted = await reserve_withdrawal(
                self.session,
                wallet_id=wallet.id,
                order=order,
                reference=reference,
                actor=actor,
                daily_limit=self.money.withdrawal_daily_limit,
            )
            self.uow.after_commit(lambda: enqueue(self.redis, TaskName.PAY_OUT, reference))
            return accepted

        accepted = await self.uow.run(reserve)
        logger.info("withdrawal %s of %d %s reserved (%s)", reference, body.amount, wallet.currency, actor)
        return accepted

    async def _wallet_of(self, user_id: UUID) -> _Wallet:
        row = (
            await self.session.execute(select(m.Wallet.id, m.Wallet.currency).where(m.Wallet.user_id == user_id))
        ).one_or_none()
        if row is None:
            raise WalletNotFound("You have no wallet yet.")
        return _Wallet(id=row.id, currency=row.currency)

    async def _bank(self, currency: str, code: str) -> Bank:
        for bank in await self.banks.banks(currency):
            if bank.code == code:
                return bank
        raise RequestValidationError(
            f"bank_code {code!r} is not one of the banks of GET /banks?currency={currency}.",
            errors=[{"key": "bank_code", "source": "body", "message": "unknown bank code"}],
        )

    async def _resolve(self, body: WithdrawalRequest) -> ResolvedAccount:
        try:
            return await self.paystack.resolve_account(account_number=body.account_number, bank_code=body.bank_code)
        except PaystackError as exc:
            if exc.refused:
                raise BankAccountInvalid(
                    f"Paystack cannot resolve account {body.account_number} at bank {body.bank_code}: {exc.message}"
                ) from exc
            raise PaymentProviderError("Paystack could not check the bank account; nothing was reserved.") from exc


@dataclass(frozen=True)
class PayoutOrder:
    """What a withdrawal pays: an amount to a bank account Paystack resolved."""

    amount: int
    bank: Bank
    account_number: str
    account_name: str
    narration: str | None = None


async def reserve_withdrawal(
    session: AsyncSession, *, wallet_id: UUID, order: PayoutOrder, reference: str, actor: str, daily_limit: int
) -> WithdrawalAccepted:
    """Reserve the money (wallet -> `withdrawals_in_flight`) and record the withdrawal `pending`, in the
    session's transaction (the caller commits and then enqueues the payout).

    Raises:
        LimitExceeded: the user's withdrawals today would pass `daily_limit` (0: no limit).
        InsufficientBalance: the wallet holds less than the amount.
        WalletNotFound: no wallet has this id.
    """
    # The wallet's row lock first: the limit's sum and the debit then see every other withdrawal of the day.
    currency = await session.scalar(for_no_key_update(select(m.Wallet.currency).where(m.Wallet.id == wallet_id)))
    if currency is None:
        raise WalletNotFound
    await _check_daily_limit(session, wallet_id, order.amount, daily_limit)
    await LedgerService(session).reserve_withdrawal(
        wallet_id=wallet_id, amount=order.amount, reference=reference, actor=actor
    )
    created_at = datetime.now(UTC)
    account_name = order.account_name[:200]
    await session.execute(
        insert(m.Withdrawal).values(
            reference=reference,
            wallet_id=wallet_id,
            amount=order.amount,
            currency=currency,
            bank_code=order.bank.code,
            bank_name=order.bank.name[:200],
            account_number=order.account_number,
            account_name=account_name,
            narration=order.narration,
            status=m.WithdrawalStatus.PENDING.value,
            created_at=created_at,
            updated_at=created_at,
        )
    )
    return WithdrawalAccepted(
        reference=reference,
        status="pending",
        amount=order.amount,
        currency=currency,
        bank_code=order.bank.code,
        bank_name=order.bank.name,
        account_number_last4=order.account_number[-4:],
        account_name=account_name,
        created_at=created_at,
    )


async def _check_daily_limit(session: AsyncSession, wallet_id: UUID, amount: int, limit: int) -> None:
    if limit <= 0:
        return
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    today = int(
        await session.scalar(
            select(func.coalesce(func.sum(m.Withdrawal.amount), 0)).where(
                m.Withdrawal.wallet_id == wallet_id,
                m.Withdrawal.created_at >= midnight,
                m.Withdrawal.status.in_(COUNTED_AGAINST_LIMIT),
            )
        )
        or 0
    )
    if today + amount > limit:
        raise LimitExceeded(
            f"This withdrawal would bring today's withdrawals to {today + amount} kobo; the daily limit is "
            f"{limit} (WITHDRAWAL_DAILY_LIMIT, per UTC day)."
        )


_COLUMNS = (
    "w.id, w.reference, w.status, w.amount, w.currency, w.bank_code, w.bank_name, w.account_number, "
    "w.account_name, w.failure_reason, w.created_at, w.completed_at"
)
_OWN = "w.wallet_id = (SELECT id FROM wallets WHERE user_id = $1)"
_FIRST_PAGE = f"SELECT {_COLUMNS} FROM withdrawals w WHERE {_OWN} ORDER BY w.created_at DESC, w.id DESC LIMIT $2"  # noqa: S608 - constant fragments only
_NEXT_PAGE = (
    f"SELECT {_COLUMNS} FROM withdrawals w WHERE {_OWN} AND (w.created_at, w.id) < ($3::timestamptz, $4::uuid) "  # noqa: S608 - constant fragments only
    "ORDER BY w.created_at DESC, w.id DESC LIMIT $2"
)
_ONE = f"SELECT {_COLUMNS} FROM withdrawals w WHERE {_OWN} AND w.reference = $2"  # noqa: S608 - constant fragments only


def _withdrawal(row: asyncpg.Record) -> Withdrawal:
    completed_at = row["completed_at"]
    return Withdrawal(
        reference=row["reference"],
        status=row["status"],
        amount=int(row["amount"]),
        currency=row["currency"],
        bank_code=row["bank_code"],
        bank_name=row["bank_name"],
        account_number_last4=row["account_number"][-4:],
        account_name=row["account_name"],
        failure_reason=row["failure_reason"],
        created_at=row["created_at"].astimezone(UTC),
        completed_at=completed_at.astimezone(UTC) if completed_at is not None else None,
    )


@dataclass(frozen=True)
class WithdrawalPage:
    items: list[Withdrawal]
    next_cursor: Cursor | None


class WithdrawalHistory:
    """A user's own withdrawals, one prepared statement each on the connection given."""

    def __init__(self, connection: asyncpg.Connection, *, cursor_secret: bytes = b"") -> None:
        self.connection = connection
        self.cursor_secret = cursor_secret

    async def page(self, user_id: UUID, *, limit: int, cursor: str | None) -> WithdrawalPage:
        """Up to `limit` withdrawals older than the cursor, newest first, and the cursor of the next page."""
        rows, next_cursor = await keyset_page(
            self.connection, (_FIRST_PAGE, _NEXT_PAGE), user_id, limit=limit, cursor=cursor, secret=self.cursor_secret
        )
        return WithdrawalPage(items=[_withdrawal(row) for row in rows], next_cursor=next_cursor)

    async def find(self, user_id: UUID, reference: str) -> Withdrawal:
        """Raises WithdrawalNotFound: no withdrawal of the caller's wallet has this reference."""
        row = await self.connection.fetchrow(_ONE, user_id, reference)
        if row is None:
            raise WithdrawalNotFound("No withdrawal of yours has this reference.")
        return _withdrawal(row)
