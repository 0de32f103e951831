"""deposits: `reversed` is a state of its own (clients still see `failed`)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 03:30:00+00:00

"""
# Runs in its own transaction, like every migration here (see script.py.mako).

from __future__ import annotations

from alembic import op

# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("status_known", "deposits", type_="check")
    op.create_check_constraint(
        "status_known", "deposits", "status IN ('pending', 'success', 'failed', 'reversed', 'abandoned')"
    )
    # Until now a reversal was a `failed` deposit whose stored Paystack data said `reversed`.
    op.execute("UPDATE deposits SET status = 'reversed' WHERE status = 'failed' AND provider_data->>'status' = 'reversed'")


def downgrade() -> None:
    op.execute("UPDATE deposits SET status = 'failed' WHERE status = 'reversed'")
    op.drop_constraint("status_known", "deposits", type_="check")
    op.create_check_constraint("status_known", "deposits", "status IN ('pending', 'success', 'failed', 'abandoned')")
