"""Suppressions and unsubscribes: who is never mailed again, and cancelling what was pending.

A suppression holds an HMAC of the normalised address (Store.address_hash), never the
address: an erased, bounced or unsubscribed address is recognised on re-import without
being kept. The dispatcher checks suppressions when it claims a delivery and again right
before hand-off; cancelling pending deliveries here makes `dripmail status` tell the
truth at once instead of when their due time comes.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from campaigns.compliance.event_model import SUPPRESSING
from campaigns.compliance.undo_record import UndoRecord, remember
from campaigns.planning.confirm_requests import end_requests
from campaigns.rendering.tokens import UnsubscribeClaim
from campaigns.storage.outbox import emit
from campaigns.storage.statuses import (
    PENDING,
    CampaignKind,
    DeliveryStatus,
    EnrollmentStatus,
    WebhookEvent,
)
from campaigns.storage.store import Store
from campaigns.storage.tables import (
    campaigns,
    contacts,
    deliveries,
    enrollments,
    events,
    suppressions,
)

log = logging.getLogger("dripmail.suppress")

DRIPMAIL_PROVIDER = "dripmail"


class Scope(enum.StrEnum):
    """What an unsubscribe leaves."""

    ALL = "all"  # every email of this sender (RFC 8058 one-click; a global suppression)
    CAMPAIGN = "campaign"  # only the campaign the email came from
    NEWSLETTER = "newsletter"  # every newsletter, no drip campaign (campaigns/newsletter.py)


# Event types dripmail's own unsubscribe page records (provider "dripmail"); stats count
# each as "unsubscribed". They stay outside the provider model's kinds on purpose: the
# scope is the type (only ALL suppresses the address), "I changed my mind" finds and
# re-types them (compliance/undo.py), and their keys name the type.
EVENT_TYPES = {
    Scope.ALL: "unsubscribe",
    Scope.CAMPAIGN: "campaign_unsubscribe",
    Scope.NEWSLETTER: "newsletter_unsubscribe",
}
# Stored event types after which the address is suppressed: every provider's suppressing
# kinds (compliance/event_model.py), and dripmail's own unsubscribe from everything.
SUPPRESSING_TYPES = frozenset({*(kind.value for kind in SUPPRESSING), EVENT_TYPES[Scope.ALL]})


def insert_new(conn: Connection, table: Table, values: Mapping[str, Any]) -> bool:
    """Insert one row unless its unique key exists already; True when it was new.

    ON CONFLICT DO NOTHING rather than catching the error, so a concurrent duplicate
    (a webhook retried while the first delivery is still being stored) neither fails
    nor aborts the surrounding transaction.
    """
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        module = sqlite if dialect == "sqlite" else postgresql
        # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT.
        key = next(iter(table.primary_key.columns))
        statement = module.insert(table).values(**values).on_conflict_do_nothing().returning(key)
        return conn.execute(statement).first() is not None
    try:
        with conn.begin_nested():
            conn.execute(insert(table).values(**values))
    except IntegrityError:
        return False
    return True


def add_suppression(conn: Connection, address_hash: str, reason: str, *, now: datetime) -> bool:
    """Suppress an address by its keyed hash; True when it was not suppressed before.

    The first reason stays: a later unsubscribe does not hide that the address bounced.
    """
    return insert_new(
        conn,
        suppressions,
        {"address_hash": address_hash, "reason": reason[:32], "created_at": now},
    )


def is_suppressed(store: Store, email: str) -> bool:
    """Whether this address may never be mailed (by its keyed hash)."""
    with store.connect() as conn:
        return (
            conn.scalar(
                select(suppressions.c.address_hash).where(
                    suppressions.c.address_hash == store.address_hash(email)
                )
            )
            is not None
        )


def suppression_of(conn: Connection, address_hash: str) -> tuple[str, datetime] | None:
    """(reason, created_at) of an address's suppression, if any."""
    row = conn.execute(
        select(suppressions.c.reason, suppressions.c.created_at).where(
            suppressions.c.address_hash == address_hash
        )
    ).first()
    return (row.reason, row.created_at) if row else None


def contact_ids_for(conn: Connection, email: str) -> list[int]:
    """Contacts holding this (already normalised) address: one, or none."""
    return list(conn.scalars(select(contacts.c.id).where(contacts.c.email == email)))


def cancel_pending(
    conn: Connection,
    *,
    enrollment_ids: Iterable[int],
    reason: str,
    now: datetime,
) -> int:
    """scheduled/claimed -> cancelled for these enrollments; returns how many rows changed.

    Rows already `sending` were handed to the provider and are left alone. The lease is
    cleared so the worker holding a claimed row can no longer finish it (its updates
    are fenced on lease_owner).
    """
    ids = list(enrollment_ids)
    if not ids:
        return 0
    return conn.execute(
        update(deliveries)
        .where(
            deliveries.c.enrollment_id.in_(ids),
            deliveries.c.status.in_(PENDING),
        )
        .values(
            status=DeliveryStatus.CANCELLED,
            lease_owner=None,
            lease_expires_at=None,
            error=reason,
            updated_at=now,
        )
    ).rowcount


def enrollment_ids_of(conn: Connection, contact_ids: Iterable[int]) -> list[int]:
    ids = list(contact_ids)
    if not ids:
        return []
    return list(conn.scalars(select(enrollments.c.id).where(enrollments.c.contact_id.in_(ids))))


def suppress_contacts(
    conn: Connection, store: Store, email: str, reason: str, *, now: datetime
) -> tuple[bool, int]:
    """Suppress an address and cancel its contact's pending deliveries in every campaign.

    Returns (newly suppressed, deliveries cancelled). `email` is the normalised address.
    """
    new = add_suppression(conn, store.address_hash(email), reason, now=now)
    cancelled = cancel_pending(
        conn,
        enrollment_ids=enrollment_ids_of(conn, contact_ids_for(conn, email)),
        reason=f"the address is suppressed ({reason})",
        now=now,
    )
    return new, cancelled


@dataclass(frozen=True)
class UnsubscribeResult:
    """What an unsubscribe did; `changed` is False when it had been done before."""

    scope: Scope
    changed: bool
    cancelled: int
    known_contact: bool


def unsubscribe(
    store: Store, claim: UnsubscribeClaim, scope: Scope, *, now: datetime
) -> UnsubscribeResult:
    """Carry out an unsubscribe from a signed link, all in one transaction; idempotent.

    ALL (RFC 8058 one-click, or "leave all email" on the page): suppress the address and
    cancel every pending delivery of the contact in every campaign. CAMPAIGN: mark that
    enrollment `unsubscribed` and cancel its pending deliveries; nothing global.
    NEWSLETTER: leave every newsletter, keep every drip campaign. Each
    way an event (provider "dripmail") names the delivery the link came in, so stats can
    count unsubscribes per step; the same link used twice records it once.
    """
    with store.begin() as conn:
        contact = conn.execute(
            select(contacts.c.id, contacts.c.email).where(contacts.c.id == claim.contact_id)
        ).first()
        if contact is None:  # a test send's link (contact 0), or a contact since deleted
            return UnsubscribeResult(scope, False, 0, False)
        # The event first: what this unsubscribe cancels names it, so that "I changed my
        # mind" (campaigns/compliance/undo.py) restores exactly that.
        event_id = unsubscribe_event(conn, claim, scope, now=now)
        reason = cancel_reason(scope, event_id)
        done = UndoRecord(event_id, str(scope), now)
        if scope is Scope.NEWSLETTER:
            changed, cancelled = leave_newsletter(conn, contact.id, now=now, reason=reason)
            remember(conn, replace(done, newsletter=changed))
            if changed:
                emit_unsubscribed(
                    conn, contact.id, scope, claim.campaign, claim.delivery_id, now=now
                )
            log.info("unsubscribe: contact %d, scope newsletter", claim.contact_id)
            return UnsubscribeResult(scope, changed, cancelled, True)
        suppressed = False
        if scope is Scope.ALL:
            if contact.email is not None:  # an erased contact is suppressed already
                suppressed = add_suppression(
                    conn, store.address_hash(contact.email), "unsubscribe", now=now
                )
            chosen = enrollment_ids_of(conn, [contact.id])
        else:
            chosen = list(
                conn.scalars(
                    select(enrollments.c.id).where(
                        enrollments.c.contact_id == contact.id,
                        enrollments.c.campaign == claim.campaign,
                    )
                )
            )
        cancelled = cancel_pending(conn, enrollment_ids=chosen, reason=reason, now=now)
        # A sign-up still awaiting its double opt-in confirmation ends too.
        end_requests(conn, contact.id, None if scope is Scope.ALL else claim.campaign, now=now)
        left = list(
            conn.scalars(
                select(enrollments.c.id).where(
                    enrollments.c.id.in_(chosen), enrollments.c.status == EnrollmentStatus.ACTIVE
                )
            )
        )
        if left:
            conn.execute(
                update(enrollments)
                .where(enrollments.c.id.in_(left))
                .values(status=EnrollmentStatus.UNSUBSCRIBED)
            )
        changed = suppressed or bool(left)
        remember(conn, replace(done, suppressed=suppressed, enrollments=tuple(left)))
        if changed:
            emit_unsubscribed(conn, contact.id, scope, claim.campaign, claim.delivery_id, now=now)
    log.info(
        "unsubscribe: contact %d, scope %s, %d pending deliveries cancelled",
        claim.contact_id,
        scope,
        cancelled,
    )
    return UnsubscribeResult(scope, changed, cancelled, True)


def emit_unsubscribed(
    conn: Connection,
    contact_id: int,
    scope: str,
    campaign: str | None,
    delivery_id: int | None,
    *,
    now: datetime,
) -> None:
    """The `unsubscribed` webhook event, in the unsubscribe's transaction. `scope` is
    all, campaign or newsletter (or the provider's kind, for a provider's unsubscribe)."""
    data = {"contact_id": contact_id, "scope": str(scope), "campaign": campaign}
    data["delivery_id"] = delivery_id
    emit(conn, WebhookEvent.UNSUBSCRIBED, [(contact_id, data)], now=now)


def unsubscribe_key(claim: UnsubscribeClaim, scope: Scope) -> str:
    """The event's unique key: the same link and choice count once."""
    event_type = EVENT_TYPES[scope]
    return (
        f"dripmail:{event_type}:{claim.contact_id}:{claim.delivery_id or '-'}:{claim.campaign}"
    )[:200]


def record_unsubscribe_event(
    conn: Connection, claim: UnsubscribeClaim, scope: Scope, *, now: datetime
) -> bool:
    """The unsubscribe as an event, keyed so the same link and choice count once."""
    values: dict[str, Any] = {
        "provider": DRIPMAIL_PROVIDER,
        "provider_event_id": unsubscribe_key(claim, scope),
        "delivery_id": delivery_of(conn, claim),
        "type": EVENT_TYPES[scope],
        "occurred_at": now,
        "created_at": now,
    }
    if "campaign" in events.c:  # campaign-level attribution, once the store has the column
        values["campaign"] = claim.campaign
    return insert_new(conn, events, values)


def unsubscribe_event(
    conn: Connection, claim: UnsubscribeClaim, scope: Scope, *, now: datetime
) -> int:
    """Record the unsubscribe as an event (once per link and choice); the event's id."""
    record_unsubscribe_event(conn, claim, scope, now=now)
    key = unsubscribe_key(claim, scope)
    return conn.scalar(select(events.c.id).where(events.c.provider_event_id == key))


def cancel_reason(scope: Scope, event_id: int) -> str:
    """The `error` text of a delivery this unsubscribe cancelled: it names the event."""
    if scope is Scope.NEWSLETTER:
        return f"left the newsletter (event {event_id})"
    return f"unsubscribed ({scope}, event {event_id})"


def delivery_of(conn: Connection, claim: UnsubscribeClaim) -> int | None:
    """The token's delivery id, when it still names a delivery of that contact."""
    if claim.delivery_id is None:
        return None
    try:
        delivery_id = int(claim.delivery_id)
    except (TypeError, ValueError):
        return None
    found = conn.scalar(
        select(deliveries.c.id)
        .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
        .where(deliveries.c.id == delivery_id, enrollments.c.contact_id == claim.contact_id)
    )
    return found


def leave_newsletter(
    conn: Connection, contact_id: int, *, now: datetime, reason: str = "left the newsletter"
) -> tuple[bool, int]:
    """The contact leaves every newsletter, not their drip campaigns: (changed, cancelled)."""
    changed = (
        conn.execute(
            update(contacts)
            .where(contacts.c.id == contact_id, contacts.c.newsletter_unsubscribed_at.is_(None))
            .values(newsletter_unsubscribed_at=now)
        ).rowcount
        > 0
    )
    names = select(campaigns.c.name).where(campaigns.c.kind == CampaignKind.NEWSLETTER)
    ids = conn.scalars(
        select(enrollments.c.id).where(
            enrollments.c.contact_id == contact_id, enrollments.c.campaign.in_(names)
        )
    )
    return changed, cancel_pending(conn, enrollment_ids=ids, reason=reason, now=now)
