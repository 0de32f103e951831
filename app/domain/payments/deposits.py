"""Deposits through Paystack: start one, and find them (a user's own, or those to verify).

`start` commits the deposit as `pending` before Paystack is called (a payment can never arrive for a reference
we do not know), then stores the checkout URL, or marks it failed when Paystack refuses. What Paystack reports
afterwards is applied by `deposit_states.DepositStates`. The rules are in `docs/payments.md`.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import insert, or_, select, update

from app.db import models as m
from app.domain.payments.deposit_states import DepositEvent, DepositStates
from app.domain.payments.paystack import PaystackError
from app.domain.payments.schemas import DepositStarted
from app.lib.errors import PaymentProviderError, RequestValidationError, TransactionNotFound, WalletNotFound

if TYPE_CHECKING:
    from uuid import UUID

    from app.config import MoneySettings, PaystackSettings
    from app.domain.payments.paystack import PaystackClient
    from app.lib.uow import UnitOfWork

logger = logging.getLogger(__name__)

STALE_BATCH_SIZE = 100


@dataclass(frozen=True)
class _Opened:
    reference: str
    email: str
    wallet_number: str
    currency: str


def new_deposit_reference() -> str:
    """Our reference for a new deposit: only characters Paystack accepts (letters, digits, `-`, `.`, `=`)."""
    return f"dep-{uuid.uuid4().hex}"


def check_deposit_amount(amount: int, money: MoneySettings) -> None:
    """Refuse a deposit outside `DEPOSIT_MIN_AMOUNT`..`DEPOSIT_MAX_AMOUNT` (400 `VALIDATION_ERROR`)."""
    if amount < money.deposit_min_amount:
        raise RequestValidationError(
            f"The amount must be at least {money.deposit_min_amount} kobo (DEPOSIT_MIN_AMOUNT).",
            errors=[{"key": "amount", "source": "body", "message": f"must be >= {money.deposit_min_amount}"}],
        )
    if amount > money.deposit_max_amount:
        raise RequestValidationError(
            f"The amount must be at most {money.deposit_max_amount} kobo.",
            errors=[{"key": "amount", "source": "body", "message": f"must be <= {money.deposit_max_amount}"}],
        )


class DepositService:
    """Deposits and their crediting, in the transactions of `uow`."""

    def __init__(self, uow: UnitOfWork, money: MoneySettings) -> None:
        self.uow = uow
        self.session = uow.session
        self.money = money

    async def start(
        self, *, user_id: UUID, amount: int, paystack: PaystackClient, settings: PaystackSettings
    ) -> DepositStarted:
        """Create a pending deposit into the user's wallet and initialise it with Paystack.

        Raises:
            RequestValidationError: the amount is outside `DEPOSIT_MIN_AMOUNT`..`DEPOSIT_MAX_AMOUNT`.
            WalletNotFound: the user has no wallet.
            PaymentProviderError: Paystack refused, failed or did not answer; the deposit is marked failed.
        """
        check_deposit_amount(amount, self.money)
        opened = await self.uow.run(lambda: self._open(user_id, amount))
        try:
            created = await paystack.initialize(
                email=opened.email,
                amount=amount,
                reference=opened.reference,
                currency=opened.currency,
                callback_url=settings.callback_url or None,
                metadata={"wallet_number": opened.wallet_number, "deposit_reference": opened.reference},
            )
        except PaystackError as exc:
            # The client logged Paystack's own message; the customer never got a checkout page to pay on.
            logger.warning("deposit %s not started, marking it failed: Paystack said %s", opened.reference, exc)
            states = DepositStates(self.session, self.money)
            await self.uow.run(lambda: states.apply_event(opened.reference, DepositEvent.NOT_STARTED))
            raise PaymentProviderError(
                "Paystack could not start the payment; nothing was charged. Please try again."
            ) from exc
        started = DepositStarted(
            reference=opened.reference, authorization_url=created.authorization_url, access_code=created.access_code
        )
        await self.uow.run(lambda: self._record_checkout(started))
        logger.info(
            "deposit %s of %d %s started for wallet %s", opened.reference, amount, opened.currency, opened.wallet_number
        )
        return started

    async def _open(self, user_id: UUID, amount: int) -> _Opened:
        owner = (
            await self.session.execute(
                select(m.User.email, m.Wallet.id, m.Wallet.number, m.Wallet.currency)
                .join(m.Wallet, m.Wallet.user_id == m.User.id)
                .where(m.User.id == user_id)
            )
        ).one_or_none()
        if owner is None:
            raise WalletNotFound
        email, wallet_id, wallet_number, currency = owner
        reference = new_deposit_reference()
        await self.session.execute(
            insert(m.Deposit).values(
                reference=reference,
                wallet_id=wallet_id,
                amount=amount,
                currency=currency,
                status=m.DepositStatus.PENDING,
            )
        )
        return _Opened(reference=reference, email=email, wallet_number=wallet_number, currency=currency)

    async def _record_checkout(self, started: DepositStarted) -> DepositStarted:
        await self.session.execute(
            update(m.Deposit)
            .where(m.Deposit.reference == started.reference)
            .values(
                access_code=started.access_code,
                authorization_url=started.authorization_url,
                updated_at=datetime.now(UTC),
            )
            .execution_options(synchronize_session=False)
        )
        return started

    async def find_own(self, user_id: UUID, reference: str) -> m.Deposit:
        """The user's deposit with this reference.

        Raises:
            TransactionNotFound: no deposit of this user has this reference (someone else's included).
        """
        deposit = await self.session.scalar(
            select(m.Deposit)
            .join(m.Wallet, m.Wallet.id == m.Deposit.wallet_id)
            .where(m.Deposit.reference == reference, m.Wallet.user_id == user_id)
        )
        if deposit is None:
            raise TransactionNotFound("No deposit of yours has this reference.")
        return deposit

    async def status_of(self, reference: str) -> m.DepositStatus | None:
        """The deposit's status now; None for an unknown reference."""
        status = await self.session.scalar(select(m.Deposit.status).where(m.Deposit.reference == reference))
        return m.DepositStatus(status) if status is not None else None

    async def references_to_verify(self, limit: int = STALE_BATCH_SIZE) -> list[str]:
        """Pending deposits older than `DEPOSIT_VERIFY_AFTER_SECONDS` not verified within that time, oldest first.

        Deposits held for review are left to a person: verifying them again cannot change the decision.
        """
        cutoff = datetime.now(UTC) - timedelta(seconds=self.money.deposit_verify_after_seconds)
        references = await self.session.scalars(
            select(m.Deposit.reference)
            .where(
                m.Deposit.status == m.DepositStatus.PENDING,
                m.Deposit.created_at < cutoff,
                m.Deposit.needs_review.is_(False),
                or_(m.Deposit.last_verified_at.is_(None), m.Deposit.last_verified_at < cutoff),
            )
            .order_by(m.Deposit.created_at)
            .limit(limit)
        )
        return list(references)
