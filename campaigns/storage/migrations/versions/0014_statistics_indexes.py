"""Indexes for the console's statistics: events by delivery, sent deliveries by time.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

A campaign's statistics count the events of its deliveries: without an index on
events.delivery_id that is a scan of every event ever received, per request. Sends over
time and the dashboard's "sent in the last 7 days" read sent deliveries by sent_at: a
partial index holding sent rows only (a row enters it once, when it is sent, so the
dispatcher's claimed -> sending steps never touch it) answers both from the rows asked for.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

SENT = sa.text("status = 'sent'")


def upgrade() -> None:
    op.create_index("ix_events_delivery", "events", ["delivery_id", "type"])
    op.create_index(
        "ix_deliveries_sent",
        "deliveries",
        ["sent_at", "enrollment_id"],
        sqlite_where=SENT,
        postgresql_where=SENT,
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_sent", table_name="deliveries")
    op.drop_index("ix_events_delivery", table_name="events")
