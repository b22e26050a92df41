"""The audit trail: who did what to which object, and when, appended and never changed.

`record` writes one entry inside the caller's transaction, so an action and its entry
are committed together or not at all. There is no function that updates or deletes an
entry (on PostgreSQL a trigger refuses both). Entries carry opaque ids only: a console
user's id or "cli" as the actor, a campaign's name and version, a contact's id; never a
patient's address or name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, String, cast, insert, select

from campaigns.storage.store import Store, utcnow
from campaigns.storage.tables import audit_log, console_users

__all__ = ["CLI", "AuditEntry", "entries", "record"]

CLI = "cli"  # the actor of an action taken on the command line (whoever holds the database)


@dataclass(frozen=True)
class AuditEntry:
    """One action as the trail keeps it; `actor_email` is the console user's address."""

    id: int
    at: datetime
    actor: str
    actor_email: str | None
    action: str
    object_kind: str
    object_id: str | None
    content_hash: str | None
    detail: str | None

    def line(self) -> str:
        """One line of `dripmail audit`: when, who, what, the object, its version."""
        what = f"{self.object_kind} {self.object_id}" if self.object_id else self.object_kind
        text = (
            f"{self.at:%Y-%m-%d %H:%M:%S}  {self.actor_email or self.actor}  {self.action}  {what}"
        )
        if self.content_hash:
            text += f"  {self.content_hash}"
        return text + (f"  ({self.detail})" if self.detail else "")

    def as_dict(self) -> dict[str, str | int | None]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "actor_email": self.actor_email,
            "action": self.action,
            "object_kind": self.object_kind,
            "object_id": self.object_id,
            "content_hash": self.content_hash,
            "detail": self.detail,
        }


def record(
    conn: Connection,
    actor: str | int,
    action: str,
    object_kind: str,
    object_id: str | int | None = None,
    content_hash: str | None = None,
    *,
    detail: str | None = None,
    at: datetime | None = None,
) -> None:
    """Append one entry (in `conn`'s transaction). `actor`: a console user's id, or CLI.

    `at` defaults to the real clock: the trail says when something was done, whatever
    engine time (`--now`) the action itself ran at.
    """
    conn.execute(
        insert(audit_log).values(
            at=at or utcnow(),
            actor=str(actor),
            action=action,
            object_kind=object_kind,
            object_id=None if object_id is None else str(object_id),
            content_hash=content_hash,
            detail=detail,
        )
    )


def entries(
    store: Store, *, since: datetime | None = None, limit: int | None = None
) -> list[AuditEntry]:
    """The trail in the order it was written (oldest first), from `since` on; with
    `limit`, only the newest `limit` entries (still oldest first)."""
    query = select(audit_log, console_users.c.email).outerjoin(
        console_users, audit_log.c.actor == cast(console_users.c.id, String)
    )
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    if limit is not None:
        query = query.order_by(audit_log.c.id.desc()).limit(limit)
    else:
        query = query.order_by(audit_log.c.id)
    with store.connect() as conn:
        rows = conn.execute(query).all()
    if limit is not None:
        rows.reverse()
    return [
        AuditEntry(
            row.id,
            row.at,
            row.actor,
            row.email,
            row.action,
            row.object_kind,
            row.object_id,
            row.content_hash,
            row.detail,
        )
        for row in rows
    ]
