"""An index for the console's statistics: a campaign's deliveries counted.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06

A campaign's sent emails per step and per day are read from (enrollment_id, status,
step_key, sent_at): reached through the campaign's enrollments, the count is answered from
the index alone, never from the rows of a two-million-row table. (Its events are found by
delivery through `ix_events_delivery`, migration 0013.)
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_counts", "deliveries", ["enrollment_id", "status", "step_key", "sent_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_counts", table_name="deliveries")
