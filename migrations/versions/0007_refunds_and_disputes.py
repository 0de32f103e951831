"""refunds: `deposit_refunds` (each Paystack refund once), `refund` journals, the `refunded` deposit state

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 07:07:25+00:00

"""
# Runs in its own transaction, like every migration here (see script.py.mako).

from __future__ import annotations

import advanced_alchemy.types.datetime
import advanced_alchemy.types.guid
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JOURNAL_KINDS_BEFORE = "'deposit', 'transfer', 'settlement'"
JOURNAL_KINDS = "'deposit', 'transfer', 'settlement', 'refund'"
DEPOSIT_STATUSES_BEFORE = "'pending', 'success', 'failed', 'reversed', 'abandoned'"
DEPOSIT_STATUSES = "'pending', 'success', 'failed', 'reversed', 'abandoned', 'refunded'"


def upgrade() -> None:
    op.create_table(
        "deposit_refunds",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("deposit_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("refund_reference", sa.String(length=100), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("journal_id", sa.BigInteger(), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(outcome = 'debited') = (journal_id IS NOT NULL)", name=op.f("ck_deposit_refunds_debited_has_journal")
        ),
        sa.CheckConstraint("outcome IN ('debited', 'uncovered')", name=op.f("ck_deposit_refunds_outcome_known")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_deposit_refunds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["deposit_id"], ["deposits.id"], name=op.f("fk_deposit_refunds_deposit_id_deposits"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["journal_id"],
            ["ledger_journals.id"],
            name=op.f("fk_deposit_refunds_journal_id_ledger_journals"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deposit_refunds")),
        sa.UniqueConstraint("refund_reference", name=op.f("uq_deposit_refunds_refund_reference")),
    )
    op.create_index("ix_deposit_refunds_deposit_id", "deposit_refunds", ["deposit_id"], unique=False)
    op.drop_constraint("kind_known", "ledger_journals", type_="check")
    op.create_check_constraint("kind_known", "ledger_journals", f"kind IN ({JOURNAL_KINDS})")
    op.drop_constraint("status_known", "deposits", type_="check")
    op.create_check_constraint("status_known", "deposits", f"status IN ({DEPOSIT_STATUSES})")


def downgrade() -> None:
    op.execute("UPDATE deposits SET status = 'success' WHERE status = 'refunded'")
    op.drop_constraint("status_known", "deposits", type_="check")
    op.create_check_constraint("status_known", "deposits", f"status IN ({DEPOSIT_STATUSES_BEFORE})")
    op.drop_index("ix_deposit_refunds_deposit_id", table_name="deposit_refunds")
    op.drop_table("deposit_refunds")
    # Ledger rows are immutable: with refund journals in the ledger this fails, and the downgrade with it.
    op.drop_constraint("kind_known", "ledger_journals", type_="check")
    op.create_check_constraint("kind_known", "ledger_journals", f"kind IN ({JOURNAL_KINDS_BEFORE})")
