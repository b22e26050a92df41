"""Indexes for many workers: claiming due rows by keyset, recovery, `retry --unknown`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-03-20

The claim query reads `status = 'scheduled' AND due_at <= :now AND (due_at, id) >
:cursor ORDER BY due_at, id LIMIT n FOR UPDATE SKIP LOCKED`. (status, due_at, id)
answers it from the index in order, starting at the cursor, so a tick reads the due
rows and not the history of every delivery ever sent; recovery's `status IN
('claimed', 'sending')` uses its prefix. It replaces (status, due_at), its prefix.
`retry --unknown` reads `status = 'unknown' AND updated_at <= :t`.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_claim", "deliveries", ["status", "due_at", "id"])
    op.create_index("ix_deliveries_status_updated", "deliveries", ["status", "updated_at"])
    op.drop_index("ix_deliveries_status_due", table_name="deliveries")


def downgrade() -> None:
    op.create_index("ix_deliveries_status_due", "deliveries", ["status", "due_at"])
    op.drop_index("ix_deliveries_status_updated", table_name="deliveries")
    op.drop_index("ix_deliveries_claim", table_name="deliveries")
