"""Double opt-in: confirming a sign-up, expiring the unconfirmed, and what the worker owes.

A sign-up with `confirm: double` (campaign.yaml, the sign-up API's `"confirm":
"double"`, `import`/`enroll --double-opt-in`) leaves a `confirmations` row and no
enrollment (planning/confirm_requests.py). The worker sends the confirmation email
(delivery/confirm_sending.py); the patient's POST on the confirm page calls `confirm`,
which plans the sequence in the same transaction, counting delays from the
confirmation, records `contacts.confirmed_at` beside the sign-up's `consent_at`, and
emits the `confirmed` webhook event. A request never confirmed is marked expired by
the worker's tick (`expire`) once `expires_at` has passed: it has no enrollment and no
delivery rows. Times are the engine's `now`.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, func, literal, select, update

from campaigns.errors import NotFoundError
from campaigns.planning.conditions import parse_attributes
from campaigns.planning.contacts import split_tags
from campaigns.planning.enroll import enroll_confirmed
from campaigns.planning.signups import Contact
from campaigns.storage.outbox import emit, listening
from campaigns.storage.publish import load_version
from campaigns.storage.statuses import WebhookEvent
from campaigns.storage.store import Store
from campaigns.storage.tables import confirmations, contacts, enrollments
from campaigns.storage.wakeup import announce_due

log = logging.getLogger("dripmail.confirm")


class Confirmed(enum.StrEnum):
    """What a POST on the confirm page did."""

    CONFIRMED = "confirmed"  # just now: the sequence is planned
    ALREADY = "already"  # confirmed before: nothing changed
    EXPIRED = "expired"  # too late: sign up again
    REFUSED = "refused"  # the address is suppressed (unsubscribed, bounced) or gone
    UNKNOWN = "unknown"  # no such request (erased, or never made)


@dataclass(frozen=True)
class Request:
    """A confirmation request as the confirm page shows it."""

    id: int
    contact_id: int
    campaign: str
    language: str | None
    confirmed_at: datetime | None
    expires_at: datetime
    expired: bool


def find(store: Store, confirmation_id: int, *, now: datetime) -> Request | None:
    """The request a confirm link names, or None; changes nothing (a GET)."""
    with store.connect() as conn:
        row = conn.execute(
            select(confirmations, contacts.c.language)
            .join(contacts, contacts.c.id == confirmations.c.contact_id)
            .where(confirmations.c.id == confirmation_id)
        ).first()
    if row is None:
        return None
    expired = row.confirmed_at is None and (row.expired_at is not None or row.expires_at <= now)
    return Request(
        row.id,
        row.contact_id,
        row.campaign,
        row.language,
        row.confirmed_at,
        row.expires_at,
        expired,
    )


def confirm(store: Store, confirmation_id: int, *, now: datetime) -> Confirmed:
    """Confirm the request (a POST from its link): plan the sequence from `now`.

    Idempotent: a second POST changes nothing and says ALREADY.
    """
    with store.begin() as conn:
        query = select(confirmations).where(confirmations.c.id == confirmation_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()  # two POSTs at once: the second waits, then ALREADY
        row = conn.execute(query).first()
        if row is None:
            return Confirmed.UNKNOWN
        if row.confirmed_at is not None:
            return Confirmed.ALREADY
        if row.expired_at is not None or row.expires_at <= now:
            return Confirmed.EXPIRED
        person = conn.execute(select(contacts).where(contacts.c.id == row.contact_id)).first()
        if person is None or person.email is None:  # erased meanwhile
            return Confirmed.REFUSED
        try:
            campaign = load_version(conn, row.campaign)
        except NotFoundError:
            return Confirmed.UNKNOWN
        contact = Contact(
            email=person.email,
            first_name=person.first_name,
            timezone=person.timezone,
            signed_up_at=now,  # delays count from the confirmation
            consent=person.consent_source or "",
            tags=tuple(split_tags(person.tags)),
            attributes=parse_attributes(person.attributes),
        )
        report = enroll_confirmed(conn, store, campaign, contact, now=now)
        if report.suppressed or report.unsubscribed:
            return Confirmed.REFUSED
        conn.execute(
            update(confirmations)
            .where(confirmations.c.id == row.id)
            .values(confirmed_at=now, send_due_at=None)
        )
        conn.execute(
            update(contacts).where(contacts.c.id == row.contact_id).values(confirmed_at=now)
        )
        enrollment_id = conn.scalar(
            select(enrollments.c.id).where(
                enrollments.c.contact_id == row.contact_id,
                enrollments.c.campaign == row.campaign,
            )
        )
        if listening(conn, WebhookEvent.CONFIRMED):
            payload = {
                "contact_id": row.contact_id,
                "enrollment_id": enrollment_id,
                "campaign": row.campaign,
            }
            emit(conn, WebhookEvent.CONFIRMED, [(row.contact_id, payload)], now=now)
        announce_due(conn)  # a `0d` first email goes at once
    log.info("confirmed: contact %d, enrollment %s", row.contact_id, enrollment_id)
    return Confirmed.CONFIRMED


def expire(conn: Connection, *, now: datetime) -> int:
    """Mark every request unconfirmed past its `expires_at` expired; how many."""
    result = conn.execute(
        update(confirmations)
        .where(
            confirmations.c.expires_at <= now,
            confirmations.c.confirmed_at.is_(None),
            confirmations.c.expired_at.is_(None),
        )
        .values(expired_at=now, send_due_at=None)
    )
    return result.rowcount or 0


def awaiting(store: Store, email: str, campaign: str) -> bool:
    """Whether the (normalised) address has a request for `campaign` not yet confirmed."""
    with store.connect() as conn:
        found = conn.scalar(
            select(confirmations.c.id)
            .join(contacts, contacts.c.id == confirmations.c.contact_id)
            .where(
                contacts.c.email == email,
                confirmations.c.campaign == campaign,
                confirmations.c.confirmed_at.is_(None),
                confirmations.c.expired_at.is_(None),
            )
        )
    return found is not None


# Built once: the worker's probe asks every second on SQLite (delivery/wakeups.py).
_OWED = (
    select(literal(1))
    .where(confirmations.c.send_due_at <= bindparam("now", type_=confirmations.c.send_due_at.type))
    .limit(1)
)


def confirmations_due(conn: Connection, now: datetime) -> bool:
    """Whether a confirmation email is owed at `now`: part of the worker's "anything
    due?" probe (one look at ix_confirmations_send_due)."""
    return conn.execute(_OWED, {"now": now}).first() is not None


@dataclass(frozen=True)
class ConfirmationCounts:
    """Sign-ups of one campaign by double opt-in state."""

    waiting: int = 0
    confirmed: int = 0
    expired: int = 0

    def line(self, campaign: str) -> str:
        """One line for `status` and `stats`."""
        return (
            f"{campaign}: double opt-in sign-ups {self.waiting} awaiting confirmation, "
            f"{self.confirmed} confirmed, {self.expired} expired"
        )


def confirmation_counts(
    conn: Connection, campaign: str | None = None
) -> dict[str, ConfirmationCounts]:
    """Per campaign (or only `campaign`): requests waiting, confirmed, and expired."""
    query = (
        select(
            confirmations.c.campaign,
            func.count().filter(
                confirmations.c.confirmed_at.is_(None), confirmations.c.expired_at.is_(None)
            ),
            func.count(confirmations.c.confirmed_at),
            func.count(confirmations.c.expired_at),
        )
        .group_by(confirmations.c.campaign)
        .order_by(confirmations.c.campaign)
    )
    if campaign:
        query = query.where(confirmations.c.campaign == campaign)
    rows = conn.execute(query)
    return {name: ConfirmationCounts(w, c, e) for name, w, c, e in rows}
