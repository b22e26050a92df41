"""events.campaign: the campaign an event belongs to when it names no delivery.

Revision ID: 0003
Revises: 0002
Create Date: 2026-03-21

A provider event without our delivery id (SendGrid still sends the opaque campaign
category) and an unsubscribe from a token without a delivery are counted at campaign
level by `dripmail stats`; the name is kept here. NULL for events that name a delivery
(the delivery says which campaign) and for every event stored before this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("campaign", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("campaign")
