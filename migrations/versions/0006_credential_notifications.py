"""credentials: PostgreSQL announces every change that can end one (API processes cache verified credentials)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 04:30:00+00:00

"""
# Runs in its own transaction, like every migration here (see script.py.mako).

from __future__ import annotations

from alembic import op

# revision identifiers, used by Alembic.
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TRIGGERS = {
    "api_keys_credential_changed": "AFTER UPDATE OR DELETE ON api_keys",
    "users_credential_changed": "AFTER DELETE ON users",
    "revoked_tokens_credential_changed": "AFTER INSERT ON revoked_tokens",
}


def upgrade() -> None:
    # Sent at commit, to every process listening on `wallet_credentials`, whatever made the change (the API,
    # a sweep, an operator's SQL): a cached credential is forgotten however it was ended.
    op.execute(
        """
        CREATE FUNCTION notify_credential_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_TABLE_NAME = 'api_keys' THEN
                PERFORM pg_notify('wallet_credentials', 'key:' || OLD.key_hash);
            ELSIF TG_TABLE_NAME = 'users' THEN
                PERFORM pg_notify('wallet_credentials', 'user:' || OLD.id::text);
            ELSE
                PERFORM pg_notify('wallet_credentials', 'token:' || NEW.jti);
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    for name, when in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {when} FOR EACH ROW EXECUTE FUNCTION notify_credential_changed()")


def downgrade() -> None:
    for name, when in TRIGGERS.items():
        table = when.rsplit(" ", 1)[1]
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS notify_credential_changed()")
