"""The preference centre's choices: pause, fewer emails, language, discreet emails.

A patient reaches them through the signed link of any email (web/preference_pages.py);
the link's claim names the contact and the delivery it came in. Each choice is a write
on the contact (migration 0022's columns, and `contacts.language`), idempotent: asking
again for what is already so changes nothing and records nothing. A change is recorded
as an event (provider "dripmail", the link's delivery), as unsubscribes are.

Pausing sets `contacts.paused_until` and moves every pending email of the contact, in
every campaign, later by the length of the pause (keeping their spacing, as `resume`
does: planning/pause.shift_pending), so nothing is due before the pause ends and the
backlog does not arrive at once after it. "Resume now" moves them back by what is left.
"""

from __future__ import annotations

import enum
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, select, update

from campaigns.authoring.translations import campaign_languages
from campaigns.compliance.suppressions import DRIPMAIL_PROVIDER, delivery_of, insert_new
from campaigns.errors import InputError, NotFoundError
from campaigns.planning.pause import shift_pending
from campaigns.rendering.tokens import UnsubscribeClaim
from campaigns.storage.publish import load_version
from campaigns.storage.statuses import DeliveryStatus, EnrollmentStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import contacts, deliveries, enrollments, events

# Whole weeks, so every moved email keeps its weekday and hour and stays in a weekday
# window: "a month" is 4 weeks, "3 months" 13.
PAUSES: dict[str, timedelta] = {
    "2w": timedelta(weeks=2),
    "1m": timedelta(weeks=4),
    "3m": timedelta(weeks=13),
}
FEWER_GAP_DAYS = 7  # "fewer emails": at least a week between two emails, across campaigns
# Asking again for the pause in force (a double click, a reload that re-posts) is no change.
SAME_PAUSE = timedelta(days=1)


class Choice(enum.StrEnum):
    """The `choice` field of the preference centre's forms."""

    PAUSE = "pause"
    RESUME = "resume"
    FEWER = "fewer"
    LANGUAGE = "language"
    DISCREET = "discreet"
    DATA = "data"
    ERASE = "erase"


# The event type each change records (provider "dripmail"); stats count none of them.
PAUSED, RESUMED = "pref_paused", "pref_resumed"
FEWER_ON, FEWER_OFF = "pref_fewer_on", "pref_fewer_off"
LANGUAGE_SET = "pref_language"
DISCREET_ON, DISCREET_OFF = "pref_discreet_on", "pref_discreet_off"


@dataclass(frozen=True)
class Change:
    """What a choice did: `changed` is False when it was so already (nothing recorded)."""

    choice: Choice
    changed: bool
    moved: int = 0  # pending emails moved (pause, resume)
    paused_until: datetime | None = None


def record_choice(conn: Connection, claim: UnsubscribeClaim, kind: str, *, now: datetime) -> int:
    """The change as an event naming the delivery the link came in; the event's id."""
    # The time and a nonce: two changes in one second (2 weeks, then 3 months) are two.
    key = f"dripmail:{kind}:{claim.contact_id}:{now.isoformat()}:{secrets.token_hex(4)}"
    values: dict[str, Any] = {
        "provider": DRIPMAIL_PROVIDER,
        "provider_event_id": key[:200],
        "delivery_id": delivery_of(conn, claim),
        "type": kind,
        "occurred_at": now,
        "created_at": now,
        "campaign": claim.campaign,
    }
    insert_new(conn, events, values)
    return conn.scalar(select(events.c.id).where(events.c.provider_event_id == key[:200]))


def contact_of(conn: Connection, claim: UnsubscribeClaim) -> Row | None:
    """The link's contact with its choices; None when it names nobody we hold (erased
    contacts keep their row, without an address)."""
    row = conn.execute(
        select(
            contacts.c.id,
            contacts.c.email,
            contacts.c.language,
            contacts.c.discreet,
            contacts.c.paused_until,
            contacts.c.min_gap_days,
        ).where(contacts.c.id == claim.contact_id)
    ).first()
    return row if row is not None and row.email is not None else None


def pause_until(contact: Row, now: datetime) -> datetime | None:
    """The end of the contact's pause, when one is in force at `now`."""
    until = contact.paused_until
    return until if until is not None and until > now else None


def pause(store: Store, claim: UnsubscribeClaim, length: str, *, now: datetime) -> Change:
    """No email for `length` (a key of PAUSES) from `now`; pending emails move with it."""
    if length not in PAUSES:
        raise InputError(f"pause for {length!r}: choose one of {', '.join(PAUSES)}", field="for")
    target = now + PAUSES[length]
    with store.begin() as conn:
        contact = contact_of(conn, claim)
        if contact is None:
            return Change(Choice.PAUSE, False)
        current = pause_until(contact, now)
        if current is not None and abs(target - current) < SAME_PAUSE:
            return Change(Choice.PAUSE, False, paused_until=current)
        _set(conn, contact.id, paused_until=target)
        # Emails already moved for the pause in force move by the difference only.
        moved = shift_contact(
            conn, contact.id, target - (current or now), now=now, not_before=target
        )
        record_choice(conn, claim, PAUSED, now=now)
    return Change(Choice.PAUSE, True, moved, target)


def resume(store: Store, claim: UnsubscribeClaim, *, now: datetime) -> Change:
    """End the contact's pause now; pending emails move back by what was left of it."""
    with store.begin() as conn:
        contact = contact_of(conn, claim)
        current = None if contact is None else pause_until(contact, now)
        if contact is None or current is None:
            return Change(Choice.RESUME, False)
        _set(conn, contact.id, paused_until=None)
        moved = shift_contact(conn, contact.id, now - current, now=now)
        record_choice(conn, claim, RESUMED, now=now)
    return Change(Choice.RESUME, True, moved)


def fewer(store: Store, claim: UnsubscribeClaim, on: bool, *, now: datetime) -> Change:
    """At least FEWER_GAP_DAYS between any two of the contact's emails (on), or not (off)."""
    with store.begin() as conn:
        contact = contact_of(conn, claim)
        if contact is None or (contact.min_gap_days is not None) == on:
            return Change(Choice.FEWER, False)
        _set(conn, contact.id, min_gap_days=FEWER_GAP_DAYS if on else None)
        record_choice(conn, claim, FEWER_ON if on else FEWER_OFF, now=now)
    return Change(Choice.FEWER, True)


def discreet(store: Store, claim: UnsubscribeClaim, on: bool, *, now: datetime) -> Change:
    """Neutral subjects and From name from the contact's next email (on), or not (off)."""
    with store.begin() as conn:
        contact = contact_of(conn, claim)
        if contact is None or bool(contact.discreet) == on:
            return Change(Choice.DISCREET, False)
        _set(conn, contact.id, discreet=on)
        record_choice(conn, claim, DISCREET_ON if on else DISCREET_OFF, now=now)
    return Change(Choice.DISCREET, True)


def offered_languages(conn: Connection, campaign: str) -> list[str]:
    """The languages the link's campaign is written in (default first); [] if unpublished."""
    try:
        return campaign_languages(load_version(conn, campaign).spec)
    except NotFoundError:
        return []


def set_language(store: Store, claim: UnsubscribeClaim, tag: str, *, now: datetime) -> Change:
    """The contact reads `tag`, one of the languages of the link's campaign."""
    with store.begin() as conn:
        offered = offered_languages(conn, claim.campaign)
        if tag not in offered:
            choices = ", ".join(offered) or "none"
            raise InputError(f"language {tag!r}: choose one of {choices}", field="language")
        contact = contact_of(conn, claim)
        if contact is None or contact.language == tag:
            return Change(Choice.LANGUAGE, False)
        _set(conn, contact.id, language=tag)
        record_choice(conn, claim, LANGUAGE_SET, now=now)
    return Change(Choice.LANGUAGE, True)


def _set(conn: Connection, contact_id: int, **values: Any) -> None:
    conn.execute(update(contacts).where(contacts.c.id == contact_id).values(**values))


def shift_contact(
    conn: Connection,
    contact_id: int,
    by: timedelta,
    *,
    now: datetime,
    not_before: datetime | None = None,
) -> int:
    """Move the contact's pending emails in every active enrollment by `by`; how many.

    A claimed row goes back to the queue first, its lease cleared, so the worker holding
    it can no longer hand it off (its writes are fenced on the lease owner).
    """
    by_campaign: dict[str, list[int]] = defaultdict(list)
    for enrollment_id, campaign in conn.execute(
        select(enrollments.c.id, enrollments.c.campaign).where(
            enrollments.c.contact_id == contact_id,
            enrollments.c.status == EnrollmentStatus.ACTIVE,
        )
    ):
        by_campaign[campaign].append(enrollment_id)
    ids = [i for chosen in by_campaign.values() for i in chosen]
    if not ids:
        return 0
    conn.execute(
        update(deliveries)
        .where(deliveries.c.enrollment_id.in_(ids), deliveries.c.status == DeliveryStatus.CLAIMED)
        .values(status=DeliveryStatus.SCHEDULED, lease_owner=None, lease_expires_at=None)
    )
    moved = 0
    for name, chosen in sorted(by_campaign.items()):
        campaign = load_version(conn, name)
        moved += shift_pending(conn, campaign, chosen, by, now=now, not_before=not_before)
    return moved
