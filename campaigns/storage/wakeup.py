"""Telling running workers that an email is due now, so they need not wait for their tick.

A transaction that makes work due at once (a sign-up whose first email is due, a
confirmation to send) calls `announce_due(conn)`. On PostgreSQL that is a NOTIFY on
`DUE_CHANNEL`, delivered to the workers that LISTEN only when the transaction commits
(and never if it rolls back); SQLite has no such thing, so workers there look at the
due index cheaply every second instead (delivery/workers.py).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

DUE_CHANNEL = "dripmail_due"


def announce_due(conn: Connection) -> None:
    """Wake listening workers when `conn`'s transaction commits (PostgreSQL only)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"NOTIFY {DUE_CHANNEL}"))
