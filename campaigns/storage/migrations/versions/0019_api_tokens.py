"""api_tokens: named, scoped bearer tokens for the /api/v1 routes of `dripmail serve`.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06

`dripmail tokens add NAME --scope enroll,events,read` makes one; only the SHA-256 of
the token is kept (hex), never the token. `scopes` is a comma-separated list;
`last_used_at` is written at most once a minute per token; a revoked token keeps
its row (so `tokens list` shows it and its name stays taken) with `revoked_at` set.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("scopes", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_used_at", sa.DateTime),
        sa.Column("revoked_at", sa.DateTime),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
