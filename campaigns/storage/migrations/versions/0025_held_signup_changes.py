"""Double opt-in: what a known contact's sign-up would change, held until they confirm.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07

`confirmations.held_changes`: the tags to add, attributes to add and language of a
known contact's double opt-in sign-up (JSON text; NULL: none, or a new contact, made
with its fields at sign-up). `confirm` applies them before planning the enrollment
(planning/held_changes.py); expiry, an ended request and erasure clear them. Expand
only: a nullable column, which the previous release neither reads nor writes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("confirmations", sa.Column("held_changes", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("confirmations") as batch:
        batch.drop_column("held_changes")
