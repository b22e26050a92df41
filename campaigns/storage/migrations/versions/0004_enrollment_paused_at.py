"""enrollments.paused_at: when one contact's enrollment was paused.

Revision ID: 0004
Revises: 0003
Create Date: 2026-03-28

`dripmail pause CAMPAIGN --email E` holds one contact's pending emails; on resume they
move later by the length of the pause, which needs its start. NULL when not paused.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("enrollments", sa.Column("paused_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("paused_at")
