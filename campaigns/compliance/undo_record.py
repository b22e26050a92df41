"""What one unsubscribe changed, kept for "I changed my mind" (campaigns/compliance/undo.py).

The deliveries an unsubscribe cancels carry its event id in `error`; everything else it
changed (the suppression it created, the enrollments it marked unsubscribed, leaving the
newsletter) is recorded here, in the `meta` table as JSON under `unsubscribe:<event id>`,
so no schema change was needed. Records older than UNDO_DAYS are dropped as new ones come.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select, update

from campaigns.storage.tables import meta

__all__ = ["UNDO_DAYS", "UndoRecord", "forget_record", "recall", "remember"]

UNDO_DAYS = 30  # "I changed my mind" works this long after the unsubscribe
_JOURNAL = "unsubscribe:"  # meta key prefix; the value is an UndoRecord as JSON


@dataclass(frozen=True)
class UndoRecord:
    """What one unsubscribe event changed beyond the deliveries it cancelled (those carry
    its id in `error`): what "I changed my mind" may give back, and nothing more."""

    event_id: int
    scope: str  # suppressions.Scope
    at: datetime
    suppressed: bool = False  # it created the address's suppression
    enrollments: tuple[int, ...] = ()  # active enrollments it marked unsubscribed
    newsletter: bool = False  # it set contacts.newsletter_unsubscribed_at


def remember(conn: Connection, record: UndoRecord) -> None:
    """Keep the record in `meta` (no schema change), merged with an earlier one of the same
    event (the same link and choice used again); records past UNDO_DAYS are dropped."""
    key = f"{_JOURNAL}{record.event_id}"
    earlier = recall(conn, record.event_id)
    if earlier is not None:
        record = replace(
            earlier,
            suppressed=earlier.suppressed or record.suppressed,
            enrollments=tuple(sorted({*earlier.enrollments, *record.enrollments})),
            newsletter=earlier.newsletter or record.newsletter,
        )
    value = json.dumps(
        {
            "scope": record.scope,
            "at": record.at.isoformat(),
            "suppressed": record.suppressed,
            "enrollments": list(record.enrollments),
            "newsletter": record.newsletter,
        }
    )
    if earlier is None:
        conn.execute(insert(meta).values(key=key, value=value))
    elif record != earlier:
        conn.execute(update(meta).where(meta.c.key == key).values(value=value))
    stale = []
    for key, text in conn.execute(
        select(meta.c.key, meta.c.value).where(meta.c.key.like(f"{_JOURNAL}%"))
    ):
        if datetime.fromisoformat(json.loads(text)["at"]) < record.at - timedelta(days=UNDO_DAYS):
            stale.append(key)
    if stale:
        conn.execute(delete(meta).where(meta.c.key.in_(stale)))


def recall(conn: Connection, event_id: int) -> UndoRecord | None:
    """The record of what an unsubscribe event changed, while it may still be undone."""
    text = conn.scalar(select(meta.c.value).where(meta.c.key == f"{_JOURNAL}{event_id}"))
    if text is None:
        return None
    value = json.loads(text)
    return UndoRecord(
        event_id,
        str(value["scope"]),
        datetime.fromisoformat(value["at"]),
        bool(value["suppressed"]),
        tuple(int(i) for i in value["enrollments"]),
        bool(value["newsletter"]),
    )


def forget_record(conn: Connection, event_id: int) -> None:
    """Drop the record once the unsubscribe is undone."""
    conn.execute(delete(meta).where(meta.c.key == f"{_JOURNAL}{event_id}"))
