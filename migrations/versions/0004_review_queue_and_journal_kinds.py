"""review queue, and the database refuses journal kinds the service never writes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 02:30:00+00:00

"""
# Runs in its own transaction, like every migration here (see script.py.mako).

from __future__ import annotations

import advanced_alchemy.types.datetime
import advanced_alchemy.types.guid
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JOURNAL_KINDS = "'deposit', 'transfer', 'settlement'"


def upgrade() -> None:
    op.create_table(
        "review_items",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=128), server_default="", nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("resolved_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=120), nullable=True),
        sa.Column("resolution_note", sa.Text(), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('open', 'resolved')", name=op.f("ck_review_items_status_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_items")),
        sa.UniqueConstraint("kind", "reference", "source", name="uq_review_items_kind_reference_source"),
    )
    op.create_index(
        "ix_review_items_open", "review_items", ["created_at"], unique=False, postgresql_where=sa.text("status = 'open'")
    )
    op.create_index("ix_review_items_reference", "review_items", ["reference"], unique=False)
    # A balanced journal of a kind nothing writes (an `adjustment` typed by hand) would pass every balance check.
    op.create_check_constraint("kind_known", "ledger_journals", f"kind IN ({JOURNAL_KINDS})")


def downgrade() -> None:
    op.drop_constraint("kind_known", "ledger_journals", type_="check")
    op.drop_index("ix_review_items_reference", table_name="review_items")
    op.drop_index("ix_review_items_open", table_name="review_items")
    op.drop_table("review_items")
