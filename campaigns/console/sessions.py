"""Console sessions: kept in the database, revocable, with idle and absolute time limits.

The cookie holds a random session id; the database holds only its SHA-256, so a copy
of the database signs nobody in. A session ends after 30 minutes without a request or
12 hours after sign-in, whichever comes first, when its user is disabled, and at sign-out.
Each holds the CSRF token its forms carry (a synchronizer token).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Row, delete, insert, select, update

from campaigns.storage.store import Store
from campaigns.storage.tables import console_sessions, console_users

__all__ = ["ABSOLUTE", "IDLE", "Session", "resolve", "revoke", "start"]

IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often


@dataclass(frozen=True)
class Session:
    """A live session and its user's row."""

    id_hash: str
    csrf_token: str
    mfa_pending: bool
    created_at: datetime
    user: Row


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start(conn: Connection, user_id: int, now: datetime, *, mfa_pending: bool = False) -> str:
    """A new session for `user_id` (in `conn`'s transaction); its id, for the cookie."""
    session_id = secrets.token_urlsafe(32)
    # Sessions past their 12 hours open nothing: dropped as new ones begin.
    conn.execute(delete(console_sessions).where(console_sessions.c.created_at < now - ABSOLUTE))
    conn.execute(
        insert(console_sessions).values(
            id_hash=session_hash(session_id),
            user_id=user_id,
            csrf_token=secrets.token_urlsafe(32),
            mfa_pending=int(mfa_pending),
            created_at=now,
            last_seen_at=now,
        )
    )
    return session_id


def resolve(store: Store, session_id: str | None, now: datetime) -> Session | None:
    """The live session the cookie names, its last use moved to now; None when there is
    none, or it was revoked, idled out, ran past 12 hours, or its user is disabled."""
    if not session_id or len(session_id) > 200:
        return None
    hashed = session_hash(session_id)
    query = (
        select(console_sessions, console_users.c.disabled_at)
        .join(console_users, console_users.c.id == console_sessions.c.user_id)
        .where(console_sessions.c.id_hash == hashed)
    )
    with store.connect() as conn:
        row = conn.execute(query).first()
    if row is None or row.revoked_at is not None or row.disabled_at is not None:
        return None
    if now - row.last_seen_at >= IDLE or now - row.created_at >= ABSOLUTE:
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        with store.begin() as conn:
            conn.execute(
                update(console_sessions)
                .where(console_sessions.c.id_hash == hashed)
                .values(last_seen_at=now)
            )
    with store.connect() as conn:
        user = conn.execute(select(console_users).where(console_users.c.id == row.user_id)).one()
    return Session(hashed, row.csrf_token, bool(row.mfa_pending), row.created_at, user)


def revoke(conn: Connection, id_hash: str, now: datetime) -> None:
    conn.execute(
        update(console_sessions)
        .where(console_sessions.c.id_hash == id_hash, console_sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
