"""The ledger's invariants, checked on one consistent snapshot (`wallet ledger check`, beat, the tests).

Each check is one SQL query; each violation is one line naming the wallet, journal or reference, so an
operator can go straight to the row. The checks run in a REPEATABLE READ, READ ONLY transaction: money in
the middle of moving (a transfer accepted while the check runs) is either wholly in the snapshot or wholly
out of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import text

from app.db import models as m

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


@dataclass
class LedgerReport:
    """The outcome of a check: every violation, and a few totals for the summary line."""

    violations: list[str] = field(default_factory=list)
    journals: int = 0
    entries: int = 0
    wallets: int = 0
    wallet_total: int = 0
    in_flight: int = 0
    pending_transfers: int = 0
    withdrawals_in_flight: int = 0
    unfinished_withdrawals: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        if not self.ok:
            return f"ledger check FAILED: {len(self.violations)} violation(s)"
        return (
            f"ledger OK: {self.journals} journals, {self.entries} entries, {self.wallets} wallets holding "
            f"{self.wallet_total}, {self.pending_transfers} pending transfers ({self.in_flight} in flight), "
            f"{self.unfinished_withdrawals} unfinished withdrawals ({self.withdrawals_in_flight} in flight)"
        )


_IN_FLIGHT = m.SystemAccount.TRANSFERS_IN_FLIGHT.value
_SUCCESS = m.DepositStatus.SUCCESS.value
_CREDITED = [m.DepositStatus.SUCCESS.value, m.DepositStatus.REFUNDED.value]
"""Deposit states whose wallet was credited (a refunded deposit was credited, then refunded)."""
_PENDING = m.TransferStatus.PENDING.value
_WALLET_LEG = (
    "(SELECT sum(e.amount) FROM ledger_entries e JOIN wallets w ON w.ledger_account_id = e.account_id "
    " WHERE e.journal_id = {journal}.id AND w.id = {wallet})"
)
"""What journal `{journal}` moved on the wallet `{wallet}` (SQL expressions); NULL when it has no entry there."""
_SYSTEM_LEG = (
    "(SELECT coalesce(sum(e.amount), 0) FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id "
    " WHERE e.journal_id = {journal}.id AND a.code = '{account}')"
)
"""What journal `{journal}` moved on the system account `{account}` (0 when nothing, or no journal)."""
_UNFINISHED = [m.WithdrawalStatus.PENDING.value, m.WithdrawalStatus.PROCESSING.value]


async def _rows(session: AsyncSession, sql: str, **params: object) -> list[tuple[object, ...]]:
    result = await session.execute(text(sql), params)
    return [tuple(row) for row in result.all()]


async def _entries_sum_to_zero(session: AsyncSession, report: LedgerReport) -> None:
    journals, entries, total = (
        await _rows(
            session,
            "SELECT (SELECT count(*) FROM ledger_journals), count(*), coalesce(sum(amount), 0) FROM ledger_entries",
        )
    )[0]
    report.journals, report.entries = int(journals), int(entries)  # type: ignore[call-overload]
    if total != 0:
        report.violations.append(f"entries do not sum to zero: all entries together sum to {total}")
    for kind, reference, journal_sum, count in await _rows(
        session,
        "SELECT j.kind, j.reference, coalesce(sum(e.amount), 0), count(e.id) FROM ledger_journals j "
        "LEFT JOIN ledger_entries e ON e.journal_id = j.id GROUP BY j.id "
        "HAVING coalesce(sum(e.amount), 0) <> 0 OR count(e.id) = 0 ORDER BY j.id",
    ):
        if count == 0:
            report.violations.append(f"journal {kind}:{reference} has no entries")
        else:
            report.violations.append(f"journal {kind}:{reference} is unbalanced: its entries sum to {journal_sum}")


async def _balances_match_entries(session: AsyncSession, report: LedgerReport) -> None:
    wallet_rows = await _rows(
        session,
        "SELECT w.number, w.balance, coalesce(s.total, 0) FROM wallets w "
        "LEFT JOIN (SELECT account_id, sum(amount) AS total FROM ledger_entries GROUP BY account_id) s "
        "ON s.account_id = w.ledger_account_id ORDER BY w.number",
    )
    report.wallets = len(wallet_rows)
    for number, cached, summed in wallet_rows:
        report.wallet_total += int(cached)  # type: ignore[call-overload]
        if cached != summed:
            report.violations.append(
                f"wallet {number}: cached balance {cached} differs from the sum of its entries {summed}"
            )
        if int(cached) < 0 or int(summed) < 0:  # type: ignore[call-overload]
            report.violations.append(f"wallet {number} is negative: balance {cached}, entries sum to {summed}")


async def _in_flight_matches_pending(session: AsyncSession, report: LedgerReport) -> None:
    in_flight, pending, pending_count = (
        await _rows(
            session,
            "SELECT (SELECT coalesce(sum(e.amount), 0) FROM ledger_entries e "
            "        JOIN ledger_accounts a ON a.id = e.account_id WHERE a.code = :in_flight), "
            "       coalesce(sum(t.amount), 0), count(t.id) "
            "FROM transfers t WHERE t.status = :pending",
            in_flight=_IN_FLIGHT,
            pending=_PENDING,
        )
    )[0]
    report.in_flight, report.pending_transfers = int(in_flight), int(pending_count)  # type: ignore[call-overload]
    if in_flight != pending:
        report.violations.append(
            f"account {_IN_FLIGHT} holds {in_flight} but pending transfers add up to {pending} "
            f"({pending_count} pending)"
        )


async def _deposits_credited_once(session: AsyncSession, report: LedgerReport) -> None:
    wallet_credit = _WALLET_LEG.format(journal="j", wallet="d.wallet_id")
    for reference, status, amount, credited, credit in await _rows(
        session,
        f"SELECT coalesce(d.reference, j.reference), d.status, d.amount, j.id IS NOT NULL, {wallet_credit} "  # noqa: S608 - constant fragments only
        "FROM (SELECT * FROM deposits WHERE status = ANY(CAST(:credited AS text[]))) d "
        "FULL JOIN (SELECT * FROM ledger_journals WHERE kind = :deposit) j ON j.reference = d.reference "
        f"WHERE d.id IS NULL OR j.id IS NULL OR d.amount IS DISTINCT FROM {wallet_credit} ORDER BY 1",
        credited=_CREDITED,
        deposit=m.JournalKind.DEPOSIT.value,
    ):
        if status is None:
            report.violations.append(f"deposit {reference}: credit journal without a successful deposit")
        elif not credited:
            report.violations.append(f"deposit {reference}: successful deposit of {amount} was never credited")
        else:
            report.violations.append(f"deposit {reference}: deposit of {amount} credited its wallet with {credit}")


async def _transfers_match_journals(session: AsyncSession, report: LedgerReport) -> None:
    for reference, has_transfer, has_journal in await _rows(
        session,
        "SELECT coalesce(t.reference, j.reference), t.id IS NOT NULL, j.id IS NOT NULL "
        "FROM transfers t FULL JOIN (SELECT * FROM ledger_journals WHERE kind = :transfer) j "
        "ON j.reference = t.reference WHERE t.id IS NULL OR j.id IS NULL ORDER BY 1",
        transfer=m.JournalKind.TRANSFER.value,
    ):
        if not has_journal:
            report.violations.append(f"transfer {reference}: no acceptance journal")
        elif not has_transfer:
            report.violations.append(f"transfer {reference}: acceptance journal without a transfer")

    for (reference,) in await _rows(
        session,
        "SELECT t.reference FROM transfers t LEFT JOIN ledger_journals j ON j.id = t.settlement_journal_id "
        "WHERE (t.status = :pending) <> (t.settlement_journal_id IS NULL) "
        "   OR (t.settlement_journal_id IS NOT NULL AND j.kind IS DISTINCT FROM :settlement) "
        "ORDER BY 1",
        pending=_PENDING,
        settlement=m.JournalKind.SETTLEMENT.value,
    ):
        report.violations.append(f"transfer {reference}: status and settlement journal disagree")

    sender_debit = (
        "(SELECT coalesce(sum(e.amount), 0) FROM ledger_entries e "
        " WHERE e.journal_id = j.id AND e.account_id = s.ledger_account_id)"
    )
    for reference, amount, debited in await _rows(
        session,
        f"SELECT t.reference, t.amount, {sender_debit} "  # noqa: S608 - constant fragments only
        "FROM transfers t JOIN wallets s ON s.id = t.sender_wallet_id "
        "JOIN ledger_journals j ON j.kind = :transfer AND j.reference = t.reference "
        f"WHERE {sender_debit} <> -t.amount ORDER BY 1",
        transfer=m.JournalKind.TRANSFER.value,
    ):
        report.violations.append(f"transfer {reference}: took {-int(debited)} from its sender instead of {amount}")  # type: ignore[call-overload]

    for journal, number, expected, credited in await _rows(
        session,
        "WITH expected AS ("
        "  SELECT t.settlement_journal_id AS jid, w.ledger_account_id AS aid, sum(t.amount) AS amount "
        "  FROM transfers t JOIN wallets w ON w.id = t.recipient_wallet_id "
        "  WHERE t.settlement_journal_id IS NOT NULL GROUP BY 1, 2), "
        "actual AS ("
        "  SELECT e.journal_id AS jid, e.account_id AS aid, sum(e.amount) AS amount "
        "  FROM ledger_entries e JOIN ledger_journals j ON j.id = e.journal_id "
        "  JOIN wallets w ON w.ledger_account_id = e.account_id "
        "  WHERE j.kind = :settlement GROUP BY 1, 2) "
        "SELECT j.reference, w.number, coalesce(x.amount, 0), coalesce(a.amount, 0) "
        "FROM expected x FULL JOIN actual a ON a.jid = x.jid AND a.aid = x.aid "
        "JOIN ledger_journals j ON j.id = coalesce(x.jid, a.jid) "
        "JOIN wallets w ON w.ledger_account_id = coalesce(x.aid, a.aid) "
        "WHERE x.amount IS DISTINCT FROM a.amount ORDER BY 1, 2",
        settlement=m.JournalKind.SETTLEMENT.value,
    ):
        report.violations.append(
            f"journal {m.JournalKind.SETTLEMENT.value}:{journal} credited wallet {number} with {credited} "
            f"but its transfers to that wallet add up to {expected}"
        )


async def _journals_are_known_and_caused(session: AsyncSession, report: LedgerReport) -> None:
    """Every journal is of a kind the service writes, and the record that caused it points back at it.

    Deposit and transfer journals are matched with their records above; a settlement journal must be named by
    at least one settled transfer. A balanced journal of another kind (an `adjustment` typed by hand, a future
    bug) would otherwise pass every balance check.
    """
    known = [kind.value for kind in m.JournalKind]
    for kind, reference in await _rows(
        session,
        "SELECT j.kind, j.reference FROM ledger_journals j "
        "WHERE NOT (j.kind = ANY(CAST(:known AS text[]))) ORDER BY j.id",
        known=known,
    ):
        report.violations.append(f"journal {kind}:{reference} is of a kind the service never writes")
    for (reference,) in await _rows(
        session,
        "SELECT j.reference FROM ledger_journals j WHERE j.kind = :settlement "
        "AND NOT EXISTS (SELECT FROM transfers t WHERE t.settlement_journal_id = j.id) ORDER BY j.id",
        settlement=m.JournalKind.SETTLEMENT.value,
    ):
        report.violations.append(f"journal {m.JournalKind.SETTLEMENT.value}:{reference} settles no transfer")


async def _system_accounts_match_records(session: AsyncSession, report: LedgerReport) -> None:
    """Each system account holds exactly what the records that move it say (in-flight: see above).

    `paystack` is where deposits come from and where refunds and payouts go: minus every credited deposit, plus
    every refund taken back and every withdrawal paid out (one reversed after its payout came back from it).
    Money cannot enter or leave a wallet through it any other way without this failing.
    """
    held, expected, deposits = (
        await _rows(
            session,
            "SELECT (SELECT coalesce(sum(e.amount), 0) FROM ledger_entries e "
            "        JOIN ledger_accounts a ON a.id = e.account_id WHERE a.code = :paystack), "
            "       -coalesce(sum(d.amount), 0) + (SELECT coalesce(sum(r.amount), 0) FROM deposit_refunds r "
            "                                       WHERE r.outcome = :debited) "
            "       + (SELECT coalesce(sum(x.amount), 0) FROM withdrawals x WHERE x.status = :paid_out), "
            "       count(d.id) "
            "FROM deposits d WHERE d.status = ANY(CAST(:credited AS text[]))",
            paystack=m.SystemAccount.PAYSTACK.value,
            credited=_CREDITED,
            debited=m.RefundOutcome.DEBITED.value,
            paid_out=m.WithdrawalStatus.SUCCESS.value,
        )
    )[0]
    if held != expected:
        report.violations.append(
            f"account {m.SystemAccount.PAYSTACK.value} holds {held} but its records say {expected} "
            f"(minus {deposits} credited deposits, plus their refunds and the withdrawals paid out)"
        )


async def _refunds_match_journals(session: AsyncSession, report: LedgerReport) -> None:
    """Every processed refund did exactly one thing: one `refund` journal taking its amount from the deposit's
    wallet, or one review item saying why not; refunds never exceed the deposit, and a `refunded` deposit was
    refunded in full."""
    wallet_debit = _WALLET_LEG.format(journal="j", wallet="d.wallet_id")
    for reference, outcome, amount, journal, debit in await _rows(
        session,
        f"SELECT coalesce(r.refund_reference, j.reference), r.outcome, r.amount, j.id, {wallet_debit} "  # noqa: S608 - constant fragments only
        "FROM deposit_refunds r JOIN deposits d ON d.id = r.deposit_id "
        "FULL JOIN (SELECT * FROM ledger_journals WHERE kind = :refund) j ON j.id = r.journal_id "
        f"WHERE r.id IS NULL OR (r.outcome = :debited AND (j.id IS NULL OR j.reference <> r.refund_reference "
        f"    OR {wallet_debit} IS DISTINCT FROM -r.amount)) ORDER BY 1",
        refund=m.JournalKind.REFUND.value,
        debited=m.RefundOutcome.DEBITED.value,
    ):
        if outcome is None:
            report.violations.append(f"refund {reference}: refund journal without a recorded refund")
        elif journal is None:
            report.violations.append(f"refund {reference}: recorded as taken back but has no refund journal")
        else:
            report.violations.append(f"refund {reference}: took {debit} from the wallet instead of -{amount}")
    for (reference,) in await _rows(
        session,
        "SELECT r.refund_reference FROM deposit_refunds r JOIN deposits d ON d.id = r.deposit_id "
        "WHERE r.outcome = :uncovered AND NOT EXISTS (SELECT FROM review_items i WHERE i.kind = :review "
        "AND i.reference = d.reference AND i.source = r.refund_reference) ORDER BY 1",
        uncovered=m.RefundOutcome.UNCOVERED.value,
        review=m.ReviewKind.REFUND_UNCOVERED.value,
    ):
        report.violations.append(f"refund {reference}: not taken back and not flagged for review")
    for reference, status, amount, refunded in await _rows(
        session,
        "SELECT d.reference, d.status, d.amount, coalesce(sum(r.amount), 0) FROM deposits d "
        "LEFT JOIN deposit_refunds r ON r.deposit_id = d.id AND r.outcome = :debited "
        "GROUP BY d.id HAVING coalesce(sum(r.amount), 0) > d.amount "
        "OR (d.status = :refunded) <> (coalesce(sum(r.amount), 0) = d.amount AND d.status IN (:refunded, :success)) "
        "ORDER BY 1",
        debited=m.RefundOutcome.DEBITED.value,
        refunded=m.DepositStatus.REFUNDED.value,
        success=_SUCCESS,
    ):
        report.violations.append(f"deposit {reference} ({status}, {amount}): {refunded} refunded")


async def _withdrawals_match_journals(session: AsyncSession, report: LedgerReport) -> None:
    """Every withdrawal has its reservation (its amount from its wallet); `withdrawals_in_flight` holds exactly
    the pending and processing ones; a success has exactly one payout (in flight -> `paystack`), a failure or
    reversal exactly one return of its amount to its wallet (from `paystack` when it had been paid out); no
    withdrawal journal lacks its withdrawal."""
    in_flight_code = m.SystemAccount.WITHDRAWALS_IN_FLIGHT.value
    held, expected, unfinished = (
        await _rows(
            session,
            "SELECT (SELECT coalesce(sum(e.amount), 0) FROM ledger_entries e "
            "        JOIN ledger_accounts a ON a.id = e.account_id WHERE a.code = :in_flight), "
            "       coalesce(sum(x.amount), 0), count(x.id) "
            "FROM withdrawals x WHERE x.status = ANY(CAST(:unfinished AS text[]))",
            in_flight=in_flight_code,
            unfinished=_UNFINISHED,
        )
    )[0]
    report.withdrawals_in_flight, report.unfinished_withdrawals = int(held), int(unfinished)  # type: ignore[call-overload]
    if held != expected:
        report.violations.append(
            f"account {in_flight_code} holds {held} but pending and processing withdrawals add up to {expected}"
        )
    paystack = m.SystemAccount.PAYSTACK.value
    rows = await _rows(
        session,
        "SELECT x.reference, x.status, x.amount, r.id IS NOT NULL, p.id IS NOT NULL, b.id IS NOT NULL, "  # noqa: S608 - constant fragments only
        f"{_WALLET_LEG.format(journal='r', wallet='x.wallet_id')}, "
        f"{_SYSTEM_LEG.format(journal='p', account=in_flight_code)}, "
        f"{_SYSTEM_LEG.format(journal='p', account=paystack)}, "
        f"{_WALLET_LEG.format(journal='b', wallet='x.wallet_id')}, "
        f"{_SYSTEM_LEG.format(journal='b', account=in_flight_code)}, "
        f"{_SYSTEM_LEG.format(journal='b', account=paystack)} "
        "FROM withdrawals x "
        "LEFT JOIN ledger_journals r ON r.kind = :reserve AND r.reference = x.reference "
        "LEFT JOIN ledger_journals p ON p.kind = :payout AND p.reference = x.reference "
        "LEFT JOIN ledger_journals b ON b.kind = :back AND b.reference = x.reference ORDER BY 1",
        reserve=m.JournalKind.WITHDRAWAL.value,
        payout=m.JournalKind.PAYOUT.value,
        back=m.JournalKind.PAYOUT_RETURN.value,
    )
    for row in rows:
        report.violations.extend(_withdrawal_violations(*row))
    for kind, reference in await _rows(
        session,
        "SELECT j.kind, j.reference FROM ledger_journals j WHERE j.kind = ANY(CAST(:kinds AS text[])) "
        "AND NOT EXISTS (SELECT FROM withdrawals x WHERE x.reference = j.reference) ORDER BY 1, 2",
        kinds=[m.JournalKind.WITHDRAWAL.value, m.JournalKind.PAYOUT.value, m.JournalKind.PAYOUT_RETURN.value],
    ):
        report.violations.append(f"journal {kind}:{reference} belongs to no withdrawal")


def _withdrawal_violations(  # noqa: PLR0917 - one row of the query above
    reference: object,
    status: object,
    amount: object,
    reserved: object,
    paid: object,
    returned: object,
    reserved_from_wallet: object,
    paid_from_in_flight: object,
    paid_to_paystack: object,
    returned_to_wallet: object,
    returned_from_in_flight: object,
    returned_from_paystack: object,
) -> list[str]:
    found: list[str] = []
    name = f"withdrawal {reference} ({status}, {amount})"
    if not reserved:
        found.append(f"{name}: no reservation journal")
    elif reserved_from_wallet != -amount:  # type: ignore[operator]
        found.append(f"{name}: its reservation took {reserved_from_wallet} from its wallet")
    should_pay = status == m.WithdrawalStatus.SUCCESS or (status == m.WithdrawalStatus.REVERSED and paid)
    should_return = status in {m.WithdrawalStatus.FAILED, m.WithdrawalStatus.REVERSED}
    if bool(paid) != should_pay:
        found.append(f"{name}: {'a payout journal it should not have' if paid else 'no payout journal'}")
    elif paid and (paid_from_in_flight != -amount or paid_to_paystack != amount):  # type: ignore[operator]
        found.append(
            f"{name}: its payout moved {paid_from_in_flight} from in flight and {paid_to_paystack} to paystack"
        )
    if bool(returned) != should_return:
        found.append(f"{name}: {'a return journal it should not have' if returned else 'no return journal'}")
    elif returned:
        source = returned_from_paystack if paid else returned_from_in_flight
        if returned_to_wallet != amount or source != -amount:  # type: ignore[operator]
            found.append(
                f"{name}: its return gave {returned_to_wallet} to its wallet and took {source} from its source"
            )
    return found


async def _events_match_movements(session: AsyncSession, report: LedgerReport) -> None:
    """The outbox: every movement has exactly one event reporting it, and no event lacks its movement."""
    k, e = m.JournalKind, m.EventType
    for event_type, subject, written, moved in await _rows(
        session,
        "WITH expected AS ("
        "  SELECT CASE j.kind WHEN :deposit THEN :deposit_event WHEN :transfer THEN :sent_event "
        "    WHEN :refund THEN :refund_event WHEN :payout THEN :paid_event ELSE :failed_event END AS type, "
        "    j.reference AS subject "
        "  FROM ledger_journals j WHERE j.kind = ANY(CAST(:kinds AS text[])) "
        "  UNION ALL SELECT :received_event, t.reference FROM transfers t WHERE t.settlement_journal_id IS NOT NULL"
        "), written AS (SELECT type, subject, count(*) AS n FROM wallet_events GROUP BY type, subject) "
        "SELECT coalesce(x.type, w.type), coalesce(x.subject, w.subject), coalesce(w.n, 0), x.type IS NOT NULL "
        "FROM expected x FULL JOIN written w ON w.type = x.type AND w.subject = x.subject "
        "WHERE x.type IS NULL OR w.n IS DISTINCT FROM 1 ORDER BY 1, 2",
        deposit=k.DEPOSIT.value,
        transfer=k.TRANSFER.value,
        refund=k.REFUND.value,
        payout=k.PAYOUT.value,
        kinds=[k.DEPOSIT.value, k.TRANSFER.value, k.REFUND.value, k.PAYOUT.value, k.PAYOUT_RETURN.value],
        deposit_event=e.DEPOSIT_SUCCEEDED.value,
        sent_event=e.TRANSFER_SENT.value,
        refund_event=e.DEPOSIT_REFUNDED.value,
        paid_event=e.WITHDRAWAL_SUCCEEDED.value,
        failed_event=e.WITHDRAWAL_FAILED.value,
        received_event=e.TRANSFER_RECEIVED.value,
    ):
        if not moved:
            report.violations.append(f"event {event_type} of {subject}: no movement of money behind it")
        else:
            report.violations.append(f"movement {subject}: {written} {event_type} events instead of one")


_CHECKS = (
    _entries_sum_to_zero,
    _balances_match_entries,
    _in_flight_matches_pending,
    _deposits_credited_once,
    _transfers_match_journals,
    _journals_are_known_and_caused,
    _system_accounts_match_records,
    _refunds_match_journals,
    _withdrawals_match_journals,
    _events_match_movements,
)


async def check_ledger(session: AsyncSession) -> LedgerReport:
    """Verify every ledger invariant on one snapshot.

    Give it a session with no pending work: its transaction is rolled back before (to start a fresh
    REPEATABLE READ, READ ONLY snapshot) and after.

    Checks: all entries sum to zero, globally and per journal (and no journal is empty); each wallet's
    cached balance equals the sum of its account's entries; no balance (cached or summed) is negative; the
    in-flight account holds exactly the pending transfers; every successful deposit has exactly one credit
    journal of its amount to its wallet, and no credit journal lacks a successful deposit; every transfer
    has its acceptance journal debiting its sender by its amount, and every settled transfer is credited by
    its settlement journal; every journal is of a known kind and referenced by what caused it; `paystack` holds
    what deposits, refunds and payouts say; every refund did one thing; and every withdrawal has its reservation
    and exactly the payout or return its status calls for, with `withdrawals_in_flight` holding the unfinished;
    and every movement has exactly one event in the outbox, every event its movement.
    """
    await session.rollback()
    await session.connection(execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True})
    report = LedgerReport()
    try:
        for check in _CHECKS:
            await check(session, report)
    finally:
        await session.rollback()
    return report
