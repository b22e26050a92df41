"""Indexes for the console's statistics: events by delivery, a campaign's deliveries counted.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

A campaign's statistics count the events of its deliveries: without an index on
events.delivery_id that is a scan of every event ever received, per request. Its sent
emails per step and per day are read from (enrollment_id, status, step_key, sent_at):
reached through the campaign's enrollments, the count is answered from the index alone,
never from the rows of the two-million-row table.
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_delivery", "events", ["delivery_id", "type"])
    op.create_index(
        "ix_deliveries_counts", "deliveries", ["enrollment_id", "status", "step_key", "sent_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_counts", table_name="deliveries")
    op.drop_index("ix_events_delivery", table_name="events")
