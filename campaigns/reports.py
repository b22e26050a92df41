"""Read-only views of the store: status counts, calendars, the sending timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from . import schedule
from .enroll import normalise_email, plan
from .publish import open_campaign
from .spec import Campaign
from .store import DeliveryStatus, Store, contacts, deliveries, enrollments

SAMPLE_ZONES = ("America/New_York", "Europe/London", "Australia/Sydney")


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
            result.setdefault(name, dict.fromkeys(DeliveryStatus.ALL, 0))[status] = count
    return result


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

    @property
    def local(self) -> datetime:
        return (self.sent_at or self.due_at).astimezone(schedule.zone(self.timezone))


def calendar(
    store: Store, campaign: Campaign, *, email: str | None = None, limit: int = 20
) -> list[CalendarEntry]:
    """Each enrolled contact's emails (or one contact's), in step order."""
    subjects = {step.key: step.subject for step in campaign.steps}
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
        return [
            CalendarEntry(
                contact=row.email or f"contact {row.id}",
                contact_id=row.id,
                first_name=row.first_name,
                timezone=row.timezone,
                position=row.position,
                step_key=row.step_key,
                subject=subjects.get(row.step_key, f"({row.step_key}: removed)"),
                due_at=row.due_at,
                status=row.status,
                sent_at=row.sent_at,
            )
            for row in conn.execute(query)
        ]


def calendar_for(
    store: Store, ref: str, *, email: str | None = None, limit: int = 20, now: datetime
) -> list[CalendarEntry]:
    """The calendar of enrolled contacts, or a sample sign-up at `now` when none is enrolled."""
    campaign = open_campaign(store, ref)
    entries = calendar(store, campaign, email=email, limit=limit)
    if not entries and not email:
        entries = sample_calendar(campaign, signed_up_at=now)
    return entries


def sample_calendar(
    campaign: Campaign, *, signed_up_at: datetime, zones: tuple[str, ...] = SAMPLE_ZONES
) -> list[CalendarEntry]:
    """What a sign-up at `signed_up_at` would get in each sample zone, before anyone enrolls."""
    entries = []
    for zone_name in zones:
        for step, due in zip(campaign.steps, plan(campaign, signed_up_at, zone_name), strict=True):
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
                )
            )
    return entries
