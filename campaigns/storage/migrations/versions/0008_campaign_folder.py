"""The folder a campaign was last published from, for messages that say how to fix it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

`dripmail run` keeps back a campaign whose published version cannot be sent (split's
placeholders, its own sender misconfigured) and names the command that fixes it,
`dripmail plan FOLDER --apply`: campaigns.folder is that FOLDER (NULL: published by
name only, or before this revision).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("campaigns", sa.Column("folder", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("folder")
