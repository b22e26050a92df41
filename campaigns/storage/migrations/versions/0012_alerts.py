"""alerts: worker heartbeats, the automatic pause's records and reason, the alerts sent.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

Expand only (new tables, nullable columns), so workers of the previous release keep
running while it is applied: they write no heartbeat and never pause by themselves.
- campaigns.pause_kind / pause_reason: why the engine paused a campaign by itself.
- worker_heartbeats: one row per worker, its last tick on the real clock.
- health_records: each hand-off's and each events batch's counts per campaign.
- alerts: the last alert emailed per kind, the rate limit shared by every worker.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("campaigns", sa.Column("pause_kind", sa.String(32), nullable=True))
    op.add_column("campaigns", sa.Column("pause_reason", sa.Text, nullable=True))
    op.create_table(
        "worker_heartbeats",
        sa.Column("worker", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("interval_seconds", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("last_tick_at", sa.DateTime, nullable=False),
        sa.Column("ticks", sa.Integer, nullable=False),
        sa.Column("sent", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("unknown", sa.Integer, nullable=False),
        sa.Column("stopped_at", sa.DateTime, nullable=True),
    )
    op.create_table(
        "health_records",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        sa.Column("sent", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("unknown", sa.Integer, nullable=False),
        sa.Column("bounced", sa.Integer, nullable=False),
        sa.Column("complained", sa.Integer, nullable=False),
        sa.Column("outcomes", sa.Text, nullable=True),
    )
    op.create_index("ix_health_records_campaign", "health_records", ["campaign", "id"])
    op.create_index("ix_health_records_time", "health_records", ["recorded_at"])
    op.create_table(
        "alerts",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("sent_at", sa.DateTime, nullable=False),
        sa.Column("raised_at", sa.DateTime, nullable=False),
        sa.Column("held_back", sa.Integer, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_index("ix_health_records_time", table_name="health_records")
    op.drop_index("ix_health_records_campaign", table_name="health_records")
    op.drop_table("health_records")
    op.drop_table("worker_heartbeats")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("pause_reason")
        batch.drop_column("pause_kind")
