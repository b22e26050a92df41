"""contacts.attributes: the columns of an imported file that dripmail has no field for.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Real exports carry more than dripmail reads (Last Name, Phone, a clinic's own columns);
`import` keeps them on the contact as a JSON object of strings instead of refusing the
file. NULL when a contact has none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("contacts", sa.Column("attributes", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("attributes")
