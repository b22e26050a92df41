"""contacts: the patient's own choices from the preference centre.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06

`discreet`: neutral subjects, preheaders and From name for this patient's emails
(true), whatever the campaign says; NULL or false: the campaign's own `privacy`.
`paused_until`: no email to this patient before this instant (UTC); their pending
emails were moved past it when they chose the pause. NULL: not paused.
`min_gap_days`: at least this many days between any two of their emails, across
campaigns ("fewer emails"); NULL: only the campaigns' own `min_gap`.
Expand only: three nullable columns, NULL in every existing row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("contacts", sa.Column("discreet", sa.Boolean(), nullable=True))
    op.add_column("contacts", sa.Column("paused_until", sa.DateTime(), nullable=True))
    op.add_column("contacts", sa.Column("min_gap_days", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("min_gap_days")
        batch.drop_column("paused_until")
        batch.drop_column("discreet")
