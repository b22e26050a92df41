"""Sign-ups: validate contacts, enroll them, and plan one delivery per step.

Single sign-ups and CSV imports share one bulk path, so 100,000 rows cost a few
queries per chunk rather than several per row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from campaigns.authoring.confirm_spec import ConfirmMode
from campaigns.authoring.spec import Campaign
from campaigns.errors import InputError
from campaigns.planning.confirm_requests import request_confirmations
from campaigns.planning.contacts import join_tags, split_tags
from campaigns.planning.conversions import campaign_goals, check_event, record_imported
from campaigns.planning.facts import contact_paces, last_sent
from campaigns.planning.held_changes import attributes_json, current_values, hold
from campaigns.planning.pace import NO_PACE, Pace
from campaigns.planning.plans import DriverPlan, plan, planner
from campaigns.planning.signups import MAX_ATTRIBUTES, Contact, Signup, read_signups, validate
from campaigns.storage import audit
from campaigns.storage.outbox import emit, listening
from campaigns.storage.publish import open_campaign, publish
from campaigns.storage.statuses import DeliveryStatus, EnrollmentStatus, WebhookEvent
from campaigns.storage.store import Store, bulk_insert
from campaigns.storage.tables import contacts, deliveries, enrollments, suppressions
from campaigns.storage.wakeup import announce_due

# A list bound at execution: in_() given 10,000 values coerces each one, every chunk.
_MANY = bindparam("many", expanding=True)
CHUNK = 10_000  # contacts per transaction: each commit rewrites the index pages it touched


@dataclass
class EnrollReport:
    """What an enrollment or import did; `rejected` holds (line, message) pairs."""

    enrolled: int = 0
    already: int = 0
    suppressed: int = 0
    restarted: int = 0
    unsubscribed: int = 0  # enrolled before, unsubscribed since: left alone without --force
    rejected: list[tuple[int, str]] = field(default_factory=list)
    enrollment_ids: list[int] = field(default_factory=list)
    campaign: str = ""
    # An import's columns kept on each contact: the header as written -> attribute name.
    attributes: dict[str, str] = field(default_factory=dict)
    steps: int = 0
    # An import's `events` column: events recorded, enrollments converted, emails cancelled.
    events: int = 0
    converted: int = 0
    cancelled: int = 0
    # Double opt-in (planning/confirmations.py): confirmations asked for, sent again.
    pending: int = 0
    resent: int = 0
    awaiting: int = 0  # asked again within the day: the email already went, nothing more


def enroll(
    store: Store,
    campaign: Campaign,
    signup: Signup,
    *,
    now: datetime,
    restart: bool = False,
    force: bool = False,
    double: bool | None = None,
) -> EnrollReport:
    """Enroll one contact (publishing the campaign); bad input raises InputError.

    An address already enrolled is left as it is, unless `restart` (its pending emails
    are cancelled and the sequence is planned again from the new sign-up). A suppressed
    or unsubscribed address is not enrolled without `force` (staff vouch for new consent).
    `double` (None: the campaign's `confirm`) asks the patient to confirm first: no
    enrollment yet, a confirmation owed instead (planning/confirmations.py). `restart`
    and `force` enroll at once, so they are refused with double opt-in (InputError).
    """
    double = _double(campaign, double)
    if double and (restart or force):
        raise InputError(
            "enrolls at once, without the patient's confirmation, so it cannot be used "
            "with double opt-in (--double-opt-in, or `confirm: double` in campaign.yaml): "
            "leave it out, or enroll into a single opt-in campaign",
            field="--restart" if restart else "--force",
        )
    contact = validate(signup, campaign, now=now)
    with store.begin() as conn:
        publish(conn, campaign, now=now)
        report = _enroll_chunk(
            conn,
            store,
            campaign,
            [contact],
            planned=planner(store, campaign),
            now=now,
            restart=restart,
            force=force,
            double=double,
        )
    report.campaign, report.steps = campaign.name, len(campaign.steps)
    return report


def _double(campaign: Campaign, double: bool | None) -> bool:
    """Whether sign-ups wait for confirmation: as asked, else as the campaign file says."""
    return campaign.spec.confirm == ConfirmMode.DOUBLE if double is None else double


def enroll_ref(store: Store, ref: str, signup: Signup, *, now: datetime, **options) -> EnrollReport:
    """Enroll into a campaign folder or a published campaign named `ref`."""
    return enroll(store, open_campaign(store, ref), signup, now=now, **options)


def import_ref(store: Store, ref: str, path: Path, **options) -> EnrollReport:
    """Import a CSV into a campaign folder or a published campaign named `ref`."""
    return import_csv(store, open_campaign(store, ref), path, **options)


def import_csv(
    store: Store,
    campaign: Campaign,
    path: Path,
    *,
    now: datetime,
    consent: str | None = None,
    encoding: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    actor: str | int = audit.CLI,
    double: bool | None = None,
    audited_at: datetime | None = None,
    chunk_size: int = CHUNK,
) -> EnrollReport:
    """Import a CSV of sign-ups. Bad rows are reported by line and left out; the rest go in.

    Rows go in `chunk_size` at a time, one transaction each; `progress(done, total)` is called
    after each (the console passes a smaller chunk, so its progress bar moves).

    An unusable file (not UTF-8 or `encoding`, no header, no email column) raises
    InputError and imports nothing. Columns dripmail has no field for are kept on each
    contact as attributes. `double` (None: the campaign's `confirm`) asks each new
    sign-up to confirm first, as `enroll` does.
    """
    double = _double(campaign, double)
    read = read_signups(path, campaign, now=now, consent=consent, encoding=encoding)
    report = EnrollReport(rejected=read.rejected, attributes=read.attributes)
    with store.begin() as conn:
        # The console passes its user's id and its clock for the audit trail.
        publish(conn, campaign, now=now, actor=actor, audited_at=audited_at)
        unused = unused_events(conn, read.events)
    # A row naming an event no campaign's goal uses is left out, like any bad value.
    valid = [(line, c) for line, c in read.valid if c.email not in unused]
    report.rejected = sorted(report.rejected + [unused[email] for email in unused])
    done, planned = 0, planner(store, campaign)
    with store.bulk() as conn:
        for start in range(0, len(valid), chunk_size):
            chunk = [contact for _, contact in valid[start : start + chunk_size]]
            with conn.begin():
                part = _enroll_chunk(
                    conn, store, campaign, chunk, planned=planned, now=now, double=double
                )
                # The chunk's events, in its transaction: a patient imported as having
                # booked already is converted before any email of theirs can go.
                happened = [c.email for c in chunk if c.email in read.events]
                ids = _contact_ids(conn, happened)
                recorded, converted, cancelled = record_imported(
                    conn,
                    {ids[e]: read.events[e][1] for e in happened if e in ids},
                    now=now,
                )
            report.enrolled += part.enrolled
            report.already += part.already
            report.suppressed += part.suppressed
            report.pending += part.pending
            report.resent += part.resent
            report.awaiting += part.awaiting
            report.events += recorded
            report.converted += converted
            report.cancelled += cancelled
            done += len(chunk)
            if progress:
                progress(done, len(valid))
        if report.enrolled and not store.is_sqlite:
            # The planner's statistics, at once: until autovacuum gets to them, queries
            # that join deliveries (a worker's settle and recovery, every tick) are planned
            # for the tables as they were before the import (measured: a 1,000-contact
            # import left each tick ~0.3 s; ANALYZE here made the acceptance run 7x faster).
            with conn.begin():
                conn.exec_driver_sql("ANALYZE contacts, enrollments, deliveries")
    report.campaign, report.steps = campaign.name, len(campaign.steps)
    return report


def unused_events(
    conn: Connection, events: Mapping[str, tuple[int, Sequence[tuple[str, datetime]]]]
) -> dict[str, tuple[int, str]]:
    """Rows whose `events` cell names an event no campaign's goal uses: address -> (line, why)."""
    if not events:
        return {}
    goals = campaign_goals(conn)
    refused = {}
    for email, (line, items) in events.items():
        for name, _ in items:
            try:
                check_event(name, goals)
            except InputError as exc:
                refused[email] = (line, f"events: {exc.message}")
                break
    return refused


def _enroll_chunk(
    conn: Connection,
    store: Store,
    campaign: Campaign,
    batch: Sequence[Contact],
    *,
    planned: DriverPlan,
    now: datetime,
    restart: bool = False,
    force: bool = False,
    double: bool = False,
) -> EnrollReport:
    """Enroll one batch of validated contacts with a few queries and bulk inserts.

    With `double`, a contact not yet enrolled gets a confirmation request instead
    (planning/confirm_requests.py); its enrollment waits for the confirmation."""
    report = EnrollReport()
    hashes = {contact.email: store.address_hash(contact.email) for contact in batch}
    suppressed = set(
        conn.scalars(
            select(suppressions.c.address_hash).where(suppressions.c.address_hash.in_(_MANY)),
            {"many": list(hashes.values())},
        )
    )
    if force and suppressed:
        # Staff vouch for new consent: the suppression goes, or dispatch would skip them.
        conn.execute(delete(suppressions).where(suppressions.c.address_hash.in_(suppressed)))
        suppressed = set()
    batch = [c for c in batch if hashes[c.email] not in suppressed]
    report.suppressed = len(hashes) - len(batch)
    ids = _contact_ids(conn, [c.email for c in batch])
    new = [c for c in batch if c.email not in ids]
    stamp = store.driver_time(now)
    if new:
        bulk_insert(
            conn,
            contacts,
            (
                "email",
                "first_name",
                "timezone",
                "consent_source",
                "consent_at",
                "created_at",
                "tags",
                "attributes",
                "language",
            ),
            [
                (
                    c.email,
                    c.first_name,
                    c.timezone,
                    c.consent,
                    stamp,
                    stamp,
                    join_tags(c.tags),
                    attributes_json(c.attributes),
                    c.language,
                )
                for c in new
            ],
        )
        ids.update(_contact_ids(conn, [c.email for c in new]))
    new_emails = {c.email for c in new}
    known = [c for c in batch if c.email not in new_emails]
    if not double:
        # With double opt-in anyone can post an address: a known contact's tags,
        # attributes and language (what their running emails read) stay as they are
        # until the patient confirms; they are held on the request (held_changes.py).
        _add_tags(conn, [(ids[c.email], c.tags) for c in known if c.tags])
        _add_attributes(conn, [(ids[c.email], c.attributes) for c in known if c.attributes])
        _set_languages(conn, [(ids[c.email], c.language) for c in known if c.language])
    # A contact made just now has no enrollment and no email anywhere yet.
    known_ids = [ids[c.email] for c in known]
    existing = (
        {
            row.contact_id: (row.id, row.status)
            for row in conn.execute(
                select(enrollments.c.contact_id, enrollments.c.id, enrollments.c.status).where(
                    enrollments.c.campaign == campaign.name,
                    enrollments.c.contact_id.in_(_MANY),
                ),
                {"many": known_ids},
            )
        }
        if known_ids
        else {}
    )
    last = last_sent(conn, known_ids)
    # A contact's own pause or gap (planning/pace.py): new contacts have none yet.
    paces = contact_paces(conn, known_ids) if known_ids else {}
    fresh, again = [], []
    for c in batch:
        found = existing.get(ids[c.email])
        if found is None:
            fresh.append(c)
        elif found[1] == EnrollmentStatus.UNSUBSCRIBED and not force:
            report.unsubscribed += 1
        elif restart or (force and found[1] == EnrollmentStatus.UNSUBSCRIBED):
            again.append((c, found[0]))
        else:
            report.already += 1
    if again:
        _restart(
            conn,
            campaign,
            again,
            {c.email: (last.get(ids[c.email]), paces.get(ids[c.email], NO_PACE)) for c, _ in again},
            now,
        )
        report.restarted = len(again)
        report.enrollment_ids.extend(enrollment_id for _, enrollment_id in again)
        _emit_enrolled(conn, campaign.name, [(ids[c.email], e) for c, e in again], now=now)
    if double and fresh:
        waiting = [ids[c.email] for c in fresh if c.email not in new_emails]
        now_values = current_values(conn, waiting)  # held beside, so newer values win
        held = {i: hold(c, now_values.get(i)) for c in fresh if (i := ids[c.email]) in now_values}
        asked = request_confirmations(
            conn, campaign, [ids[c.email] for c in fresh], held=held, now=now
        )
        report.pending, report.resent, report.awaiting = asked.new, asked.resent, asked.waiting
        return report
    if not fresh:
        return report
    bulk_insert(
        conn,
        enrollments,
        ("contact_id", "campaign", "signed_up_at", "status", "created_at"),
        [
            (
                ids[c.email],
                campaign.name,
                store.driver_time(c.signed_up_at),
                EnrollmentStatus.ACTIVE,
                stamp,
            )
            for c in fresh
        ],
    )
    enrollment_ids = dict(
        conn.execute(
            select(enrollments.c.contact_id, enrollments.c.id).where(
                enrollments.c.campaign == campaign.name,
                enrollments.c.contact_id.in_(_MANY),
            ),
            {"many": [ids[c.email] for c in fresh]},
        ).all()
    )
    steps = [(step.key, step.position) for step in campaign.steps]
    scheduled = DeliveryStatus.SCHEDULED
    rows: list[tuple] = []
    for contact in fresh:
        contact_id = ids[contact.email]
        enrollment_id = enrollment_ids[contact_id]
        report.enrollment_ids.append(enrollment_id)
        pace = paces.get(contact_id)
        if pace is None:
            due_times = planned(contact.signed_up_at, contact.timezone, last.get(contact_id))
        else:  # rare: planned alone, past the pause and with the contact's gap
            due_times = tuple(
                map(
                    store.driver_time,
                    plan(
                        campaign,
                        contact.signed_up_at,
                        contact.timezone,
                        previous=last.get(contact_id),
                        pace=pace,
                    ),
                )
            )
        rows.extend(
            (enrollment_id, key, position, due, scheduled, 0, stamp)
            for (key, position), due in zip(steps, due_times, strict=True)
        )
    bulk_insert(
        conn,
        deliveries,
        ("enrollment_id", "step_key", "position", "due_at", "status", "attempts", "updated_at"),
        rows,
    )
    # A `0d` welcome: workers need not wait for their tick (times as the driver takes them).
    if any(row[3] <= stamp for row in rows):
        announce_due(conn)
    report.enrolled = len(fresh)
    _emit_enrolled(
        conn, campaign.name, [(ids[c.email], enrollment_ids[ids[c.email]]) for c in fresh], now=now
    )
    return report


def enroll_confirmed(
    conn: Connection, store: Store, campaign: Campaign, contact: Contact, *, now: datetime
) -> EnrollReport:
    """Enroll a contact who has just confirmed, in the caller's transaction: the sequence
    is planned from `contact.signed_up_at` (the confirmation's time)."""
    return _enroll_chunk(
        conn, store, campaign, [contact], planned=planner(store, campaign), now=now
    )


def _emit_enrolled(
    conn: Connection, campaign: str, pairs: Sequence[tuple[int, int]], *, now: datetime
) -> None:
    """The `enrolled` webhook event of each (contact id, enrollment id), in this transaction."""
    if listening(conn, WebhookEvent.ENROLLED):
        emit(
            conn,
            WebhookEvent.ENROLLED,
            [
                (contact_id, {"contact_id": contact_id, "enrollment_id": e, "campaign": campaign})
                for contact_id, e in pairs
            ],
            now=now,
        )


def _add_tags(conn: Connection, pairs: Sequence[tuple[int, tuple[str, ...]]]) -> None:
    """A known contact signing up again with tags keeps its old tags and gains these."""
    for contact_id, tags in pairs:
        old = conn.scalar(select(contacts.c.tags).where(contacts.c.id == contact_id))
        merged = join_tags(sorted(set(split_tags(old)) | set(tags)))
        if merged != old:
            conn.execute(update(contacts).where(contacts.c.id == contact_id).values(tags=merged))


def _add_attributes(conn: Connection, pairs: Sequence[tuple[int, Mapping[str, str]]]) -> None:
    """A known contact imported again keeps its attributes; the new file's values win,
    and the old ones are kept only as far as MAX_ATTRIBUTES allows."""
    for contact_id, attributes in pairs:
        old = conn.scalar(select(contacts.c.attributes).where(contacts.c.id == contact_id))
        kept = [(k, v) for k, v in json.loads(old or "{}").items() if k not in attributes]
        room = max(0, MAX_ATTRIBUTES - len(attributes))
        merged = attributes_json({**dict(kept[:room]), **attributes})
        if merged != old:
            conn.execute(
                update(contacts).where(contacts.c.id == contact_id).values(attributes=merged)
            )


def _set_languages(conn: Connection, pairs: Sequence[tuple[int, str]]) -> None:
    """A known contact signing up again with a language reads that one from now on."""
    if pairs:
        conn.execute(
            update(contacts)
            .where(contacts.c.id == bindparam("b_id"))
            .values(language=bindparam("b_language")),
            [{"b_id": contact_id, "b_language": language} for contact_id, language in pairs],
        )


def _restart(
    conn: Connection,
    campaign: Campaign,
    again: Sequence[tuple[Contact, int]],
    previous: dict[str, tuple[datetime | None, Pace]],
    now: datetime,
) -> None:
    """Plan the sequence again from the new sign-up, reusing the enrollment's rows.

    Rows a worker holds right now (claimed, sending) are left to it.
    """
    enrollment_ids = [enrollment_id for _, enrollment_id in again]
    conn.execute(
        update(enrollments)
        .where(enrollments.c.id == bindparam("b_id"))
        .values(
            signed_up_at=bindparam("b_at"),
            status=EnrollmentStatus.ACTIVE,
            converted_at=None,  # a new start: a goal reached before counts no longer
            conversion_event_id=None,
        ),
        [{"b_id": e, "b_at": c.signed_up_at} for c, e in again],
    )
    held = set(
        conn.execute(
            select(deliveries.c.enrollment_id, deliveries.c.step_key).where(
                deliveries.c.enrollment_id.in_(enrollment_ids),
                deliveries.c.status.in_((DeliveryStatus.CLAIMED, DeliveryStatus.SENDING)),
            )
        ).all()
    )
    have = set(
        conn.execute(
            select(deliveries.c.enrollment_id, deliveries.c.step_key).where(
                deliveries.c.enrollment_id.in_(enrollment_ids)
            )
        ).all()
    )
    keys = {step.key for step in campaign.steps}
    conn.execute(
        update(deliveries)
        .where(
            deliveries.c.enrollment_id.in_(enrollment_ids),
            deliveries.c.status == DeliveryStatus.SCHEDULED,
            deliveries.c.step_key.not_in(keys),
        )
        .values(status=DeliveryStatus.CANCELLED, error="the sequence was restarted", updated_at=now)
    )
    updates, inserts = [], []
    for contact, enrollment_id in again:
        last, pace = previous.get(contact.email, (None, NO_PACE))
        due_times = plan(campaign, contact.signed_up_at, contact.timezone, previous=last, pace=pace)
        for step, due in zip(campaign.steps, due_times, strict=True):
            if (enrollment_id, step.key) in held:
                continue
            values = {"b_e": enrollment_id, "b_k": step.key, "b_p": step.position, "b_due": due}
            (updates if (enrollment_id, step.key) in have else inserts).append(values)
    if any(v["b_due"] <= now for v in updates + inserts):
        announce_due(conn)
    if updates:
        conn.execute(
            update(deliveries)
            .where(
                deliveries.c.enrollment_id == bindparam("b_e"),
                deliveries.c.step_key == bindparam("b_k"),
            )
            .values(
                position=bindparam("b_p"),
                due_at=bindparam("b_due"),
                status=DeliveryStatus.SCHEDULED,
                attempts=0,
                lease_owner=None,
                lease_expires_at=None,
                provider_message_id=None,
                error=None,
                sent_at=None,
                updated_at=now,
            ),
            updates,
        )
    if inserts:
        conn.execute(
            insert(deliveries),
            [
                {
                    "enrollment_id": v["b_e"],
                    "step_key": v["b_k"],
                    "position": v["b_p"],
                    "due_at": v["b_due"],
                    "status": DeliveryStatus.SCHEDULED,
                    "attempts": 0,
                    "updated_at": now,
                }
                for v in inserts
            ],
        )


def _contact_ids(conn: Connection, emails: Iterable[str]) -> dict[str, int]:
    emails = list(emails)
    if not emails:
        return {}
    return dict(
        conn.execute(
            select(contacts.c.email, contacts.c.id).where(contacts.c.email.in_(_MANY)),
            {"many": emails},
        ).all()
    )
