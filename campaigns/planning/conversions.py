"""Goals reached: contacts' events recorded, their enrollments converted, pending emails cancelled.

An event (booked) arrives by the events API, `dripmail contacts event` or an import
column. In the transaction that records it, every live (active or paused) enrollment of
that contact whose campaign has a goal naming the event, with the event at or after
sign-up and within the goal's `within`, becomes `converted`, and its pending
deliveries `cancelled`. A delivery already `sending` was handed to a sender and is left
to finish; a `claimed` one is cancelled with its lease cleared, so the worker holding
it can no longer mark it `sending` (every such update is fenced on the lease owner:
campaigns/delivery/leases.py).

Idempotent: an event with the sender's `event_id` is recorded once (a unique column);
one without is a repeat when the contact already has that event at that very time.
A well-formed name that no published campaign's goal uses is refused (InputError on
`event`): the booking system's integrator learns of a misspelt name (`booking` for
`booked`) on the first request, instead of the patient receiving "book now" for weeks.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from campaigns.authoring.goals import Goal, Goals, check_event_name, goal_for
from campaigns.authoring.spec import CAMPAIGN_FILE, Campaign
from campaigns.authoring.yamlio import load_with_lines
from campaigns.errors import ConfigurationError, InputError, NotFoundError
from campaigns.planning import schedule
from campaigns.planning.contacts import normalise_email
from campaigns.storage.outbox import emit
from campaigns.storage.statuses import (
    LIVE_ENROLLMENT,
    PENDING,
    DeliveryStatus,
    EnrollmentStatus,
    WebhookEvent,
)
from campaigns.storage.store import Store
from campaigns.storage.tables import (
    campaign_versions,
    campaigns,
    contact_events,
    contacts,
    deliveries,
    enrollments,
)

log = logging.getLogger("dripmail.goals")

SOURCES = ("api", "cli", "import")
# A booking system's clock may run a little ahead of ours: an event this far in the
# future is taken as now-ish; further is refused (it has not happened yet).
CLOCK_SKEW = timedelta(minutes=5)
_GOALS = TypeAdapter(Goals)
_ATTEMPTS = 400  # tries of an event whose rows a worker holds (about a minute in all)
# Published versions never change: their goals are read once per process.
_goals_cache: dict[tuple[str, str], tuple[Goal, ...]] = {}


@dataclass(frozen=True)
class ContactEvent:
    """An event as given: its name, its time (None: now) and the sender's own id."""

    name: str
    at: str | datetime | None = None
    event_id: str | None = None


@dataclass
class EventResult:
    """What recording one event did. `recorded` is False for a repeat (nothing changed)."""

    contact_id: int
    event: str
    at: datetime
    recorded: bool
    converted: list[tuple[str, int]] = field(default_factory=list)  # (campaign, enrollment)
    cancelled: int = 0

    def as_dict(self) -> dict:
        """The events API's answer."""
        return {
            "event": self.event,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "recorded": self.recorded,
            "duplicate": not self.recorded,
            "converted": len(self.converted),
            "campaigns": [name for name, _ in self.converted],
            "cancelled": self.cancelled,
        }


def campaign_goals(conn: Connection) -> dict[str, tuple[Goal, ...]]:
    """Every published campaign's goals (current version), by campaign; none: left out."""
    found: dict[str, tuple[Goal, ...]] = {}
    for name, version in conn.execute(select(campaigns.c.name, campaigns.c.version)).all():
        key = (name, version)
        if key not in _goals_cache:
            files = conn.scalar(
                select(campaign_versions.c.files).where(
                    campaign_versions.c.campaign == name, campaign_versions.c.version == version
                )
            )
            _goals_cache[key] = goals_of_files(json.loads(files or "{}"))
        if _goals_cache[key]:
            found[name] = _goals_cache[key]
    return found


def goals_of_files(files: Mapping[str, str]) -> tuple[Goal, ...]:
    """The goals a published version's campaign.yaml names (it was validated when published)."""
    text = files.get(CAMPAIGN_FILE)
    if text is None:
        return ()
    data, _ = load_with_lines(text, CAMPAIGN_FILE)
    try:
        return _GOALS.validate_python(data.get("goal") if isinstance(data, dict) else None)
    except ValidationError:  # published by a dripmail that read goals otherwise: none
        return ()


def goal_names(goals: Mapping[str, tuple[Goal, ...]]) -> set[str]:
    return {goal.event for found in goals.values() for goal in found}


def check_event(name: str, goals: Mapping[str, tuple[Goal, ...]]) -> None:
    """InputError on `event` for a malformed name, or one no campaign's goal names."""
    try:
        check_event_name(name)
    except ValueError as exc:
        raise InputError(str(exc), field="event") from None
    known = goal_names(goals)
    if name not in known:
        listed = ", ".join(sorted(known)) or "none yet"
        raise InputError(f"no campaign has a goal named {name!r} (goals: {listed})", field="event")


def event_time(value: str | datetime | None, timezone: str, *, now: datetime) -> datetime:
    """An event's time: ISO 8601 (no offset: the contact's zone), not in the future; None
    is now. InputError on `at`."""
    if value is None or value == "":
        return now
    try:
        at = schedule.parse_instant(value, schedule.zone(timezone))
    except ValueError as exc:
        raise InputError(str(exc), field="at") from None
    if at > now + CLOCK_SKEW:
        raise InputError("the event is in the future: give the time it happened", field="at")
    return at


def record_event(
    store: Store,
    event: ContactEvent,
    *,
    email: str | None = None,
    contact_id: int | None = None,
    source: str,
    now: datetime,
) -> EventResult:
    """Record an event for the contact with this address (or id), converting what it reaches.

    One transaction: on any error (InputError, NotFoundError) nothing is changed.
    """
    try:
        check_event_name(event.name)
    except ValueError as exc:
        raise InputError(str(exc), field="event") from None
    address = None
    if email is not None:
        try:
            address = normalise_email(email)
        except ValueError as exc:
            raise InputError(str(exc), field="email") from None
    for attempt in range(_ATTEMPTS):
        try:
            result, contact_id = _record(store, event, address, contact_id, source, now)
            break
        except RowsBusy:  # rolled back: nothing was changed; a worker's hand-off is brief
            time.sleep(min(0.2, 0.005 * (attempt + 1)))
    else:
        raise ConfigurationError(
            "the contact's emails stayed locked by a worker: nothing recorded, try again"
        )
    if result.recorded:
        log.info(
            "event %s: contact %d, %d enrollments converted, %d pending emails cancelled",
            event.name,
            contact_id,
            len(result.converted),
            result.cancelled,
        )
    else:
        log.info("event %s: contact %d, a repeat: nothing changed", event.name, contact_id)
    return result


def _record(
    store: Store,
    event: ContactEvent,
    address: str | None,
    contact_id: int | None,
    source: str,
    now: datetime,
) -> tuple[EventResult, int]:
    """One try of record_event, in one transaction."""
    with store.begin() as conn:
        query = select(contacts.c.id, contacts.c.timezone)
        if address is not None:
            query = query.where(contacts.c.email == address)
        else:
            query = query.where(contacts.c.id == contact_id, contacts.c.email.is_not(None))
        contact = conn.execute(query).first()
        if contact is None:
            raise NotFoundError("no contact with that address" if address else "no such contact")
        goals = campaign_goals(conn)
        check_event(event.name, goals)
        at = event_time(event.at, contact.timezone, now=now)
        result = record_in(
            conn, contact.id, event.name, at, event.event_id, source=source, now=now, goals=goals
        )
    return result, contact.id


def record_in(
    conn: Connection,
    contact_id: int,
    name: str,
    at: datetime,
    event_id: str | None,
    *,
    source: str,
    now: datetime,
    goals: Mapping[str, tuple[Goal, ...]],
    wait: bool = False,
) -> EventResult:
    """Store the event (unless a repeat) and convert the enrollments it reaches, in `conn`."""
    result = EventResult(contact_id, name, at, recorded=False)
    if event_id is None and conn.scalar(
        select(contact_events.c.id).where(
            contact_events.c.contact_id == contact_id,
            contact_events.c.name == name,
            contact_events.c.occurred_at == at,
        )
    ):
        return result
    values = {
        "contact_id": contact_id,
        "name": name,
        "occurred_at": at,
        "event_id": event_id,
        "received_at": now,
        "source": source,
    }
    # ON CONFLICT DO NOTHING: the same event_id posted twice at once is recorded once,
    # and the second request is answered as a repeat rather than failing.
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    pk = conn.execute(
        dialect.insert(contact_events)
        .values(**values)
        .on_conflict_do_nothing()
        .returning(contact_events.c.id)
    ).scalar()
    if pk is None:
        return result
    result.recorded = True
    result.converted, result.cancelled = convert(
        conn, contact_id, name, at, pk, goals, now=now, wait=wait
    )
    return result


def convert(
    conn: Connection,
    contact_id: int,
    name: str,
    at: datetime,
    event_pk: int,
    goals: Mapping[str, tuple[Goal, ...]],
    *,
    now: datetime,
    wait: bool = False,
) -> tuple[list[tuple[str, int]], int]:
    """The contact's live enrollments this event reaches -> converted; (them, cancelled)."""
    reached = []
    for row in conn.execute(
        select(
            enrollments.c.id,
            enrollments.c.campaign,
            enrollments.c.signed_up_at,
            contacts.c.timezone,
        )
        .join(contacts, contacts.c.id == enrollments.c.contact_id)
        .where(
            enrollments.c.contact_id == contact_id,
            enrollments.c.status.in_(LIVE_ENROLLMENT),
            enrollments.c.campaign.in_([c for c, g in goals.items() if goal_for(g, name)]),
        )
        .order_by(enrollments.c.id)
    ):
        goal = goal_for(goals[row.campaign], name)
        if goal is not None and goal.counts(row.signed_up_at, at, schedule.zone(row.timezone)):
            reached.append(row.id)
    return mark_converted(conn, {i: (at, event_pk, name) for i in reached}, now=now, wait=wait)


class RowsBusy(Exception):
    """A pending row of the contact is locked by a worker's transaction right now."""


def mark_converted(
    conn: Connection,
    reached: Mapping[int, tuple[datetime, int, str]],
    *,
    now: datetime,
    wait: bool = False,
) -> tuple[list[tuple[str, int]], int]:
    """Enrollment id -> (event time, event id, name): converted, pending emails cancelled.

    Only enrollments still live change (a concurrent event or unsubscribe may have come
    first); returns [(campaign, enrollment id)] changed and the emails cancelled.

    On PostgreSQL the enrollments are locked first, in id order (as a worker's hand-off
    locks them), then their pending rows without waiting: a worker's hand-off updates
    many rows of its batch (marking some `sending`, renewing the lease of the rest) in
    no order of ours, so waiting for a row while holding others could deadlock with it.
    RowsBusy (unless `wait`) means: roll back and try again in a moment; the worker's
    transaction is short.
    """
    converted: list[tuple[str, int]] = []
    reached_by: list[tuple[int, int, str, str]] = []  # for the `converted` webhook event
    cancelled = 0
    ids = sorted(reached)
    query = (
        select(enrollments.c.id)
        .where(enrollments.c.id.in_(ids), enrollments.c.status.in_(LIVE_ENROLLMENT))
        .order_by(enrollments.c.id)
    )
    if conn.dialect.name != "sqlite":
        # The enrollments first, in id order, as a worker's hand-off locks them (FOR NO
        # KEY UPDATE): whoever comes second waits before holding any delivery row.
        query = query.with_for_update(key_share=True)
    live = list(conn.scalars(query))
    locked = {
        enrollment_id: _lock_pending(conn, enrollment_id, wait=wait) for enrollment_id in live
    }
    for enrollment_id in live:
        at, event_pk, name = reached[enrollment_id]
        row = conn.execute(
            update(enrollments)
            .where(enrollments.c.id == enrollment_id)
            .values(
                status=EnrollmentStatus.CONVERTED, converted_at=at, conversion_event_id=event_pk
            )
            .returning(enrollments.c.campaign, enrollments.c.contact_id)
        ).first()
        if row is None:
            continue
        converted.append((row.campaign, enrollment_id))
        cancelled += cancel_pending(conn, locked[enrollment_id], f"goal reached: {name}", now=now)
        reached_by.append((row.contact_id, enrollment_id, row.campaign, name))
    emit(
        conn,
        WebhookEvent.CONVERTED,
        [
            (c, {"contact_id": c, "enrollment_id": e, "campaign": campaign, "goal": goal})
            for c, e, campaign, goal in reached_by
        ],
        now=now,
    )
    return converted, cancelled


def _lock_pending(conn: Connection, enrollment_id: int, *, wait: bool) -> list[int]:
    """The enrollment's pending delivery ids, locked (PostgreSQL); RowsBusy if any is
    held by another transaction and not `wait`."""
    query = (
        select(deliveries.c.id)
        .where(deliveries.c.enrollment_id == enrollment_id, deliveries.c.status.in_(PENDING))
        .order_by(deliveries.c.id)
    )
    if conn.dialect.name == "sqlite":  # one writer at a time: nothing to lock
        return list(conn.scalars(query))
    if wait:
        return list(conn.scalars(query.with_for_update()))
    wanted = list(conn.scalars(query))
    got = list(conn.scalars(query.with_for_update(skip_locked=True)))
    if got != wanted:
        raise RowsBusy
    return got


def cancel_pending(
    conn: Connection, delivery_ids: Iterable[int], reason: str, *, now: datetime
) -> int:
    """These deliveries, if still scheduled/claimed -> cancelled; the lease cleared, so a
    worker holding a claimed row can neither hand it off nor record anything on it.
    `sending` rows are left to finish."""
    ids = list(delivery_ids)
    if not ids:
        return 0
    return conn.execute(
        update(deliveries)
        .where(deliveries.c.id.in_(ids), deliveries.c.status.in_(PENDING))
        .values(
            status=DeliveryStatus.CANCELLED,
            lease_owner=None,
            lease_expires_at=None,
            error=reason,
            updated_at=now,
        )
    ).rowcount


def parse_event_cell(
    text: str, timezone: str, *, now: datetime
) -> tuple[tuple[str, datetime], ...]:
    """An import's `events` cell: `booked@2026-03-09T14:00; consult` -> [(name, time)].

    Items are separated by `;`; a time (after `@`, ISO 8601, no offset: the contact's
    zone) is optional, none meaning the import's time. InputError on `events`.
    """
    found = []
    for item in text.split(";"):
        if not item.strip():
            continue
        name, _, when = item.strip().partition("@")
        try:
            check_event_name(name.strip())
        except ValueError as exc:
            raise InputError(str(exc), field="events") from None
        try:
            at = event_time(when.strip() or None, timezone, now=now)
        except InputError as exc:
            raise InputError(exc.message, field="events") from None
        found.append((name.strip(), at))
    return tuple(found)


def record_imported(
    conn: Connection,
    events: Mapping[int, Sequence[tuple[str, datetime]]],
    *,
    now: datetime,
) -> tuple[int, int, int]:
    """An import's events (contact id -> [(name, time)]): (recorded, converted, cancelled)."""
    if not events:
        return 0, 0, 0
    goals = campaign_goals(conn)
    recorded = converted = cancelled = 0
    for contact_id, items in events.items():
        for name, at in items:
            # Blocking locks: an import's chunk is one transaction, too big to try again.
            result = record_in(
                conn, contact_id, name, at, None, source="import", now=now, goals=goals, wait=True
            )
            recorded += result.recorded
            converted += len(result.converted)
            cancelled += result.cancelled
    return recorded, converted, cancelled


# -- live edits: a goal added to a running campaign ----------------------------------------


@dataclass
class GoalPlan:
    """What the edited campaign's goals do to enrolled contacts who already had the event."""

    added: tuple[str, ...] = ()  # event names the new version's goals add or change
    removed: tuple[str, ...] = ()  # event names no goal names any more
    converts: dict[str, int] = field(default_factory=dict)  # event -> enrollments it converts
    cancels: int = 0  # their pending emails, cancelled
    _reached: dict[int, tuple[datetime, int, str]] = field(default_factory=dict, repr=False)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def plan_goals(conn: Connection, old: Campaign, new: Campaign) -> GoalPlan:
    """Live enrollments of `new` that a stored event already reaches under its goals."""
    before = {goal.event: goal for goal in old.spec.goal}
    after = {goal.event: goal for goal in new.spec.goal}
    plan = GoalPlan(
        added=tuple(e for e, g in after.items() if before.get(e) != g),
        removed=tuple(e for e in before if e not in after),
    )
    if not plan.added:
        return plan
    plan.converts = dict.fromkeys(plan.added, 0)
    rows = conn.execute(
        select(
            enrollments.c.id,
            enrollments.c.signed_up_at,
            contacts.c.timezone,
            contact_events.c.id.label("event_pk"),
            contact_events.c.name,
            contact_events.c.occurred_at,
        )
        .join(contacts, contacts.c.id == enrollments.c.contact_id)
        .join(contact_events, contact_events.c.contact_id == enrollments.c.contact_id)
        .where(
            enrollments.c.campaign == new.name,
            enrollments.c.status.in_(LIVE_ENROLLMENT),
            contact_events.c.name.in_(list(plan.added)),
            contact_events.c.occurred_at >= enrollments.c.signed_up_at,
        )
        .order_by(contact_events.c.occurred_at, contact_events.c.id)
    )
    for row in rows:
        if row.id in plan._reached:
            continue  # the earliest event that counts is the conversion
        if after[row.name].counts(row.signed_up_at, row.occurred_at, schedule.zone(row.timezone)):
            plan._reached[row.id] = (row.occurred_at, row.event_pk, row.name)
            plan.converts[row.name] += 1
    pending: dict[int, int] = defaultdict(int)
    ids = sorted(plan._reached)
    for start in range(0, len(ids), 1000):
        for enrollment_id in conn.scalars(
            select(deliveries.c.enrollment_id).where(
                deliveries.c.enrollment_id.in_(ids[start : start + 1000]),
                deliveries.c.status.in_(PENDING),
            )
        ):
            pending[enrollment_id] += 1
    plan.cancels = sum(pending.values())
    return plan


def apply_goals(conn: Connection, plan: GoalPlan, *, now: datetime) -> None:
    """Carry out `plan` (in the edit's transaction); the counts become what was done."""
    if not plan._reached:
        return
    converted, cancelled = mark_converted(conn, plan._reached, now=now, wait=True)
    plan.cancels = cancelled
    done = {enrollment_id for _, enrollment_id in converted}
    plan.converts = dict.fromkeys(plan.converts, 0)
    for enrollment_id, (_, _, name) in plan._reached.items():
        if enrollment_id in done:
            plan.converts[name] += 1
