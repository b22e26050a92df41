"""console reviews: submissions for review with their verdict, and the console's settings.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

New tables only (expand): nothing existing changes. `console_reviews` keeps each version
an editor submitted (its content hash), who reviewed it, the comment and the plan's
counts at approval; `console_settings` keeps the clinic details and the approval rule.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("submitted_by", sa.Integer, sa.ForeignKey("console_users.id"), nullable=False),
        sa.Column("submitted_at", sa.DateTime, nullable=False),
        sa.Column("reviewed_by", sa.Integer, sa.ForeignKey("console_users.id")),
        sa.Column("reviewed_at", sa.DateTime),
        sa.Column("comment", sa.Text),
        sa.Column("plan", sa.Text),
        sa.Column("published_at", sa.DateTime),
    )
    op.create_index("ix_console_reviews_campaign", "console_reviews", ["campaign", "id"])
    op.create_table(
        "console_settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("console_settings")
    op.drop_index("ix_console_reviews_campaign", "console_reviews")
    op.drop_table("console_reviews")
