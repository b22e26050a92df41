"""console: the marketing console's people, sessions, failed sign-ins and audit trail.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

New tables only (expand): nothing existing changes. Passwords are argon2id hashes; the
session ids, set-up tokens and recovery codes are kept as SHA-256 hashes, so a copy of
the database opens no account. `audit_log` is append-only: dripmail never updates or
deletes its rows; on PostgreSQL a trigger refuses UPDATE and DELETE as well.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("name", sa.String(200)),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text),
        sa.Column("totp_secret", sa.String(64)),
        sa.Column("totp_enabled_at", sa.DateTime),
        sa.Column("totp_last_step", sa.Integer),
        sa.Column("recovery_codes", sa.Text),
        sa.Column("setup_token_hash", sa.String(64), unique=True),
        sa.Column("setup_expires_at", sa.DateTime),
        sa.Column("disabled_at", sa.DateTime),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_sign_in_at", sa.DateTime),
    )
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("console_users.id"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("mfa_pending", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_seen_at", sa.DateTime, nullable=False),
        sa.Column("revoked_at", sa.DateTime),
    )
    op.create_index("ix_console_sessions_user", "console_sessions", ["user_id"])
    op.create_table(
        "console_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("failed_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_console_failures_key", "console_failures", ["key", "failed_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("object_kind", sa.String(32), nullable=False),
        sa.Column("object_id", sa.String(200)),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    if op.get_bind().dialect.name == "postgresql":
        # Append-only in the database too: a statement changing or removing a row fails.
        op.execute(
            "CREATE FUNCTION dripmail_audit_append_only() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION dripmail_audit_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS dripmail_audit_append_only()")
    op.drop_index("ix_audit_log_at", "audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_console_failures_key", "console_failures")
    op.drop_table("console_failures")
    op.drop_index("ix_console_sessions_user", "console_sessions")
    op.drop_table("console_sessions")
    op.drop_table("console_users")
