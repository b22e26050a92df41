""" "I changed my mind": undoing an unsubscribe from the same signed link, within 30 days.

Exactly what that unsubscribe changed comes back, and nothing else: the deliveries it
cancelled (their `error` names its event) that are still due in the future and whose step
the campaign still has, the enrollments it marked unsubscribed, the suppression it
created, leaving the newsletter (campaigns/compliance/undo_record.py keeps that record).
A suppression that was there before (a bounce, staff, an erasure) stays. The contact's
consent is recorded anew with the time; the unsubscribe event is kept, marked undone, so
stats stop counting it and the same link can unsubscribe again later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, select, update

from campaigns.compliance.suppressions import (
    DRIPMAIL_PROVIDER,
    EVENT_TYPES,
    SUPPRESSING_TYPES,
    Scope,
    cancel_reason,
    insert_new,
    unsubscribe_key,
)
from campaigns.compliance.undo_record import UNDO_DAYS, forget_record, recall
from campaigns.errors import NotFoundError
from campaigns.rendering.tokens import UnsubscribeClaim
from campaigns.storage.publish import load_version
from campaigns.storage.statuses import CampaignStatus, DeliveryStatus, EnrollmentStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import (
    campaigns,
    contacts,
    deliveries,
    enrollments,
    events,
    suppressions,
)

__all__ = [
    "CONSENT_SOURCE",
    "RESUBSCRIBE",
    "UndoResult",
    "Undoable",
    "undo_unsubscribe",
    "undoable",
]

log = logging.getLogger("dripmail.suppress")

RESUBSCRIBE = "resubscribe"  # the event type an undo records
UNDONE = "_undone"  # appended to the type of an unsubscribe event once undone
CONSENT_SOURCE = "changed their mind on the unsubscribe page"


@dataclass(frozen=True)
class Undoable:
    """The unsubscribe made from this link that "I changed my mind" would undo."""

    event_id: int
    scope: Scope
    at: datetime
    delivery_id: int | None
    campaign: str | None


@dataclass(frozen=True)
class UndoResult:
    """What an undo did: `scope` None when there was nothing to undo; `expired` when the
    unsubscribe was more than UNDO_DAYS ago (then nothing changed)."""

    scope: Scope | None
    restored: int = 0
    expired: bool = False


def _latest(conn: Connection, claim: UnsubscribeClaim) -> Undoable | None:
    """The newest unsubscribe made from this link (any choice) that is not undone."""
    keys = {unsubscribe_key(claim, scope): scope for scope in Scope}
    row = conn.execute(
        select(
            events.c.id,
            events.c.provider_event_id,
            events.c.occurred_at,
            events.c.delivery_id,
            events.c.campaign,
        )
        .where(events.c.provider_event_id.in_(list(keys)))
        .order_by(events.c.occurred_at.desc(), events.c.id.desc())
    ).first()
    if row is None:
        return None
    return Undoable(
        row.id, keys[row.provider_event_id], row.occurred_at, row.delivery_id, row.campaign
    )


def undoable(store: Store, claim: UnsubscribeClaim, *, now: datetime) -> Undoable | None:
    """The unsubscribe this link may still undo (within UNDO_DAYS, its record kept)."""
    with store.connect() as conn:
        found = _latest(conn, claim)
        if found is None or found.at < now - timedelta(days=UNDO_DAYS):
            return None
        return found if recall(conn, found.event_id) is not None else None


def _live_steps(conn: Connection, names: set[str]) -> dict[str, set[str]]:
    """Each campaign's step keys in its current version: a removed step never comes back."""
    steps = {}
    for name in names:
        try:
            steps[name] = {step.key for step in load_version(conn, name).steps}
        except NotFoundError:
            steps[name] = set()
    return steps


def _restore_deliveries(
    conn: Connection, found: Undoable, contact_id: int, *, now: datetime
) -> int:
    """Cancelled by this event, still in the future, of a step the campaign still has."""
    rows = conn.execute(
        select(deliveries.c.id, deliveries.c.step_key, enrollments.c.campaign)
        .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
        .where(
            enrollments.c.contact_id == contact_id,
            deliveries.c.status == DeliveryStatus.CANCELLED,
            deliveries.c.error == cancel_reason(found.scope, found.event_id),
            deliveries.c.due_at > now,
        )
    ).all()
    steps = _live_steps(conn, {row.campaign for row in rows})
    ids = [row.id for row in rows if row.step_key in steps[row.campaign]]
    if not ids:
        return 0
    return conn.execute(
        update(deliveries)
        .where(deliveries.c.id.in_(ids), deliveries.c.status == DeliveryStatus.CANCELLED)
        .values(status=DeliveryStatus.SCHEDULED, error=None, updated_at=now)
    ).rowcount


def _restore_enrollments(conn: Connection, ids: tuple[int, ...]) -> None:
    """Back to active, or paused when their campaign has been paused since."""
    if not ids:
        return
    rows = conn.execute(
        select(enrollments.c.id, campaigns.c.status, campaigns.c.paused_at)
        .join(campaigns, campaigns.c.name == enrollments.c.campaign, isouter=True)
        .where(enrollments.c.id.in_(ids), enrollments.c.status == EnrollmentStatus.UNSUBSCRIBED)
    ).all()
    for row in rows:
        values: dict[str, Any] = {"status": EnrollmentStatus.ACTIVE}
        if row.status == CampaignStatus.PAUSED:
            values = {"status": EnrollmentStatus.PAUSED, "paused_at": row.paused_at}
        conn.execute(update(enrollments).where(enrollments.c.id == row.id).values(**values))


def _suppressed_since(conn: Connection, contact_id: int, event_id: int) -> bool:
    """Whether another event on the contact's emails since this one also suppresses them.

    A later one-click unsubscribe, a bounce or a complaint asks for the same suppression
    on its own account; undoing this unsubscribe must not lift it.
    """
    return (
        conn.scalar(
            select(events.c.id)
            .join(deliveries, deliveries.c.id == events.c.delivery_id)
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .where(
                enrollments.c.contact_id == contact_id,
                events.c.id > event_id,
                events.c.type.in_(SUPPRESSING_TYPES),
            )
            .limit(1)
        )
        is not None
    )


def undo_unsubscribe(store: Store, claim: UnsubscribeClaim, *, now: datetime) -> UndoResult:
    """Undo the newest unsubscribe made from this link, in one transaction; idempotent."""
    with store.begin() as conn:
        found = _latest(conn, claim)
        contact = conn.execute(
            select(contacts.c.id, contacts.c.email).where(contacts.c.id == claim.contact_id)
        ).first()
        if found is None or contact is None or contact.email is None:
            return UndoResult(None)  # nothing to undo, or the contact was erased since
        record = recall(conn, found.event_id)
        if record is None or found.at < now - timedelta(days=UNDO_DAYS):
            return UndoResult(found.scope, expired=True)
        if record.suppressed and not _suppressed_since(conn, contact.id, found.event_id):
            conn.execute(
                delete(suppressions).where(
                    suppressions.c.address_hash == store.address_hash(contact.email)
                )
            )
        if record.newsletter:
            conn.execute(
                update(contacts)
                .where(contacts.c.id == contact.id)
                .values(newsletter_unsubscribed_at=None)
            )
        _restore_enrollments(conn, record.enrollments)
        restored = _restore_deliveries(conn, found, contact.id, now=now)
        conn.execute(
            update(contacts)
            .where(contacts.c.id == contact.id)
            .values(consent_source=CONSENT_SOURCE, consent_at=now)
        )
        # The unsubscribe stays on record, marked undone and re-keyed: stats no longer count
        # it, and the same link and choice can unsubscribe again as a new event.
        key = conn.scalar(select(events.c.provider_event_id).where(events.c.id == found.event_id))
        conn.execute(
            update(events)
            .where(events.c.id == found.event_id)
            .values(
                provider_event_id=f"undone:{found.event_id}:{key}"[:200],
                type=f"{EVENT_TYPES[found.scope]}{UNDONE}",
            )
        )
        insert_new(
            conn,
            events,
            {
                "provider": DRIPMAIL_PROVIDER,
                "provider_event_id": f"dripmail:{RESUBSCRIBE}:{found.event_id}",
                "delivery_id": found.delivery_id,
                "type": RESUBSCRIBE,
                "occurred_at": now,
                "created_at": now,
                "campaign": found.campaign,
            },
        )
        forget_record(conn, found.event_id)
    log.info(
        "resubscribe: contact %d undid its %s unsubscribe, %d deliveries restored",
        claim.contact_id,
        found.scope,
        restored,
    )
    return UndoResult(found.scope, restored)
