"""withdrawals: `withdrawals`, `transfer_recipients`, the `withdrawals_in_flight` account, payout journals

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 09:00:00+00:00

"""
# Runs in its own transaction, like every migration here (see script.py.mako).

from __future__ import annotations

import advanced_alchemy.types.datetime
import advanced_alchemy.types.guid
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

JOURNAL_KINDS_BEFORE = "'deposit', 'transfer', 'settlement', 'refund'"
JOURNAL_KINDS = "'deposit', 'transfer', 'settlement', 'refund', 'withdrawal', 'payout', 'payout_return'"


def _audit_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "withdrawals",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("wallet_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("bank_code", sa.String(length=32), nullable=False),
        sa.Column("bank_name", sa.String(length=200), nullable=False),
        sa.Column("account_number", sa.String(length=10), nullable=False),
        sa.Column("account_name", sa.String(length=200), nullable=False),
        sa.Column("narration", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("recipient_code", sa.String(length=64), nullable=True),
        sa.Column("transfer_code", sa.String(length=64), nullable=True),
        sa.Column("initiations", sa.Integer(), server_default="0", nullable=False),
        sa.Column("provider_data", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("completed_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        *_audit_columns(),
        sa.CheckConstraint("amount > 0", name=op.f("ck_withdrawals_amount_positive")),
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'success', 'failed', 'reversed')",
            name=op.f("ck_withdrawals_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["wallets.id"], name=op.f("fk_withdrawals_wallet_id_wallets"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_withdrawals")),
        sa.UniqueConstraint("reference", name=op.f("uq_withdrawals_reference")),
    )
    op.create_index(
        "ix_withdrawals_wallet_history", "withdrawals", ["wallet_id", "created_at", "id"], unique=False
    )
    op.create_index(
        "ix_withdrawals_unfinished",
        "withdrawals",
        ["updated_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'processing')"),
    )
    op.create_table(
        "transfer_recipients",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("user_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("bank_code", sa.String(length=32), nullable=False),
        sa.Column("account_number", sa.String(length=10), nullable=False),
        sa.Column("recipient_code", sa.String(length=64), nullable=False),
        *_audit_columns(),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_transfer_recipients_user_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfer_recipients")),
        sa.UniqueConstraint("user_id", "bank_code", "account_number", name="uq_transfer_recipients_account"),
    )
    op.drop_constraint("kind_known", "ledger_journals", type_="check")
    op.create_check_constraint("kind_known", "ledger_journals", f"kind IN ({JOURNAL_KINDS})")
    op.execute("INSERT INTO ledger_accounts (code) VALUES ('withdrawals_in_flight')")


def downgrade() -> None:
    # Ledger rows are immutable: with withdrawal journals or entries in the ledger this fails, and the
    # downgrade with it (money that moved is never forgotten by a schema change).
    op.execute("DELETE FROM ledger_accounts WHERE code = 'withdrawals_in_flight'")
    op.drop_constraint("kind_known", "ledger_journals", type_="check")
    op.create_check_constraint("kind_known", "ledger_journals", f"kind IN ({JOURNAL_KINDS_BEFORE})")
    op.drop_table("transfer_recipients")
    op.drop_index(
        "ix_withdrawals_unfinished", table_name="withdrawals", postgresql_where=sa.text("status IN ('pending', 'processing')")
    )
    op.drop_index("ix_withdrawals_wallet_history", table_name="withdrawals")
    op.drop_table("withdrawals")
