"""Newsletters: contact tags, a newsletter opt-out, and the kind of each campaign.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

contacts.tags holds a contact's tags as `;tag;other;` (NULL: none), so membership is one
LIKE; contacts.newsletter_unsubscribed_at is when the contact left the newsletter (drip
campaigns unaffected); campaigns.kind is "newsletter" for a broadcast, NULL for a drip.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("contacts", sa.Column("tags", sa.Text(), nullable=True))
    op.add_column("contacts", sa.Column("newsletter_unsubscribed_at", sa.DateTime(), nullable=True))
    op.add_column("campaigns", sa.Column("kind", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("kind")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("newsletter_unsubscribed_at")
        batch.drop_column("tags")
