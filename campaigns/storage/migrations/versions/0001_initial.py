"""The schema of the first release: contacts, enrollments, deliveries, suppressions, events.

Revision ID: 0001
Revises:
Create Date: 2026-03-01

Exactly the tables the store made with `create_all` before migrations existed, so
such a database is this revision (it says `schema = 1` in `meta`) and is stamped, not
rebuilt. Types are spelled out here, not imported from the store: a migration must
keep meaning what it meant when it was written.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "campaigns",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("paused_at", sa.DateTime()),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "campaign_versions",
        sa.Column("campaign", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(32), primary_key=True),
        sa.Column("files", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "contacts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(320), nullable=True, unique=True),
        sa.Column("first_name", sa.String(200)),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("consent_source", sa.Text()),
        sa.Column("consent_at", sa.DateTime()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "enrollments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("contact_id", sa.Integer(), sa.ForeignKey("contacts.id"), nullable=False),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("signed_up_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("contact_id", "campaign", name="uq_enrollment_contact_campaign"),
    )
    op.create_index("ix_enrollments_campaign", "enrollments", ["campaign", "status"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("enrollment_id", sa.Integer(), sa.ForeignKey("enrollments.id"), nullable=False),
        sa.Column("step_key", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_expires_at", sa.DateTime()),
        sa.Column("provider_message_id", sa.String(200)),
        sa.Column("error", sa.Text()),
        sa.Column("sent_at", sa.DateTime()),
        sa.Column("updated_at", sa.DateTime()),
        sa.UniqueConstraint("enrollment_id", "step_key", name="uq_delivery_enrollment_step"),
    )
    op.create_index("ix_deliveries_status_due", "deliveries", ["status", "due_at"])
    op.create_index("ix_deliveries_enrollment", "deliveries", ["enrollment_id", "position"])
    op.create_table(
        "suppressions",
        sa.Column("address_hash", sa.String(64), primary_key=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("provider_event_id", sa.String(200), nullable=False, unique=True),
        sa.Column("delivery_id", sa.Integer()),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("occurred_at", sa.DateTime()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "events",
        "suppressions",
        "deliveries",
        "enrollments",
        "contacts",
        "campaign_versions",
        "campaigns",
        "meta",
    ):
        op.drop_table(table)
