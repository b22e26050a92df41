"""Outbound webhooks: the endpoints, and the outbox of signed messages to them.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06

`dripmail webhooks add` makes an endpoint (its secret kept as it is: it signs every
message). Each event some endpoint subscribed to is written to webhook_messages in the
transaction of the change that caused it; workers deliver them in order per contact,
with leases, retrying for 72 hours (campaigns/delivery/webhooks.py). New tables only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("url", sa.Text, nullable=False, unique=True),
        sa.Column("events", sa.Text, nullable=False),
        sa.Column("include_email", sa.Boolean, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "webhook_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("endpoint_id", sa.Integer, sa.ForeignKey("webhook_endpoints.id"), nullable=False),
        sa.Column("message_id", sa.String(40), nullable=False, unique=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("contact_id", sa.Integer),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_expires_at", sa.DateTime),
        sa.Column("last_error", sa.Text),
        sa.Column("delivered_at", sa.DateTime),
    )
    op.create_index(
        "ix_webhook_messages_due", "webhook_messages", ["status", "next_attempt_at", "id"]
    )
    op.create_index(
        "ix_webhook_messages_contact",
        "webhook_messages",
        ["endpoint_id", "contact_id", "status", "id"],
    )


def downgrade() -> None:
    op.drop_table("webhook_messages")
    op.drop_table("webhook_endpoints")
