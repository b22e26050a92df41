"""The facts step conditions read, loaded in bulk: contacts' tags, attributes and clicks;
contacts' own pace (a pause, "fewer emails": planning/pace.py) and their latest email
(`last_sent`, for min_gap and the pace's gap).

A few queries per batch of enrollments, never one per row. Clicks are the provider's
`clicked` events (compliance/events.py) on the enrollment's own deliveries, found
through migration 0012's index on `events.delivery_id`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime

from sqlalchemy import Connection, bindparam, func, or_, select

from campaigns.planning.conditions import ContactFacts
from campaigns.planning.pace import Pace
from campaigns.storage.statuses import IN_FLIGHT
from campaigns.storage.tables import contacts, deliveries, enrollments, events

CHUNK = 1000  # ids per IN list
# A list bound at execution: in_() given 10,000 values coerces each one, every call.
_MANY = bindparam("many", expanding=True)
CLICKED = "clicked"  # compliance.event_model.EventKind.CLICKED, as the `type` column holds it


def clicked_steps(
    conn: Connection, enrollment_ids: Iterable[int], step_keys: Collection[str]
) -> dict[int, frozenset[str]]:
    """For each enrollment, which of `step_keys` the contact clicked a link in."""
    found: dict[int, set[str]] = defaultdict(set)
    ids = sorted(set(enrollment_ids))
    if not step_keys:
        return {}
    for start in range(0, len(ids), CHUNK):
        for enrollment_id, key in conn.execute(
            select(deliveries.c.enrollment_id, deliveries.c.step_key)
            .join(events, events.c.delivery_id == deliveries.c.id)
            .where(
                deliveries.c.enrollment_id.in_(ids[start : start + CHUNK]),
                deliveries.c.step_key.in_(sorted(step_keys)),
                events.c.type == CLICKED,
            )
            .distinct()
        ):
            found[enrollment_id].add(key)
    return {enrollment_id: frozenset(keys) for enrollment_id, keys in found.items()}


def enrollment_facts(
    conn: Connection, enrollment_ids: Iterable[int], click_keys: Collection[str] = ()
) -> dict[int, ContactFacts]:
    """Each enrollment's contact facts now: tags and attributes, and clicks in `click_keys`."""
    ids = sorted(set(enrollment_ids))
    clicks = clicked_steps(conn, ids, click_keys)
    facts: dict[int, ContactFacts] = {}
    for start in range(0, len(ids), CHUNK):
        for row in conn.execute(
            select(enrollments.c.id, contacts.c.tags, contacts.c.attributes)
            .join(contacts, contacts.c.id == enrollments.c.contact_id)
            .where(enrollments.c.id.in_(ids[start : start + CHUNK]))
        ):
            facts[row.id] = ContactFacts.stored(
                row.tags, row.attributes, clicks.get(row.id, frozenset())
            )
    return facts


def contact_paces(conn: Connection, contact_ids: Iterable[int]) -> dict[int, Pace]:
    """The contacts among these who chose a pace of their own (paused, fewer emails)."""
    ids = sorted(set(contact_ids))
    paces: dict[int, Pace] = {}
    for start in range(0, len(ids), CHUNK):
        for row in conn.execute(
            select(contacts.c.id, contacts.c.paused_until, contacts.c.min_gap_days).where(
                contacts.c.id.in_(ids[start : start + CHUNK]),
                or_(contacts.c.paused_until.is_not(None), contacts.c.min_gap_days.is_not(None)),
            )
        ):
            paces[row.id] = Pace(row.paused_until, row.min_gap_days)
    return paces


def last_sent(conn: Connection, contact_ids: Sequence[int]) -> dict[int, datetime]:
    """Each contact's latest email handed to a provider, from any campaign (for min_gap).

    Read per enrollment, from the contacts' enrollments to their deliveries' index
    (ix_deliveries_counts): a join here let SQLite, without statistics, walk every
    sent delivery by status instead (60 ms a call with 20,000 sent, growing).
    """
    if not contact_ids:
        return {}
    latest = (
        select(func.max(deliveries.c.sent_at))
        .where(
            deliveries.c.enrollment_id == enrollments.c.id,
            # Statuses of an email that (may have) reached the contact: min_gap's reference.
            deliveries.c.status.in_(IN_FLIGHT),
        )
        .scalar_subquery()
    )
    found: dict[int, datetime] = {}
    for contact_id, at in conn.execute(
        select(enrollments.c.contact_id, latest).where(enrollments.c.contact_id.in_(_MANY)),
        {"many": list(contact_ids)},
    ):
        if at is not None and (contact_id not in found or at > found[contact_id]):
            found[contact_id] = at
    return found
