"""The outbox: each event is written in the transaction of the money movement it reports, with one delivery
per subscribed endpoint, so there is never an event without its movement nor a movement without its event.

The ledger writes them (`app.domain.wallets.ledger`: one function moves money and records what it reports):
`record_selected` writes the events a SELECT builds from the rows that moved, and their deliveries, in ONE
statement (a settlement batch of 500 transfers costs one statement, not 500); a transfer's acceptance embeds
the same SQL (`record_statement`) in its own single statement. The deliveries created are noted on the session
(`note_deliveries`) and the unit of work requests a delivery run after the commit (`app.lib.uow`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

DELIVERIES_CREATED: Final = "webhook_deliveries_created"
"""`session.info` key: deliveries written in the session's current transaction."""

NEW_EVENT_ID: Final = "'evt_' || replace(gen_random_uuid()::text, '-', '')"
"""A fresh public event id, in SQL."""

FAN_OUT: Final = """
INSERT INTO webhook_deliveries (id, endpoint_id, event_id, status, attempts, next_attempt_at, created_at, updated_at)
SELECT gen_random_uuid(), p.id, ev.id, 'pending', 0, ev.created_at, ev.created_at, ev.created_at
FROM {events} AS ev JOIN webhook_endpoints AS p ON p.user_id = ev.user_id
    AND p.deleted_at IS NULL AND p.disabled_at IS NULL AND (ev.type = ANY(p.events) OR '*' = ANY(p.events))
RETURNING 1
"""
"""One delivery per live endpoint of the event's user subscribed to its type; `{events}` names a CTE returning
`id, user_id, type, created_at` of the events just written."""


def iso_sql(column: str) -> str:
    """A timestamp as the API writes it (`2026-01-01T12:00:00.000000Z`), in SQL."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def transaction_item_sql(
    *, reference: str, kind: str, amount: str, status: str, counterparty: str, created_at: str
) -> str:
    """A `/wallet/transactions` item in SQL, from SQL expressions: the data of deposit and transfer events."""
    return (
        f"jsonb_build_object('reference', {reference}, 'type', {kind}, 'amount', {amount}, 'status', {status}, "
        f"'counterparty_wallet_number', {counterparty}, 'created_at', {iso_sql(created_at)})"
    )


def withdrawal_item_sql(alias: str) -> str:
    """A `/wallet/withdrawals` item in SQL, from the withdrawal row `alias` as it now is."""
    x = alias
    return (
        f"jsonb_build_object('reference', {x}.reference, 'status', {x}.status, 'amount', {x}.amount, "
        f"'currency', {x}.currency, 'bank_code', {x}.bank_code, 'bank_name', {x}.bank_name, "
        f"'account_number_last4', right({x}.account_number, 4), 'account_name', {x}.account_name, "
        f"'failure_reason', {x}.failure_reason, 'created_at', {iso_sql(f'{x}.created_at')}, "
        f"'completed_at', {iso_sql(f'{x}.completed_at')})"
    )


def record_statement(rows_sql: str) -> str:
    """One statement writing the events `rows_sql` selects (`user_id, type, subject, data`) and their
    deliveries, answering how many deliveries it created. For callers that build each event's data in SQL from
    the rows that moved (a settlement batch: every transfer of it at once)."""
    return f"""
WITH ev AS (
    INSERT INTO wallet_events (id, user_id, public_id, type, subject, data, created_at, updated_at)
    SELECT gen_random_uuid(), e.user_id, {NEW_EVENT_ID}, e.type, e.subject, e.data, now(), now()
    FROM ({rows_sql}) AS e(user_id, type, subject, data)
    RETURNING id, user_id, type, created_at
), deliveries AS ({FAN_OUT.format(events="ev")})
SELECT count(*) FROM deliveries
"""  # noqa: S608 - constant fragments only


async def record_selected(session: AsyncSession, rows_sql: str, params: dict[str, Any]) -> int:
    """Run `record_statement(rows_sql)` in the session's transaction; how many deliveries it created."""
    created = int(await session.scalar(text(record_statement(rows_sql)), params) or 0)
    note_deliveries(session, created)
    return created


def note_deliveries(session: AsyncSession, created: int) -> None:
    if created:
        session.info[DELIVERIES_CREATED] = session.info.get(DELIVERIES_CREATED, 0) + created
