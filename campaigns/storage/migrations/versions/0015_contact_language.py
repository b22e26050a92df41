"""contacts.language: the language a contact reads, a BCP 47 tag (`es`, `pt-BR`).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06

Set by `import` (a `language` column), the sign-up API's `language` field and
`enroll --language`; NULL when unknown, which means the campaign's default language.
A contact gets their language when the campaign is written in it (exactly, then by
the primary subtag), else the default (campaigns/authoring/languages.py). 35
characters: RFC 5646 4.4.1 asks that tags up to that length be kept whole.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("contacts", sa.Column("language", sa.String(35), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("language")
