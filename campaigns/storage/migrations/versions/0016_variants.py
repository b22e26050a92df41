"""A/B variants: the variant each delivery went as, and the winner chosen per step.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06

`deliveries.variant` is written in the transaction that makes the row `sending` (the
variant is chosen at hand-off: a winner chosen meanwhile, or an edit to the variants,
applies to every email not yet gone); NULL for a step without variants and for rows
sent before this release. `variant_winners` holds one row per campaign step once a
`winner:` rule has chosen: the primary key makes the choice once, whichever worker
gets there first (the others' inserts fail and they read the row).
`ix_deliveries_variant` indexes only rows that went as a variant, for the count a
winner rule makes at each hand-off of its step (none for campaigns without variants).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("variant", sa.String(32), nullable=True))
    # A winner rule counts each variant's sends per hand-off: rows with a variant only.
    with_variant = sa.text("variant IS NOT NULL")
    op.create_index(
        "ix_deliveries_variant",
        "deliveries",
        ["step_key", "status", "variant"],
        sqlite_where=with_variant,
        postgresql_where=with_variant,
    )
    op.create_table(
        "variant_winners",
        sa.Column("campaign", sa.String(64), primary_key=True),
        sa.Column("step_key", sa.String(64), primary_key=True),
        sa.Column("variant", sa.String(32), nullable=False),
        sa.Column("metric", sa.String(16), nullable=False),
        sa.Column("after", sa.Integer, nullable=False),
        sa.Column("figures", sa.Text, nullable=False),
        sa.Column("decided_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("variant_winners")
    op.drop_index("ix_deliveries_variant", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("variant")
