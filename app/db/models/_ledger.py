from __future__ import annotations

import enum
from datetime import datetime

from advanced_alchemy.base import IdentityBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column


class SystemAccount(enum.StrEnum):
    """Accounts that are not wallets. They get entries only; their balance is the sum of those entries."""

    PAYSTACK = "paystack"
    """Money that came in from the payment provider (its balance is minus everything deposited)."""
    TRANSFERS_IN_FLIGHT = "transfers_in_flight"
    """Money reserved from senders and not yet credited to recipients."""
    WITHDRAWALS_IN_FLIGHT = "withdrawals_in_flight"
    """Money reserved for withdrawals Paystack has not finished (pending and processing)."""


class JournalKind(enum.StrEnum):
    """Every kind of journal the service writes; the database refuses any other (CHECK `kind_known`)."""

    DEPOSIT = "deposit"
    """`paystack` -> wallet; reference = the deposit's reference (unique: a deposit is credited once)."""
    TRANSFER = "transfer"
    """Acceptance: sender -> `transfers_in_flight`; reference = the transfer's reference."""
    SETTLEMENT = "settlement"
    """One settled batch: `transfers_in_flight` -> recipients; reference = the batch's own reference."""
    REFUND = "refund"
    """Wallet -> `paystack`: a deposit Paystack refunded; reference = Paystack's refund reference (once each)."""
    WITHDRAWAL = "withdrawal"
    """Reservation: wallet -> `withdrawals_in_flight`; reference = the withdrawal's reference."""
    PAYOUT = "payout"
    """Completion: `withdrawals_in_flight` -> `paystack`, the money left; reference = the withdrawal's (once)."""
    PAYOUT_RETURN = "payout_return"
    """A failed or reversed withdrawal's money back to its wallet, from `withdrawals_in_flight` (or from
    `paystack` for a reversal after a success); reference = the withdrawal's (once)."""


JOURNAL_KINDS_SQL = ", ".join(f"'{kind.value}'" for kind in JournalKind)


class LedgerAccount(IdentityBase):
    """One account per wallet, plus the system accounts (seeded by the first migration)."""

    __tablename__ = "ledger_accounts"

    code: Mapped[str] = mapped_column(String(64), unique=True)
    """`wallet:<wallet number>` or the value of a `SystemAccount`."""
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), server_default=func.now())


class LedgerJournal(IdentityBase):
    """One movement of money: its entries sum to zero. Immutable (a trigger refuses UPDATE and DELETE).

    `(kind, reference)` is unique, which is what makes a deposit credit happen once per reference.
    """

    __tablename__ = "ledger_journals"
    __table_args__ = (
        UniqueConstraint("kind", "reference", name="uq_ledger_journals_kind_reference"),
        CheckConstraint(f"kind IN ({JOURNAL_KINDS_SQL})", name="kind_known"),
    )

    kind: Mapped[str] = mapped_column(String(32))
    """A `JournalKind`."""
    reference: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), server_default=func.now())


class LedgerEntry(IdentityBase):
    """A signed amount on one account within one journal. Immutable."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        Index("ix_ledger_entries_account_id", "account_id"),
        Index("ix_ledger_entries_journal_id", "journal_id"),
    )

    journal_id: Mapped[int] = mapped_column(ForeignKey("ledger_journals.id", ondelete="RESTRICT"))
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id", ondelete="RESTRICT"))
    amount: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), server_default=func.now())
