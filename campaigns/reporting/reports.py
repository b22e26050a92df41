"""Read-only views of the store: status counts, paused campaigns, calendars, the timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, func, select

from campaigns.authoring.conditions import StepCondition
from campaigns.authoring.spec import Campaign
from campaigns.errors import InputError
from campaigns.planning import schedule
from campaigns.planning.conditions import ContactFacts, outlook, stored_outcome
from campaigns.planning.confirmations import ConfirmationCounts, confirmation_counts
from campaigns.planning.contacts import display_address, normalise_email
from campaigns.planning.facts import enrollment_facts
from campaigns.planning.pace import Pace
from campaigns.planning.plans import plan
from campaigns.storage.publish import open_campaign
from campaigns.storage.statuses import (
    DELIVERY_STATES,
    IN_FLIGHT,
    PENDING,
    CampaignStatus,
    DeliveryStatus,
)
from campaigns.storage.store import Store
from campaigns.storage.tables import campaigns, contacts, deliveries, enrollments

SAMPLE_ZONES = (
    "America/New_York",
    "Europe/London",
    "Asia/Kolkata",
    "Australia/Sydney",
    "Australia/Lord_Howe",
)


def confirmation_states(store: Store, campaign: str | None = None) -> dict[str, ConfirmationCounts]:
    """Double opt-in sign-ups by campaign: awaiting confirmation, confirmed, expired."""
    with store.connect() as conn:
        return confirmation_counts(conn, campaign)


def status_counts(store: Store, campaign: str | None = None) -> dict[str, dict[str, int]]:
    """Deliveries by campaign and state, every state listed."""
    query = (
        select(enrollments.c.campaign, deliveries.c.status, func.count())
        .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
        .group_by(enrollments.c.campaign, deliveries.c.status)
    )
    if campaign:
        query = query.where(enrollments.c.campaign == campaign)
    result: dict[str, dict[str, int]] = {}
    with store.connect() as conn:
        for name, status, count in conn.execute(query):
            result.setdefault(name, dict.fromkeys(DELIVERY_STATES, 0))[status] = count
    return result


@dataclass(frozen=True)
class CampaignPause:
    """A paused campaign: since when, and why when dripmail paused it by itself."""

    campaign: str
    paused_at: datetime | None
    kind: str | None  # the rule that paused it (delivery/health_rules.py); None: a person
    reason: str | None

    @property
    def by_itself(self) -> bool:
        return self.kind is not None

    def line(self) -> str:
        """One line for `status` and `stats`."""
        since = f" since {self.paused_at:%Y-%m-%d %H:%M} UTC" if self.paused_at else ""
        who = "paused by dripmail" if self.by_itself else "paused by a person"
        why = f": {self.reason}" if self.reason else ""
        return (
            f"campaign {self.campaign}: {who}{since}{why}; "
            f"only a person resumes it: dripmail resume {self.campaign}"
        )

    def as_dict(self) -> dict[str, str | None]:
        return {
            "paused_at": self.paused_at.isoformat() if self.paused_at else None,
            "by": "dripmail" if self.by_itself else "person",
            "kind": self.kind,
            "reason": self.reason,
        }


def campaign_pauses(store: Store, campaign: str | None = None) -> list[CampaignPause]:
    """Paused campaigns (or this one, if paused), by name."""
    query = (
        select(campaigns.c.name, campaigns.c.paused_at)
        .add_columns(campaigns.c.pause_kind, campaigns.c.pause_reason)
        .where(campaigns.c.status == CampaignStatus.PAUSED)
        .order_by(campaigns.c.name)
    )
    if campaign:
        query = query.where(campaigns.c.name == campaign)
    with store.connect() as conn:
        return [CampaignPause(*row) for row in conn.execute(query)]


@dataclass(frozen=True)
class CalendarEntry:
    """One planned or sent email of one contact, in their local time and in UTC."""

    contact: str  # the address for staff views; `contact_id` for logs
    contact_id: int | None
    first_name: str | None
    timezone: str
    position: int
    step_key: str
    subject: str
    due_at: datetime
    status: str
    sent_at: datetime | None
    note: str = ""  # why it is not at sign-up + delay: days off, closures, DST, openings
    # For a step with `when:`: whether this contact gets it and why (`skipped: has tag
    # returning`), or what the condition says now of an email not yet due.
    condition: str = ""

    @property
    def local(self) -> datetime:
        return (self.sent_at or self.due_at).astimezone(schedule.zone(self.timezone))


def calendar(
    store: Store,
    campaign: Campaign,
    *,
    email: str | None = None,
    limit: int = 20,
    now: datetime | None = None,
) -> list[CalendarEntry]:
    """Each enrolled contact's emails (or one contact's), in step order.

    A pending email's note says first why the patient's own choice holds it (paused
    until `now`'s future, fewer emails: planning/pace.py).
    """
    subjects = {step.key: step.subject for step in campaign.steps}
    conditions = {step.key: step.when for step in campaign.steps if step.when is not None}
    query = (
        select(
            contacts.c.email,
            contacts.c.id,
            contacts.c.first_name,
            contacts.c.timezone,
            deliveries.c.position,
            deliveries.c.step_key,
            deliveries.c.due_at,
            deliveries.c.status,
            deliveries.c.sent_at,
            deliveries.c.error,
            enrollments.c.signed_up_at,
            enrollments.c.id.label("enrollment_id"),
            contacts.c.paused_until,
            contacts.c.min_gap_days,
        )
        .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
        .join(contacts, contacts.c.id == enrollments.c.contact_id)
        .where(enrollments.c.campaign == campaign.name)
        .order_by(contacts.c.id, deliveries.c.position)
    )
    if email:
        query = query.where(contacts.c.email == normalise_email(email))
    else:
        first_ids = (
            select(enrollments.c.contact_id)
            .where(enrollments.c.campaign == campaign.name)
            .order_by(enrollments.c.contact_id)
            .limit(limit)
        )
        query = query.where(contacts.c.id.in_(first_ids))
    with store.connect() as conn:
        rows = conn.execute(query).all()
        guarded = [r for r in rows if r.step_key in conditions and r.status in PENDING]
        click_keys = {key for r in guarded for key in conditions[r.step_key].click_steps}
        facts = enrollment_facts(conn, {r.enrollment_id for r in guarded}, click_keys)
        return [
            CalendarEntry(
                contact=display_address(row.email) if row.email else f"contact {row.id}",
                contact_id=row.id,
                first_name=row.first_name,
                timezone=row.timezone,
                position=row.position,
                step_key=row.step_key,
                subject=subjects.get(row.step_key, f"({row.step_key}: removed)"),
                due_at=row.due_at,
                status=row.status,
                sent_at=row.sent_at,
                note=_row_note(campaign, row, now),
                condition=_condition(conditions, row, facts),
            )
            for row in rows
        ]


def _row_note(campaign: Campaign, row: Row, now: datetime | None) -> str:
    """The note of a stored email: first why the patient's own choice holds it (when
    pending), then why its due time is what it is."""
    notes = []
    pace = Pace(row.paused_until, row.min_gap_days)
    if row.status in PENDING and pace.chosen:
        notes = pace.notes(now if now is not None else row.due_at)
    notes.append(_note(campaign, row.step_key, row.signed_up_at, row.due_at, row.timezone))
    return "; ".join(note for note in notes if note)


def _condition(
    conditions: dict[str, StepCondition], row: Row, facts: dict[int, ContactFacts]
) -> str:
    """What a step's `when:` meant or means for this contact (see CalendarEntry)."""
    if row.status == DeliveryStatus.SKIPPED:
        return stored_outcome(row.status, row.error)
    condition = conditions.get(row.step_key)
    if condition is None:
        return ""
    if row.status in PENDING:
        return outlook(condition, facts.get(row.enrollment_id, ContactFacts()))
    if row.status in IN_FLIGHT:
        return "gets it: the condition held when it was due"
    return ""


def calendar_for(
    store: Store,
    ref: str,
    *,
    email: str | None = None,
    limit: int = 20,
    now: datetime,
    sample: bool = False,
    signed_up_at: str | None = None,
    zones: tuple[str, ...] = (),
) -> list[CalendarEntry]:
    """The calendar of enrolled contacts, or sample sign-ups when none is (or `sample`).

    A sample sign-up is at `signed_up_at` (without an offset: that wall time in each
    zone), else at `now`, in each of `zones` (default SAMPLE_ZONES).
    """
    campaign = open_campaign(store, ref)
    entries = [] if sample else calendar(store, campaign, email=email, limit=limit, now=now)
    if not entries and not email:
        chosen = zones or SAMPLE_ZONES
        for name in chosen:
            try:
                schedule.zone(name)
            except ValueError as exc:
                raise InputError(str(exc), field="--zone") from None
        entries = sample_calendar(campaign, signed_up_at=signed_up_at or now, zones=chosen)
    return entries


def sample_calendar(
    campaign: Campaign,
    *,
    signed_up_at: datetime | str,
    zones: tuple[str, ...] = SAMPLE_ZONES,
) -> list[CalendarEntry]:
    """What a sign-up at `signed_up_at` would get in each sample zone, before anyone enrolls."""
    entries = []
    for zone_name in zones:
        if isinstance(signed_up_at, str):
            try:
                at = schedule.parse_instant(signed_up_at, schedule.zone(zone_name))
            except ValueError as exc:
                raise InputError(str(exc), field="--signed-up-at") from None
        else:
            at = signed_up_at
        for step, due in zip(campaign.steps, plan(campaign, at, zone_name), strict=True):
            entries.append(
                CalendarEntry(
                    contact=f"sample ({zone_name})",
                    contact_id=None,
                    first_name=None,
                    timezone=zone_name,
                    position=step.position,
                    step_key=step.key,
                    subject=step.subject,
                    due_at=due,
                    status="planned",
                    sent_at=None,
                    note=_note(campaign, step.key, at, due, zone_name),
                    condition=f"decided when due: {step.when.describe()}" if step.when else "",
                )
            )
    return entries


def _note(
    campaign: Campaign, key: str, signed_up_at: datetime, due: datetime, zone_name: str
) -> str:
    """Why a due time is not simply sign-up + delay, and any DST shift since sign-up."""
    try:
        step = campaign.step(key)
    except KeyError:
        return "step removed"
    tz = schedule.zone(zone_name)
    window = campaign.window
    nominal = schedule.add_delay(signed_up_at, step.delay, tz)
    local = nominal.astimezone(tz)
    notes = []
    if due != nominal:
        if due < nominal:
            notes.append("re-planned")
        elif local.date() in window.closed:
            notes.append(f"closed {local.date().isoformat()}")
        elif local.weekday() not in window.days:
            notes.append(f"no sending on {local:%a}")
        elif schedule.opening_containing(nominal, window, tz) is None:
            notes.append(f"{local:%H:%M} outside {window.start:%H:%M}-{window.end:%H:%M}")
        if notes and due > schedule.into_window(nominal, window, tz):
            notes.append("then one per opening / min gap")
        elif not notes:
            notes.append("one per opening / min gap")
    before = signed_up_at.astimezone(tz).utcoffset()
    after = due.astimezone(tz).utcoffset()
    if before != after:
        notes.append(f"DST: UTC{_offset(after)} (signed up at UTC{_offset(before)})")
    return "; ".join(notes)


def _offset(value) -> str:
    minutes = int(value.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
