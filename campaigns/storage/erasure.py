"""Erasing people from the database's files: the tombstone, secure delete and the scrub.

Shared by `contacts forget` (compliance/privacy.py) and the worker's erasure of expired,
never confirmed sign-ups (planning/expired_signups.py). A contact is erased by clearing
its row to a tombstone that keeps only its id, so rows that carry ids keep statistics
right. On SQLite the erasing connection turns on `secure_delete` (freed space is
overwritten with zeros) and `scrub` checkpoints and truncates the write-ahead log, so
the old bytes are in neither the file nor its -wal file; on PostgreSQL `scrub` runs
VACUUM (old row versions go; backups and archived WAL keep them until they expire).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Connection, update

from campaigns.storage.store import Store
from campaigns.storage.tables import contacts

log = logging.getLogger("dripmail.privacy")

ERASED_ZONE = "UTC"  # the column is required; the contact's own zone says where they live


def clear_contacts(conn: Connection, contact_ids: Sequence[int]) -> None:
    """Clear these contacts to tombstones: the id stays, nothing about the person does."""
    conn.execute(
        update(contacts)
        .where(contacts.c.id.in_(list(contact_ids)))
        .values(
            email=None,
            first_name=None,
            attributes=None,
            language=None,  # which language a patient reads says something about them
            consent_source=None,
            consent_at=None,
            confirmed_at=None,
            timezone=ERASED_ZONE,
            tags=None,  # segments name conditions and treatments
            newsletter_unsubscribed_at=None,
            # The preference centre's choices: wanting discreet health email says more
            # about a patient than their language does.
            discreet=None,
            paused_until=None,
            min_gap_days=None,
        )
    )


@contextmanager
def erasing(store: Store) -> Iterator[Connection]:
    """A connection whose deletes leave no bytes behind (SQLite: `secure_delete`).

    Set before the caller's transaction, on the connection that erases: freed cells and
    pages are overwritten with zeros instead of lingering until reused."""
    with store.engine.connect() as conn:
        before = None
        if store.is_sqlite:
            raw = conn.connection.dbapi_connection
            before = raw.execute("PRAGMA secure_delete").fetchone()[0]
            raw.execute("PRAGMA secure_delete=ON")
        conn.execution_options(dripmail_write=True)
        try:
            yield conn
        finally:
            if before is not None:  # as the pool's connections have it (store.py), not OFF
                setting = {0: "OFF", 1: "ON"}.get(before, "FAST")
                conn.connection.dbapi_connection.execute(f"PRAGMA secure_delete={setting}")


def scrub(store: Store, conn: Connection, *, vacuum: bool = True) -> bool:
    """Leave no old copy of erased rows in the database's files; True when complete.

    `vacuum=False` (SQLite) skips rewriting the whole file: with `secure_delete` on, the
    freed cells are already zeros, and only the write-ahead log still holds old pages."""
    raw = conn.connection.dbapi_connection
    if store.is_sqlite:
        # Checkpoint first so VACUUM starts from a file holding every change, then rewrite
        # the file and truncate the log that held the old page images to zero bytes.
        busy, _log, _done = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if vacuum:
            raw.execute("VACUUM")
            busy, _log, _done = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("erasure: another connection is reading; the -wal file is not truncated")
        return busy == 0
    if store.engine.dialect.name == "postgresql":
        # VACUUM cannot run in a transaction block: a separate autocommit connection.
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as auto:
            auto.exec_driver_sql(
                "VACUUM (ANALYZE) contacts, enrollments, deliveries, contact_events, confirmations"
            )
        return True
    return False
