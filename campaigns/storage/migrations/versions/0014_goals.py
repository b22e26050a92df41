"""goals: contact_events, and when an enrollment reached its campaign's goal.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

`contact_events` keeps what a contact did that a campaign's `goal:` may name (booked),
from the events API, `dripmail contacts event` or an import; the sender's own
`event_id` is unique, so a retried event is recorded once. Enrollments gain
`converted_at` (the event's time) and `conversion_event_id`. Expand only: a new table
and two nullable columns.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contact_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("occurred_at", sa.DateTime, nullable=False),
        sa.Column("event_id", sa.String(200), unique=True),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
    )
    op.create_index("ix_contact_events_contact", "contact_events", ["contact_id", "name"])
    op.add_column("enrollments", sa.Column("converted_at", sa.DateTime(), nullable=True))
    op.add_column("enrollments", sa.Column("conversion_event_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("conversion_event_id")
        batch.drop_column("converted_at")
    op.drop_index("ix_contact_events_contact", table_name="contact_events")
    op.drop_table("contact_events")
