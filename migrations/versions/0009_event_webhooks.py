"""event webhooks: `webhook_endpoints`, the `wallet_events` outbox, `webhook_deliveries`

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 09:30:00+00:00

"""
# Runs in its own transaction, like every migration here (see script.py.mako).

from __future__ import annotations

import advanced_alchemy.types.datetime
import advanced_alchemy.types.guid
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_EVENT_ID = "'evt_' || replace(gen_random_uuid()::text, '-', '')"
BACKFILL = f"""
INSERT INTO wallet_events (id, user_id, public_id, type, subject, data, created_at, updated_at)
SELECT gen_random_uuid(), moved.user_id, {_EVENT_ID}, moved.type, moved.subject,
    jsonb_build_object('reference', moved.subject, 'backfilled', true), moved.at, moved.at
FROM (
    SELECT w.user_id, 'deposit.succeeded' AS type, j.reference AS subject, j.created_at AS at
    FROM ledger_journals j JOIN deposits d ON d.reference = j.reference JOIN wallets w ON w.id = d.wallet_id
    WHERE j.kind = 'deposit'
    UNION ALL
    SELECT w.user_id, 'transfer.sent', t.reference, t.created_at
    FROM transfers t JOIN wallets w ON w.id = t.sender_wallet_id
    UNION ALL
    SELECT w.user_id, 'transfer.received', t.reference, t.settled_at
    FROM transfers t JOIN wallets w ON w.id = t.recipient_wallet_id WHERE t.settlement_journal_id IS NOT NULL
    UNION ALL
    SELECT w.user_id, 'deposit.refunded', r.refund_reference, r.created_at
    FROM deposit_refunds r JOIN deposits d ON d.id = r.deposit_id JOIN wallets w ON w.id = d.wallet_id
    WHERE r.outcome = 'debited'
    UNION ALL
    SELECT w.user_id, CASE j.kind WHEN 'payout' THEN 'withdrawal.succeeded' ELSE 'withdrawal.failed' END,
        j.reference, j.created_at
    FROM ledger_journals j JOIN withdrawals x ON x.reference = j.reference JOIN wallets w ON w.id = x.wallet_id
    WHERE j.kind IN ('payout', 'payout_return')
) AS moved
"""  # noqa: S608 - constant SQL
"""Movements made before the outbox existed get their event (nobody was subscribed then: no deliveries), so the
ledger check's "one event per movement" holds on an upgraded database too."""


def _audit_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("user_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("events", postgresql.ARRAY(sa.String(length=32)), nullable=False),
        sa.Column("sealed_secret", sa.Text(), nullable=False),
        sa.Column("failing_since", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        sa.Column("disabled_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        sa.Column("deleted_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        *_audit_columns(),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_webhook_endpoints_user_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index(
        "ix_webhook_endpoints_user",
        "webhook_endpoints",
        ["user_id"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "wallet_events",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("user_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        *_audit_columns(),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_wallet_events_user_id_users"), ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_events")),
        sa.UniqueConstraint("public_id", name=op.f("uq_wallet_events_public_id")),
    )
    op.create_index("ix_wallet_events_user", "wallet_events", ["user_id", "created_at"], unique=False)
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("endpoint_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("event_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("leased_until", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        *_audit_columns(),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["wallet_events.id"],
            name=op.f("fk_webhook_deliveries_event_id_wallet_events"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint", "webhook_deliveries", ["endpoint_id", "created_at"], unique=False
    )
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_endpoint", table_name="webhook_deliveries")
    op.drop_index(
        "ix_webhook_deliveries_due", table_name="webhook_deliveries", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_wallet_events_user", table_name="wallet_events")
    op.drop_table("wallet_events")
    op.drop_index(
        "ix_webhook_endpoints_user", table_name="webhook_endpoints", postgresql_where=sa.text("deleted_at IS NULL")
    )
    op.drop_table("webhook_endpoints")
