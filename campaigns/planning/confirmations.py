"""Double opt-in: confirming a sign-up, expiring the unconfirmed, and what the worker owes.

A sign-up with `confirm: double` (campaign.yaml, the sign-up API's `"confirm":
"double"`, `import`/`enroll --double-opt-in`) leaves a `confirmations` row and no
enrollment (planning/confirm_requests.py). The worker sends the confirmation email
(delivery/confirm_sending.py); the patient's POST on the confirm page calls `confirm`,
which applies what a known contact's sign-up held (tags, attributes, language;
planning/held_changes.py) and plans the sequence in the same transaction, counting
delays from the confirmation, records `contacts.confirmed_at` beside the sign-up's `consent_at`, and
emits the `confirmed` webhook event. A request never confirmed is marked expired by
the worker's tick (`expire`) once `expires_at` has passed: it has no enrollment and no
delivery rows. Times are the engine's `now`.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, bindparam, func, literal, or_, select, update

from campaigns.errors import NotFoundError
from campaigns.planning.conditions import parse_attributes
from campaigns.planning.enroll import enroll_confirmed
from campaigns.planning.held_changes import read_held, still_current
from campaigns.planning.signups import Contact
from campaigns.rendering.tokens import ConfirmClaim
from campaigns.storage.outbox import emit, listening
from campaigns.storage.publish import load_version
from campaigns.storage.statuses import WebhookEvent
from campaigns.storage.store import Store
from campaigns.storage.tables import confirmations, contacts, enrollments
from campaigns.storage.wakeup import announce_due

log = logging.getLogger("dripmail.confirm")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Confirmed(enum.StrEnum):
    """What a POST on the confirm page did."""

    CONFIRMED = "confirmed"  # just now: the sequence is planned
    ALREADY = "already"  # confirmed before: nothing changed
    EXPIRED = "expired"  # too late: sign up again
    REFUSED = "refused"  # the address is suppressed (unsubscribed, bounced) or gone
    UNKNOWN = "unknown"  # its campaign is no longer published


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


def round_of(requested_at: datetime) -> int:
    """A request's round as its links carry it: `requested_at` in whole microseconds
    since the epoch (exact, unlike a float timestamp). A new round (a sign-up after
    the old one expired or ended) moves `requested_at`, so the old round's links die."""
    return (requested_at - _EPOCH) // timedelta(microseconds=1)


def claim_of(row) -> ConfirmClaim:
    """What a confirm link for this `confirmations` row names."""
    return ConfirmClaim(row.id, row.contact_id, row.campaign, round_of(row.requested_at))


def _matches(row, claim: ConfirmClaim) -> bool:
    """Whether the row is still the request the link was made for: same contact, same
    campaign, same round (not another sign-up that got its id, nor a later round)."""
    return (
        row.contact_id == claim.contact_id
        and row.campaign == claim.campaign
        and round_of(row.requested_at) == claim.round
    )


def find(store: Store, claim: ConfirmClaim, *, now: datetime) -> Request:
    """The request a confirm link names; changes nothing (a GET). A link whose request
    is gone, or whose id now names another request or round, shows as expired, naming
    only what the link itself says."""
    with store.connect() as conn:
        row = conn.execute(
            select(confirmations, contacts.c.language)
            .join(contacts, contacts.c.id == confirmations.c.contact_id)
            .where(confirmations.c.id == claim.confirmation_id)
        ).first()
    if row is None or not _matches(row, claim):
        # Ours (the signature holds), but its request is gone (expired and forgotten) or
        # the id is another request's now: as for any expired link, sign up again.
        ended = now if row is None else row.expires_at
        return Request(
            claim.confirmation_id, claim.contact_id, claim.campaign, None, None, ended, True
        )
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


def confirm(store: Store, claim: ConfirmClaim, *, now: datetime) -> Confirmed:
    """Confirm the request (a POST from its link): apply what the sign-up held for a
    known contact, then plan the sequence from `now` (so it reads the new tags,
    attributes and language).

    Idempotent: a second POST changes nothing and says ALREADY. A link of another
    request or an earlier round says EXPIRED and changes nothing.
    """
    with store.begin() as conn:
        query = select(confirmations).where(confirmations.c.id == claim.confirmation_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()  # two POSTs at once: the second waits, then ALREADY
        row = conn.execute(query).first()
        if row is None or not _matches(row, claim):
            return Confirmed.EXPIRED  # gone, or another request's (or round's) id now
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
        # The contact is known here: enrolling it adds these tags and attributes and sets
        # this language first, as a single opt-in sign-up of a known contact does (unless
        # the address is suppressed), then plans with them.
        # A held value never overwrites one changed since the sign-up (held_changes.py).
        now_values = (person.language, parse_attributes(person.attributes))
        held = still_current(read_held(row.held_changes), now_values)
        contact = Contact(
            email=person.email,
            first_name=person.first_name,
            timezone=person.timezone,
            signed_up_at=now,  # delays count from the confirmation
            consent=person.consent_source or "",
            tags=held.tags,
            attributes=held.attributes,
            language=held.language,
        )
        report = enroll_confirmed(conn, store, campaign, contact, now=now)
        if report.suppressed or report.unsubscribed:
            return Confirmed.REFUSED
        conn.execute(
            update(confirmations)
            .where(confirmations.c.id == row.id)
            .values(confirmed_at=now, send_due_at=None, held_changes=None)  # applied
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


def expire(conn: Connection, *, now: datetime) -> list[int]:
    """Mark every request unconfirmed past its `expires_at` expired; their contacts' ids
    (planning/expired_signups.py then erases those who have nothing else)."""
    result = conn.execute(
        update(confirmations)
        .where(
            confirmations.c.expires_at <= now,
            confirmations.c.confirmed_at.is_(None),
            confirmations.c.expired_at.is_(None),
        )
        .values(expired_at=now, send_due_at=None, held_changes=None)  # never to apply
        .returning(confirmations.c.contact_id)
    )
    return list(result.scalars())


def clear_left_held(conn: Connection) -> int:
    """Clear held changes left on requests already expired or confirmed; how many.

    Code before this version's expire and confirm (an old worker or `serve` during a
    rolling upgrade) left them; on a request kept beside an erased contact's tombstone
    they would stay for good. One scan of `confirmations` (no index on held_changes)."""
    result = conn.execute(
        update(confirmations)
        .where(
            confirmations.c.held_changes.is_not(None),
            or_(confirmations.c.expired_at.is_not(None), confirmations.c.confirmed_at.is_not(None)),
        )
        .values(held_changes=None)
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
