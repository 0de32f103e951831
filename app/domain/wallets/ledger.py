"""The ledger: the one place that writes journals, entries and wallet balances, in its caller's transaction.

Movements: `credit_deposit` (`paystack` -> wallet, once per reference), `debit_refund` (wallet -> `paystack`,
once per refund), `accept_transfer` (sender -> in flight, one prepared statement), `settle_batch` (in flight ->
recipients, one journal per batch), and a withdrawal's `reserve_withdrawal` (wallet -> `withdrawals_in_flight`),
`complete_withdrawal` (-> `paystack`) or `return_withdrawal` (back to the wallet), each once per withdrawal; a
wallet's `balance` caches its entries, updated with them. Locks and why they cannot deadlock: `docs/ledger.md`.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from uuid_utils.compat import uuid7

from app.db import models as m
from app.domain.webhooks.outbox import FAN_OUT, NEW_EVENT_ID, record_selected, transaction_item_sql
from app.lib import audit
from app.lib.db import for_no_key_update
from app.lib.errors import InsufficientBalance, RequestValidationError, SelfTransfer, WalletNotFound

if TYPE_CHECKING:
    from uuid import UUID

    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncSession

logger = logging.getLogger(__name__)

_ACCEPT = (
    """
WITH recipient AS (
    SELECT id, user_id, currency FROM wallets WHERE number = $1::text
), sender AS (
    SELECT id, currency FROM wallets WHERE user_id = $2::uuid
), debit AS (
    -- The check and the debit are one step: the UPDATE locks the sender's row first (before any row that
    -- references it is inserted) and, after waiting for a concurrent writer, re-checks its WHERE on the row's
    -- latest version. A stale read of the balance can never pass.
    UPDATE wallets
    SET balance = wallets.balance - $3::bigint, updated_at = $6::timestamptz
    FROM recipient, ledger_accounts AS in_flight
    WHERE wallets.user_id = $2::uuid
        -- Joined here, not in the entries: without the account there is no debit, never a one-sided journal.
        AND in_flight.code = $9::text
        AND wallets.balance >= $3::bigint
        AND recipient.user_id <> wallets.user_id
        AND recipient.currency = wallets.currency
    RETURNING wallets.id AS sender_id, wallets.ledger_account_id, wallets.currency, recipient.id AS recipient_id,
        in_flight.id AS in_flight_id
), journal AS (
    INSERT INTO ledger_journals (kind, reference) SELECT $8::text, $4::text FROM debit RETURNING id
), transfer AS (
    INSERT INTO transfers (
        id, reference, sender_wallet_id, recipient_wallet_id, amount, currency, status, created_at, updated_at
    )
    SELECT $5::uuid, $4::text, sender_id, recipient_id, $3::bigint, currency, 'pending', $6::timestamptz,
        $6::timestamptz
    FROM debit
), entries AS (
    INSERT INTO ledger_entries (journal_id, account_id, amount)
    SELECT journal.id, debit.ledger_account_id, -$3::bigint FROM journal, debit
    UNION ALL
    SELECT journal.id, debit.in_flight_id, $3::bigint FROM journal, debit
), audit AS (
    INSERT INTO audit_events (occurred_at, actor, action, subject, amount, details)
    SELECT $6::timestamptz, $7::text, 'transfer.accepted', $4::text, $3::bigint, jsonb_build_object('to', $1::text)
    FROM debit
), event AS (
    INSERT INTO wallet_events (id, user_id, public_id, type, subject, data, created_at, updated_at)
    SELECT gen_random_uuid(), $2::uuid, """  # noqa: S608 - constant fragments only
    + NEW_EVENT_ID
    + """, 'transfer.sent', $4::text, """
    + transaction_item_sql(
        reference="$4::text",
        kind="'transfer_out'",
        amount="$3::bigint",
        status="'pending'",
        counterparty="$1::text",
        created_at="$6::timestamptz",
    )
    + """, $6::timestamptz, $6::timestamptz
    FROM debit
    RETURNING id, user_id, type, created_at
), deliveries AS ("""
    + FAN_OUT.format(events="event")
    + """)
SELECT recipient.id AS recipient_id, recipient.user_id AS recipient_user_id, recipient.currency AS recipient_currency,
    sender.id AS sender_id, sender.currency AS sender_currency, EXISTS (SELECT FROM journal) AS reserved,
    (SELECT count(*) FROM deliveries) AS deliveries
FROM (SELECT) AS one LEFT JOIN recipient ON true LEFT JOIN sender ON true
"""
)
"""Transfer acceptance in one statement, with its audit row and its `transfer.sent` event (and that event's
deliveries): look up the recipient, debit the sender if the balance allows it, and only then write the journal,
the pending transfer and both entries. It answers what
it found either way, so the caller can name the check that failed."""


async def accept_transfer(
    connection: asyncpg.Connection,
    *,
    sender_user_id: UUID,
    recipient_wallet_number: str,
    amount: int,
    actor: str,
    reference: str,
) -> AcceptedTransfer:
    """Reserve a transfer's funds: sender -> `transfers_in_flight`, and a pending transfer (`_ACCEPT`).

    One prepared statement, a transaction by itself (`UnitOfWork.run_statement`). `actor` (the user or API key
    sending) goes to the audit log.

    Raises:
        WalletNotFound: no wallet has this number (or the sender has no wallet).
        SelfTransfer: the number is the sender's own wallet.
        InsufficientBalance: the sender's balance is lower than the amount.
    """
    if amount <= 0:
        raise RequestValidationError("The amount must be a positive integer.")
    row = await connection.fetchrow(
        _ACCEPT,
        recipient_wallet_number,
        sender_user_id,
        amount,
        reference,
        uuid7(),
        datetime.now(UTC),
        actor,
        m.JournalKind.TRANSFER.value,
        m.SystemAccount.TRANSFERS_IN_FLIGHT.value,
    )
    if row["recipient_id"] is None:
        raise WalletNotFound("No wallet has this wallet number.")
    if row["recipient_user_id"] == sender_user_id:
        raise SelfTransfer
    if row["sender_id"] is None:
        raise WalletNotFound("You have no wallet yet.")
    if row["sender_currency"] != row["recipient_currency"]:
        raise RequestValidationError("Transfers between wallets of different currencies are not supported.")
    if not row["reserved"]:
        # The only check left is the balance, made under the row lock by the debit itself.
        raise InsufficientBalance
    return AcceptedTransfer(
        reference=reference,
        amount=amount,
        sender_wallet_id=row["sender_id"],
        recipient_wallet_id=row["recipient_id"],
        recipient_wallet_number=recipient_wallet_number,
        deliveries=int(row["deliveries"]),
    )


async def transfer_status(connection: asyncpg.Connection, reference: str) -> str | None:
    """The status of a transfer (`pending` or `success`), None for an unknown reference."""
    status: str | None = await connection.fetchval("SELECT status FROM transfers WHERE reference = $1", reference)
    return status


def _check_positive(amount: int, what: str) -> None:
    if amount <= 0:
        msg = f"{what} must be positive, got {amount}"
        raise ValueError(msg)


def new_transfer_reference() -> str:
    return f"trf_{uuid.uuid4().hex}"


def _new_settlement_reference() -> str:
    return f"stl_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class AcceptedTransfer:
    """A transfer whose funds were taken from the sender and now wait in `transfers_in_flight`."""

    reference: str
    amount: int
    sender_wallet_id: UUID
    recipient_wallet_id: UUID
    recipient_wallet_number: str
    deliveries: int = 0
    """Deliveries of its `transfer.sent` event to the sender's endpoints, created with it."""


@dataclass(frozen=True)
class SettledBatch:
    """One settlement journal: the transfers it settled and what each recipient received."""

    journal_id: int
    journal_reference: str
    references: list[str]
    credits: dict[UUID, int]
    lags_seconds: list[float]
    """Each settled transfer's time from acceptance to settlement (for the settlement-lag metric)."""

    @property
    def amount(self) -> int:
        return sum(self.credits.values())


_DEPOSIT_SUCCEEDED = (
    "SELECT w.user_id, 'deposit.succeeded', CAST(:reference AS text), "  # noqa: S608 - constant fragments only
    + transaction_item_sql(
        reference="CAST(:reference AS text)",
        kind="'deposit'",
        amount="CAST(:amount AS bigint)",
        status="'success'",
        counterparty="NULL",
        created_at="coalesce(d.created_at, now())",
    )
    + " FROM wallets w LEFT JOIN deposits d ON d.reference = :reference WHERE w.id = :wallet_id"
)
"""The credited wallet's event: written whatever else the transaction holds (the deposit's row, if any, only
gives its creation time), so a credit can never go unreported."""
_TRANSFERS_RECEIVED = (
    "SELECT r.user_id, 'transfer.received', t.reference, "  # noqa: S608 - constant fragments only
    + transaction_item_sql(
        reference="t.reference",
        kind="'transfer_in'",
        amount="t.amount",
        status="'success'",
        counterparty="s.number",
        created_at="t.created_at",
    )
    + " FROM transfers t JOIN wallets r ON r.id = t.recipient_wallet_id JOIN wallets s ON s.id = t.sender_wallet_id"
    " WHERE t.id = ANY(CAST(:ids AS uuid[]))"
)
"""The events of a settled batch, one per transfer, written by one statement."""


class LedgerService:
    """Every write to the ledger, in the transaction of the session it is given (its caller commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._system_accounts: dict[str, int] = {}

    async def _system_account(self, account: m.SystemAccount) -> int:
        if not self._system_accounts:
            rows = await self.session.execute(
                select(m.LedgerAccount.code, m.LedgerAccount.id).where(
                    m.LedgerAccount.code.in_([a.value for a in m.SystemAccount])
                )
            )
            self._system_accounts = dict(rows.tuples().all())
        try:
            return self._system_accounts[account.value]
        except KeyError:
            msg = f"system ledger account {account.value!r} is missing (migration 0001 seeds it)"
            raise RuntimeError(msg) from None

    # -- deposits and refunds ---------------------------------------------------------------------------

    async def _new_journal(self, kind: m.JournalKind, reference: str) -> int | None:
        """A journal of `kind` for `reference`, or None when one exists: UNIQUE(kind, reference) makes each
        deposit credit and each refund happen once."""
        journal_id: int | None = await self.session.scalar(
            pg_insert(m.LedgerJournal)
            .values(kind=kind.value, reference=reference)
            .on_conflict_do_nothing(index_elements=["kind", "reference"])
            .returning(m.LedgerJournal.id)
        )
        return journal_id

    async def _post(self, kind: m.JournalKind, reference: str, legs: list[tuple[int, int]]) -> int | None:
        """Write a journal of `kind` for `reference` with its entries `(account id, signed amount)`, or nothing
        and None when that journal exists (UNIQUE(kind, reference): once per deposit, refund or withdrawal).
        Wallet balances are the caller's part, under the wallet's row lock."""
        journal_id = await self._new_journal(kind, reference)
        if journal_id is None:
            return None
        await self.session.execute(
            insert(m.LedgerEntry),
            [{"journal_id": journal_id, "account_id": account, "amount": amount} for account, amount in legs],
        )
        return journal_id

    async def _debit_wallet(self, wallet_id: UUID, amount: int) -> int | None:
        """Take `amount` from the wallet if it holds that much: its ledger account, or None (nothing changed).

        The `WHERE` is the balance check, made under the row lock the UPDATE takes: a stale read cannot pass.

        Raises:
            WalletNotFound: no wallet has this id.
        """
        account_id: int | None = await self.session.scalar(
            update(m.Wallet)
            .where(m.Wallet.id == wallet_id, m.Wallet.balance >= amount)
            .values(balance=m.Wallet.balance - amount, updated_at=datetime.now(UTC))
            .returning(m.Wallet.ledger_account_id)
            .execution_options(synchronize_session=False)
        )
        if (
            account_id is None
            and await self.session.scalar(select(m.Wallet.id).where(m.Wallet.id == wallet_id)) is None
        ):
            raise WalletNotFound
        return account_id

    async def _credit_wallet(
        self, wallet_id: UUID, amount: int, kind: m.JournalKind, reference: str, source: m.SystemAccount
    ) -> bool:
        """Credit a wallet from a system account with a journal of `kind`, once per `reference`.

        Locks the wallet row first, then writes the journal; when it exists already nothing changes (False).

        Raises:
            WalletNotFound: no wallet has this id.
        """
        account_id = await self.session.scalar(
            for_no_key_update(select(m.Wallet.ledger_account_id).where(m.Wallet.id == wallet_id))
        )
        if account_id is None:
            raise WalletNotFound
        journal_id = await self._post(
            kind, reference, [(await self._system_account(source), -amount), (account_id, amount)]
        )
        if journal_id is None:
            return False
        await self.session.execute(
            update(m.Wallet)
            .where(m.Wallet.id == wallet_id)
            .values(balance=m.Wallet.balance + amount, updated_at=datetime.now(UTC))
            .execution_options(synchronize_session=False)
        )
        return True

    async def debit_refund(self, *, wallet_id: UUID, amount: int, refund_reference: str, actor: str) -> int | None:
        """Take a refunded deposit's money back out of a wallet (wallet -> `paystack`), once per refund.

        A wallet that no longer holds `amount` is left alone. The caller records the refund with the journal
        in the same transaction.

        Returns:
            The `refund` journal's id, or None when the wallet holds less than `amount` (nothing moved).

        Raises:
            WalletNotFound: no wallet has this id.
            ValueError: the amount is not positive, or this refund reference has a journal already.
        """
        _check_positive(amount, "a refund debit")
        account_id = await self._debit_wallet(wallet_id, amount)
        if account_id is None:
            return None
        paystack = await self._system_account(m.SystemAccount.PAYSTACK)
        journal_id = await self._post(
            m.JournalKind.REFUND, refund_reference, [(account_id, -amount), (paystack, amount)]
        )
        if journal_id is None:
            msg = f"refund {refund_reference} has a journal already"
            raise ValueError(msg)
        await audit.record(
            self.session, actor=actor, action="deposit.refunded", subject=refund_reference, amount=amount
        )
        return journal_id

    async def credit_deposit(self, *, wallet_id: UUID, amount: int, reference: str, actor: str) -> bool:
        """Credit a wallet from `paystack`, exactly once per deposit reference.

        The caller commits the credit with its own state change (the deposit becoming `success`). `actor` is
        who reported the payment, for the audit log.

        Returns:
            True when this call credited the wallet, False when the reference was credited before.

        Raises:
            WalletNotFound: no wallet has this id.
            ValueError: the amount is not positive.
        """
        _check_positive(amount, "a deposit credit")
        credited = await self._credit_wallet(
            wallet_id, amount, m.JournalKind.DEPOSIT, reference, m.SystemAccount.PAYSTACK
        )
        if credited:
            await audit.record(self.session, actor=actor, action="deposit.credited", subject=reference, amount=amount)
            await record_selected(
                self.session, _DEPOSIT_SUCCEEDED, {"reference": reference, "amount": amount, "wallet_id": wallet_id}
            )
        return credited

    # -- withdrawals ------------------------------------------------------------------------------------

    async def reserve_withdrawal(self, *, wallet_id: UUID, amount: int, reference: str, actor: str) -> None:
        """Reserve a withdrawal's money: wallet -> `withdrawals_in_flight`, in the transaction that records it.

        Raises:
            InsufficientBalance: the wallet holds less than `amount` (nothing moved).
            WalletNotFound: no wallet has this id.
            ValueError: the amount is not positive, or this withdrawal was reserved before.
        """
        _check_positive(amount, "a withdrawal")
        account_id = await self._debit_wallet(wallet_id, amount)
        if account_id is None:
            raise InsufficientBalance
        in_flight = await self._system_account(m.SystemAccount.WITHDRAWALS_IN_FLIGHT)
        if await self._post(m.JournalKind.WITHDRAWAL, reference, [(account_id, -amount), (in_flight, amount)]) is None:
            msg = f"withdrawal {reference} was reserved already"
            raise ValueError(msg)
        await audit.record(self.session, actor=actor, action="withdrawal.reserved", subject=reference, amount=amount)

    async def complete_withdrawal(self, *, amount: int, reference: str, actor: str) -> bool:
        """The withdrawal's money left: `withdrawals_in_flight` -> `paystack`, once per withdrawal.

        Returns:
            False when this withdrawal was completed before (nothing moved).
        """
        _check_positive(amount, "a withdrawal")
        in_flight = await self._system_account(m.SystemAccount.WITHDRAWALS_IN_FLIGHT)
        paystack = await self._system_account(m.SystemAccount.PAYSTACK)
        if await self._post(m.JournalKind.PAYOUT, reference, [(in_flight, -amount), (paystack, amount)]) is None:
            return False
        await audit.record(self.session, actor=actor, action="withdrawal.paid", subject=reference, amount=amount)
        return True

    async def return_withdrawal(
        self, *, wallet_id: UUID, amount: int, reference: str, after_payout: bool, actor: str
    ) -> bool:
        """Give a failed or reversed withdrawal's money back to its wallet, once per withdrawal: from
        `withdrawals_in_flight`, or from `paystack` when it had been paid out (`after_payout`).

        Returns:
            False when this withdrawal's money was returned before (nothing moved).

        Raises:
            WalletNotFound: no wallet has this id.
        """
        _check_positive(amount, "a withdrawal")
        source = m.SystemAccount.PAYSTACK if after_payout else m.SystemAccount.WITHDRAWALS_IN_FLIGHT
        returned = await self._credit_wallet(wallet_id, amount, m.JournalKind.PAYOUT_RETURN, reference, source)
        if returned:
            await audit.record(
                self.session,
                actor=actor,
                action="withdrawal.returned",
                subject=reference,
                amount=amount,
                details={"from": source.value},
            )
        return returned

    # -- transfers: acceptance --------------------------------------------------------------------------

    # -- transfers: settlement --------------------------------------------------------------------------

    async def settle_batch(self, *, batch_size: int) -> SettledBatch | None:
        """Settle up to `batch_size` pending transfers in one journal; None when nothing is pending.

        Claims the oldest pending transfers with `FOR UPDATE SKIP LOCKED` (concurrent settlers take disjoint
        batches), adds them up per recipient, writes one settlement journal (one in-flight debit, one credit
        per recipient), marks the transfers settled with one UPDATE, and last locks each recipient once in id
        order and updates its balance once, so wallet rows stay locked for two statements and the commit.
        A transfer another run settled is no longer pending, so running this twice moves nothing twice.
        """
        claimed = (
            await self.session.execute(
                select(
                    m.Transfer.id,
                    m.Transfer.reference,
                    m.Transfer.recipient_wallet_id,
                    m.Transfer.amount,
                    m.Transfer.created_at,
                )
                .where(m.Transfer.status == m.TransferStatus.PENDING.value)
                .order_by(m.Transfer.created_at)
                .limit(batch_size)
                .with_for_update(skip_locked=True)
            )
        ).all()
        if not claimed:
            return None
        credits: dict[UUID, int] = defaultdict(int)
        for row in claimed:
            credits[row.recipient_wallet_id] += row.amount
        # The recipients' ledger accounts never change: read without a lock. Their wallet rows are locked last,
        # just before their UPDATE and the commit, so an acceptance debiting one of them waits the least.
        recipients = (
            await self.session.execute(
                text("SELECT id, ledger_account_id FROM wallets WHERE id = ANY(CAST(:ids AS uuid[]))"),
                {"ids": list(credits)},
            )
        ).all()
        if len(recipients) != len(credits):
            msg = "a pending transfer names a recipient wallet that does not exist"
            raise RuntimeError(msg)
        journal_reference = _new_settlement_reference()
        journal_id = await self.session.scalar(
            insert(m.LedgerJournal)
            .values(kind=m.JournalKind.SETTLEMENT.value, reference=journal_reference)
            .returning(m.LedgerJournal.id)
        )
        in_flight = await self._system_account(m.SystemAccount.TRANSFERS_IN_FLIGHT)
        total = sum(credits.values())
        # Arrays, not one bind parameter per row: a batch of 500 costs the worker one statement's Python work.
        await self.session.execute(
            text(
                "INSERT INTO ledger_entries (journal_id, account_id, amount) "
                "SELECT :journal_id, e.account_id, e.amount "
                "FROM unnest(CAST(:accounts AS bigint[]), CAST(:amounts AS bigint[])) AS e(account_id, amount)"
            ),
            {
                "journal_id": journal_id,
                "accounts": [in_flight, *(r.ledger_account_id for r in recipients)],
                "amounts": [-total, *(credits[r.id] for r in recipients)],
            },
        )
        settled_at = datetime.now(UTC)
        await self.session.execute(
            text(
                "UPDATE transfers SET status = :success, settled_at = :settled_at, "
                "settlement_journal_id = :journal_id, updated_at = now() WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {
                "success": m.TransferStatus.SUCCESS.value,
                "settled_at": settled_at,
                "journal_id": journal_id,
                "ids": [row.id for row in claimed],
            },
        )
        await record_selected(self.session, _TRANSFERS_RECEIVED, {"ids": [row.id for row in claimed]})
        await audit.record(
            self.session,
            actor=audit.SETTLEMENT_ACTOR,
            action="transfers.settled",
            subject=journal_reference,
            amount=total,
            details={"transfers": len(claimed), "recipients": len(credits)},
        )
        # Locked in id order (one statement), so concurrent settlers never deadlock; then credited, then commit.
        ids = sorted(credits)
        await self.session.execute(
            text("SELECT id FROM wallets WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR NO KEY UPDATE"),
            {"ids": ids},
        )
        await self.session.execute(
            text(
                "UPDATE wallets AS w SET balance = w.balance + c.credit, updated_at = now() "
                "FROM unnest(CAST(:ids AS uuid[]), CAST(:credits AS bigint[])) AS c(id, credit) "
                "WHERE w.id = c.id"
            ),
            {"ids": ids, "credits": [credits[wallet_id] for wallet_id in ids]},
        )
        return SettledBatch(
            journal_id=journal_id,  # type: ignore[arg-type]
            journal_reference=journal_reference,
            references=[row.reference for row in claimed],
            credits=dict(credits),
            lags_seconds=[max((settled_at - row.created_at).total_seconds(), 0.0) for row in claimed],
        )

    # -- reading ----------------------------------------------------------------------------------------

    async def count_stale_transfers(self, older_than: timedelta) -> int:
        """Transfers still pending after `older_than`: their settlement message was probably lost."""
        cutoff = datetime.now(UTC) - older_than
        count = await self.session.scalar(
            select(func.count())
            .select_from(m.Transfer)
            .where(m.Transfer.status == m.TransferStatus.PENDING.value, m.Transfer.created_at < cutoff)
        )
        return int(count or 0)
