"""ix_events_delivery: a delivery's events found by its id (step conditions read clicks).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

A step with `when: {clicked: welcome}` is decided when it is due, by whether the
contact's `welcome` delivery has a `clicked` event. The dispatcher asks that for every
claimed batch: without an index on `events.delivery_id` each batch would read the
whole events table, which grows with every open and delivery report.
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_delivery", "events", ["delivery_id", "type"])


def downgrade() -> None:
    op.drop_index("ix_events_delivery", table_name="events")
