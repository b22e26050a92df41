"""Double opt-in: sign-ups waiting for the patient to confirm their address.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06

`confirmations`: one row per contact x campaign signed up with `confirm: double`
(campaigns/planning/confirmations.py). The worker sends the confirmation email when
`send_due_at` has come (NULL: nothing to send); the sequence is planned only when the
patient confirms (`confirmed_at`); one never confirmed is marked `expired_at` once
`expires_at` has passed, and has no enrollment and no delivery rows.
`contacts.confirmed_at`: when the contact last confirmed their address (beside
`consent_at`, the sign-up's time). Expand only: a new table and a nullable column.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "confirmations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id"), nullable=False),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("requested_at", sa.DateTime, nullable=False),
        sa.Column("send_due_at", sa.DateTime),
        sa.Column("sent_at", sa.DateTime),
        sa.Column("resent_at", sa.DateTime),
        sa.Column("confirmed_at", sa.DateTime),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("expired_at", sa.DateTime),
        sa.UniqueConstraint("contact_id", "campaign", name="uq_confirmations_contact_campaign"),
    )
    op.create_index("ix_confirmations_send_due", "confirmations", ["send_due_at"])
    op.create_index("ix_confirmations_expires", "confirmations", ["expires_at"])
    op.add_column("contacts", sa.Column("confirmed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("confirmed_at")
    op.drop_table("confirmations")
