"""Deposits through Paystack: start one, report it, verify it, and the ONE path that credits it.

A deposit is a row in `deposits` with our own reference. Its life:

- `start`: the row is committed as `pending` before Paystack is called (so a payment can never arrive for a
  reference we do not know), then Paystack initialises the transaction and the checkout URL is stored. If
  Paystack refuses or fails, the deposit is marked `failed` and the caller gets 502: nothing stays pending.
- `confirm_payment`: Paystack says the reference succeeded with an amount and a currency (a `charge.success`
  webhook or a verification). Under the deposit's row lock: already `success` → nothing; amount or currency
  differs from what was initialised → flagged for review, nothing credited; else the ledger credits the wallet
  and the deposit becomes `success`, in the caller's one transaction. The ledger's unique deposit journal makes
  a second credit impossible even if this rule were bypassed.
- `verify`: asks Paystack (`GET /transaction/verify/{reference}`) and applies the answer: `success` through
  `confirm_payment`; `failed` and `reversed` → `failed`; `abandoned` → stays `pending` (the customer may still
  pay on the same checkout page) until `DEPOSIT_ABANDONED_FINAL_HOURS` after creation, then `abandoned`; any
  other status leaves it pending.

Verifications are requested by the status endpoint and by beat (`request_verification`), at most one in flight
per reference: a Redis `SET NX` marker with a TTL, cleared by the task when it finishes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from redis.exceptions import RedisError
from sqlalchemy import insert, or_, select, update

from app.db import models as m
from app.domain.payments.paystack import PaystackError, PaystackTransactionNotFound, VerifiedTransaction
from app.domain.payments.schemas import DepositStarted
from app.domain.review.service import flag_for_review
from app.domain.wallets.ledger import LedgerService
from app.lib.db import run_transaction
from app.lib.errors import PaymentProviderError, RequestValidationError, TransactionNotFound, WalletNotFound
from app.lib.queue import enqueue

if TYPE_CHECKING:
    from uuid import UUID

    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.config import Settings
    from app.domain.payments.paystack import PaystackClient

logger = logging.getLogger(__name__)

VERIFY_DEPOSIT_TASK: Final = "tasks.payments.verify_deposit"
REVERSED: Final = "reversed"
"""Paystack's status for a payment it took back: money that must never be credited, even late."""
VERIFY_MARKER_TTL_SECONDS: Final = 300
"""How long a verification counts as in flight if its task never clears the marker (a killed worker)."""
STALE_BATCH_SIZE: Final = 100

FAILED_STATUSES: Final = frozenset({"failed", REVERSED})
"""Paystack statuses that end a pending deposit as `failed`."""


def new_deposit_reference() -> str:
    """Our reference for a new deposit: only characters Paystack accepts (letters, digits, `-`, `.`, `=`)."""
    return f"dep-{uuid.uuid4().hex}"


def verification_marker(reference: str) -> str:
    """The Redis key that says a verification of `reference` is in flight."""
    return f"payments:verifying:{reference}"


class PaymentOutcome(enum.StrEnum):
    """What `confirm_payment` did with Paystack's word that a reference succeeded."""

    CREDITED = "credited"
    ALREADY_CREDITED = "already_credited"
    REVIEW = "review"
    """Amount or currency differs from the initialised deposit: nothing credited, flagged for a person."""
    UNKNOWN_REFERENCE = "unknown_reference"


@dataclass(frozen=True)
class ConfirmedPayment:
    """Paystack's report that a transaction succeeded, from a webhook or a verification."""

    reference: str
    amount: int
    currency: str
    paid_at: datetime | None
    data: dict[str, Any]
    """Paystack's transaction object, kept on the deposit for an operator."""
    source: str
    """`webhook` or `verification`, for the logs."""


def parse_paystack_time(value: object) -> datetime | None:
    """Paystack's `2016-09-30T21:10:19.000Z`, or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


async def request_verification(redis: Redis, reference: str) -> bool:
    """Enqueue a verification of `reference` unless one is already in flight; True when this call enqueued it.

    Never raises: a Redis or broker outage only means no verification now (beat asks again later).
    """
    marker = verification_marker(reference)
    try:
        if not await redis.set(marker, "1", nx=True, ex=VERIFY_MARKER_TTL_SECONDS):
            return False
    except (RedisError, OSError):
        logger.warning("could not mark verification of deposit %s in flight; not enqueued", reference)
        return False
    # Celery's publish blocks (up to its connect timeout when Redis is down): keep it off the loop.
    if await asyncio.to_thread(enqueue, VERIFY_DEPOSIT_TASK, reference):
        return True
    await verification_finished(redis, reference)
    return False


async def verification_finished(redis: Redis, reference: str) -> None:
    """Clear the in-flight marker so the next status request may verify again."""
    try:
        await redis.delete(verification_marker(reference))
    except (RedisError, OSError):
        logger.warning("could not clear the verification marker of deposit %s; it expires by itself", reference)


class DepositService:
    """Deposits and their crediting. Construct it with the session whose transactions it runs."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- starting a deposit -----------------------------------------------------------------------------

    async def start(
        self,
        *,
        user_id: UUID,
        amount: int,
        settings: Settings,
        paystack: PaystackClient,
        before_commit: Callable[[DepositStarted], Awaitable[None]] | None = None,
    ) -> DepositStarted:
        """Create a pending deposit into the user's wallet and initialise it with Paystack. Commits.

        `before_commit` runs inside the final transaction (an idempotency record stores its answer there).

        Raises:
            RequestValidationError: the amount is outside `DEPOSIT_MIN_AMOUNT`..`DEPOSIT_MAX_AMOUNT`.
            WalletNotFound: the user has no wallet.
            PaymentProviderError: Paystack refused, failed or did not answer; the deposit is marked failed.
        """
        check_deposit_amount(amount, settings)
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
                status=m.DepositStatus.PENDING.value,
            )
        )
        await self.session.commit()

        try:
            created = await paystack.initialize(
                email=email,
                amount=amount,
                reference=reference,
                currency=currency,
                callback_url=settings.paystack_callback_url or None,
                metadata={"wallet_number": wallet_number, "deposit_reference": reference},
            )
        except PaystackError as exc:
            # The client logged Paystack's own message; the customer never got a checkout page to pay on.
            logger.warning("deposit %s not started, marking it failed: Paystack said %s", reference, exc)
            await self._end_pending(reference, m.DepositStatus.FAILED)
            await self.session.commit()
            raise PaymentProviderError(
                "Paystack could not start the payment; nothing was charged. Please try again."
            ) from exc

        started = DepositStarted(
            reference=reference, authorization_url=created.authorization_url, access_code=created.access_code
        )
        await self.session.execute(
            update(m.Deposit)
            .where(m.Deposit.reference == reference)
            .values(
                access_code=created.access_code,
                authorization_url=created.authorization_url,
                updated_at=datetime.now(UTC),
            )
            .execution_options(synchronize_session=False)
        )
        if before_commit is not None:
            await before_commit(started)
        await self.session.commit()
        logger.info("deposit %s of %d %s started for wallet %s", reference, amount, currency, wallet_number)
        return started

    # -- reading ----------------------------------------------------------------------------------------

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

    async def references_to_verify(self, settings: Settings, limit: int = STALE_BATCH_SIZE) -> list[str]:
        """Pending deposits older than `DEPOSIT_VERIFY_AFTER_SECONDS` not verified within that time, oldest first.

        Deposits flagged for review are left to a person: verifying them again cannot change the decision.
        """
        cutoff = datetime.now(UTC) - timedelta(seconds=settings.deposit_verify_after_seconds)
        references = await self.session.scalars(
            select(m.Deposit.reference)
            .where(
                m.Deposit.status == m.DepositStatus.PENDING.value,
                m.Deposit.created_at < cutoff,
                m.Deposit.needs_review.is_(False),
                or_(m.Deposit.last_verified_at.is_(None), m.Deposit.last_verified_at < cutoff),
            )
            .order_by(m.Deposit.created_at)
            .limit(limit)
        )
        found = list(references)
        await self.session.commit()
        return found

    # -- the one crediting path -------------------------------------------------------------------------

    async def confirm_payment(self, payment: ConfirmedPayment) -> PaymentOutcome:
        """Apply Paystack's word that `payment.reference` succeeded. Does NOT commit: the caller commits.

        The deposit row is locked first (then the ledger locks the wallet), so a webhook and a verification
        racing on the same reference serialise here and the second finds the deposit already credited.
        """
        deposit = await self.session.scalar(
            select(m.Deposit).where(m.Deposit.reference == payment.reference).with_for_update()
        )
        if deposit is None:
            logger.info("Paystack %s: success for unknown reference %s, ignored", payment.source, payment.reference)
            return PaymentOutcome.UNKNOWN_REFERENCE
        if deposit.status == m.DepositStatus.SUCCESS.value:
            return PaymentOutcome.ALREADY_CREDITED
        now = datetime.now(UTC)
        if payment.amount != deposit.amount or payment.currency.upper() != deposit.currency.upper():
            reason = (
                f"Paystack ({payment.source}) reported {payment.amount} {payment.currency} paid, but the deposit "
                f"was initialised for {deposit.amount} {deposit.currency}; nothing was credited"
            )
            await self.session.execute(
                update(m.Deposit)
                .where(m.Deposit.id == deposit.id)
                .values(needs_review=True, review_reason=reason, provider_data=payment.data, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            await flag_for_review(
                self.session,
                kind=m.ReviewKind.PAYMENT_MISMATCH,
                reference=deposit.reference,
                reason=reason,
                details={"reported_amount": payment.amount, "reported_currency": payment.currency},
            )
            return PaymentOutcome.REVIEW
        if (deposit.provider_data or {}).get("status") == REVERSED:
            # A refund or chargeback came first; a success delivered after it (Paystack retries webhooks
            # for days) is stale news about money that went back. Crediting it would create money.
            reason = (
                f"Paystack ({payment.source}) reported success after reporting the payment reversed; "
                "nothing was credited"
            )
            await self.session.execute(
                update(m.Deposit)
                .where(m.Deposit.id == deposit.id)
                .values(needs_review=True, review_reason=reason, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            await flag_for_review(
                self.session, kind=m.ReviewKind.SUCCESS_AFTER_REVERSAL, reference=deposit.reference, reason=reason
            )
            return PaymentOutcome.REVIEW
        if deposit.status != m.DepositStatus.PENDING.value or deposit.needs_review:
            # Paystack took the money after we gave up on it (or after an earlier mismatch): it is the
            # customer's money and the amount matches, so it is credited; the log tells an operator.
            logger.warning(
                "deposit %s (%s%s) succeeded late at Paystack; crediting it",
                deposit.reference,
                deposit.status,
                ", under review" if deposit.needs_review else "",
            )
        credited = await LedgerService(self.session).credit_deposit(
            wallet_id=deposit.wallet_id,
            amount=deposit.amount,
            reference=deposit.reference,
            actor=f"paystack:{payment.source}",
        )
        if not credited:
            logger.error(
                "deposit %s was %s but its credit journal exists; marking it success", deposit.reference, deposit.status
            )
        await self.session.execute(
            update(m.Deposit)
            .where(m.Deposit.id == deposit.id)
            .values(
                status=m.DepositStatus.SUCCESS.value,
                paid_at=payment.paid_at or now,
                provider_data=payment.data,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        logger.info(
            "deposit %s credited %d %s (%s)", deposit.reference, deposit.amount, deposit.currency, payment.source
        )
        return PaymentOutcome.CREDITED if credited else PaymentOutcome.ALREADY_CREDITED

    # -- verification -----------------------------------------------------------------------------------

    async def verify(self, reference: str, *, paystack: PaystackClient, settings: Settings) -> str:
        """Ask Paystack about a pending deposit and apply the answer. Commits; returns the deposit's status.

        Nothing is locked while Paystack is asked; the answer is applied under the deposit's row lock, to a
        deposit that is still pending (or, for `success`, through `confirm_payment`).

        Raises:
            PaystackError: Paystack failed or could not be reached (the task retries later).
        """
        deposit = await self.session.scalar(select(m.Deposit).where(m.Deposit.reference == reference))
        await self.session.commit()  # no snapshot or lock held across the HTTP call
        if deposit is None:
            logger.info("verification of unknown deposit %s skipped", reference)
            return "unknown"
        if deposit.status != m.DepositStatus.PENDING.value:
            return deposit.status
        try:
            verified = await paystack.verify(reference)
        except PaystackTransactionNotFound:
            return await run_transaction(self.session, lambda: self._apply_not_found(reference, settings))
        if verified.reference != reference:
            msg = f"Paystack answered the verification of {reference} for {verified.reference}"
            raise PaystackError(msg)
        return await run_transaction(self.session, lambda: self._apply_verification(verified, settings))

    async def _apply_verification(self, verified: VerifiedTransaction, settings: Settings) -> str:
        now = datetime.now(UTC)
        if verified.status == "success":
            outcome = await self.confirm_payment(
                ConfirmedPayment(
                    reference=verified.reference,
                    amount=verified.amount,
                    currency=verified.currency,
                    paid_at=parse_paystack_time(verified.paid_at),
                    data=verified.raw,
                    source="verification",
                )
            )
            await self.session.execute(
                update(m.Deposit)
                .where(m.Deposit.reference == verified.reference)
                .values(last_verified_at=now)
                .execution_options(synchronize_session=False)
            )
            await self.session.commit()
            return m.DepositStatus.PENDING.value if outcome is PaymentOutcome.REVIEW else m.DepositStatus.SUCCESS.value

        deposit = await self._lock(verified.reference)
        if deposit is None or deposit.status != m.DepositStatus.PENDING.value:
            await self.session.commit()
            return deposit.status if deposit is not None else "unknown"
        status = m.DepositStatus.PENDING
        if verified.status in FAILED_STATUSES:
            status = m.DepositStatus.FAILED
        elif verified.status == "abandoned" and now - deposit.created_at >= timedelta(
            hours=settings.deposit_abandoned_final_hours
        ):
            status = m.DepositStatus.ABANDONED
        await self.session.execute(
            update(m.Deposit)
            .where(m.Deposit.id == deposit.id)
            .values(status=status.value, last_verified_at=now, provider_data=verified.raw, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        await self.session.commit()
        if status is not m.DepositStatus.PENDING:
            logger.info("deposit %s is %s: Paystack reports %s", deposit.reference, status.value, verified.status)
        return status.value

    async def _apply_not_found(self, reference: str, settings: Settings) -> str:
        """Paystack has no transaction with our reference: the initialisation never reached it.

        That is final only once no initialisation can still be under way: a deposit without a checkout URL
        older than `DEPOSIT_VERIFY_AFTER_SECONDS` (its request died), or any deposit past the abandonment age.
        """
        now = datetime.now(UTC)
        deposit = await self._lock(reference)
        if deposit is None or deposit.status != m.DepositStatus.PENDING.value:
            await self.session.commit()
            return deposit.status if deposit is not None else "unknown"
        age = now - deposit.created_at
        final = age >= timedelta(hours=settings.deposit_abandoned_final_hours) or (
            deposit.access_code is None and age >= timedelta(seconds=settings.deposit_verify_after_seconds)
        )
        status = m.DepositStatus.FAILED if final else m.DepositStatus.PENDING
        await self.session.execute(
            update(m.Deposit)
            .where(m.Deposit.id == deposit.id)
            .values(status=status.value, last_verified_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        await self.session.commit()
        logger.warning("Paystack knows no transaction %s; the deposit stays %s", reference, status.value)
        return status.value

    async def _lock(self, reference: str) -> m.Deposit | None:
        deposit: m.Deposit | None = await self.session.scalar(
            select(m.Deposit).where(m.Deposit.reference == reference).with_for_update()
        )
        return deposit

    async def _end_pending(self, reference: str, status: m.DepositStatus) -> None:
        """Move a deposit that is still pending to `status` (one that moved on meanwhile keeps its own)."""
        statement = update(m.Deposit).where(
            m.Deposit.reference == reference, m.Deposit.status == m.DepositStatus.PENDING.value
        )
        await self.session.execute(
            statement.values(status=status.value, updated_at=datetime.now(UTC)).execution_options(
                synchronize_session=False
            )
        )


def check_deposit_amount(amount: int, settings: Settings) -> None:
    """Refuse a deposit outside `DEPOSIT_MIN_AMOUNT`..`DEPOSIT_MAX_AMOUNT` (400 `VALIDATION_ERROR`)."""
    if amount < settings.deposit_min_amount:
        raise RequestValidationError(
            f"The amount must be at least {settings.deposit_min_amount} kobo (DEPOSIT_MIN_AMOUNT).",
            errors=[{"key": "amount", "source": "body", "message": f"must be >= {settings.deposit_min_amount}"}],
        )
    if amount > settings.deposit_max_amount:
        raise RequestValidationError(
            f"The amount must be at most {settings.deposit_max_amount} kobo.",
            errors=[{"key": "amount", "source": "body", "message": f"must be <= {settings.deposit_max_amount}"}],
        )
