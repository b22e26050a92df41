"""webhook_tokens: the signature tokens a provider's webhook has used, so none is honoured twice.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

Mailgun signs a webhook request with HMAC-SHA256 over its timestamp and a random
token, not over the events it carries: a captured signature could be sent again with
other events, as long as its timestamp is recent. Its documentation asks the receiver
to refuse a token it has seen. Kept in the database, not in a process, so every
worker of `dripmail serve` and every restart refuses it. Only a SHA-256 of the token is
kept, with the time it was signed; tokens past the webhook's age limit are deleted as
new ones come in (an old token is refused for its age anyway).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_tokens",
        sa.Column("provider", sa.String(32), primary_key=True),
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("signed_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("webhook_tokens")
