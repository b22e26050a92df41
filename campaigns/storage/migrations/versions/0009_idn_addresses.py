"""contacts.email: an internationalised domain stored as its IDNA A-label.

Revision ID: 0009
Revises: 0008
Create Date: 2027-01-10

From this revision `planning.contacts.normalise_email` stores `pat@bücher.de` as
`pat@xn--bcher-kva.de`, so both spellings are one contact and one suppression hash.
Rows stored before kept the Unicode domain: they would no longer be found by their
address (export, erasure, a new sign-up would make a second contact), and their
suppressions would no longer match. This rewrites each such address, and copies each
suppression held under the old spelling's hash to the new one's (the HMAC key is in
`meta`). No column changes.

What it cannot do: an address erased before this revision is only a hash, so an
erased or suppressed Unicode-domain address with no contact row keeps its old hash
only. A contact whose A-label spelling is already another contact's keeps its old
address (the two are logged by id, for staff to merge by hand); its suppression
is still copied, so the mailbox stays suppressed.
"""

from __future__ import annotations

import hmac
import logging
from hashlib import sha256

import idna
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

log = logging.getLogger("dripmail.migrations")

_contacts = sa.table("contacts", sa.column("id", sa.Integer), sa.column("email", sa.String))
_suppressions = sa.table(
    "suppressions",
    sa.column("address_hash", sa.String),
    sa.column("reason", sa.String),
    sa.column("created_at", sa.DateTime),
)
_meta = sa.table("meta", sa.column("key", sa.String), sa.column("value", sa.Text))


def a_label_form(address: str) -> str | None:
    """The address with its Unicode domain as A-label (lower case); None if it has none."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return None
    try:
        # IDNA 2008 with UTS 46, as email-validator (and so normalise_email) encodes.
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        return None
    return f"{local}@{ascii_domain.lower()}"


def upgrade() -> None:
    conn = op.get_bind()
    key = conn.scalar(sa.select(_meta.c.value).where(_meta.c.key == "suppression_key"))
    rows = conn.execute(sa.select(_contacts.c.id, _contacts.c.email)).all()
    taken = {row.email for row in rows if row.email is not None}
    for row in rows:
        new = a_label_form(row.email) if row.email is not None else None
        if new is None:
            continue
        if new in taken:
            log.warning("contact %s: its address is another contact's too; left as it was", row.id)
        else:
            conn.execute(sa.update(_contacts).where(_contacts.c.id == row.id).values(email=new))
            taken.add(new)
        if key is not None:
            _copy_suppression(conn, key, row.email, new)


def _copy_suppression(conn: sa.Connection, key: str, old: str, new: str) -> None:
    """The old spelling's suppression (if any) under the new spelling's hash too."""

    def digest(address: str) -> str:
        # planning.contacts.address_hash, as it was and is for a normalised address.
        return hmac.digest(key.encode(), address.encode(), sha256).hex()

    found = conn.execute(
        sa.select(_suppressions.c.reason, _suppressions.c.created_at).where(
            _suppressions.c.address_hash == digest(old)
        )
    ).first()
    if found is None:
        return
    exists = conn.scalar(
        sa.select(_suppressions.c.address_hash).where(_suppressions.c.address_hash == digest(new))
    )
    if exists is None:
        conn.execute(
            sa.insert(_suppressions).values(
                address_hash=digest(new), reason=found.reason, created_at=found.created_at
            )
        )


def downgrade() -> None:
    # Nothing to undo: an A-label address is one the older code stores and sends as it is.
    pass
