"""One patient's pending emails across every campaign, and why they wait (`status --email`).

Per campaign, `schedule --email` shows the whole calendar; this view crosses campaigns,
where a patient's own pace applies (planning/pace.py): their pause and their gap hold
between any two of their emails, whatever the campaign.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select

from campaigns.errors import InputError, NotFoundError
from campaigns.planning.contacts import display_address, normalise_email
from campaigns.planning.facts import last_sent
from campaigns.planning.pace import Pace
from campaigns.storage.statuses import PENDING
from campaigns.storage.store import Store
from campaigns.storage.tables import contacts, deliveries, enrollments


@dataclass(frozen=True)
class PendingEmail:
    """One of the patient's emails not yet gone."""

    campaign: str
    position: int
    status: str
    due_at: datetime


@dataclass
class ContactStatus:
    """What waits for one patient, and the choice of theirs that holds it."""

    address: str
    pace: Pace
    now: datetime
    pending: list[PendingEmail] = field(default_factory=list)
    last_sent: datetime | None = None  # their latest email, any campaign

    @property
    def next_possible(self) -> datetime | None:
        """When their own pace lets the next email go, if later than `now`: a due time
        before it is held until then (the dispatcher moves it when it claims it)."""
        earliest = self.pace.not_before(self.now)
        gap = self.pace.gap()
        if self.last_sent is not None and gap:
            earliest = max(earliest or self.now, self.last_sent + gap)
        return earliest if earliest is not None and earliest > self.now else None

    def lines(self) -> list[str]:
        """As `dripmail status --email` prints it."""
        notes = self.pace.notes(self.now)
        why = "; ".join(notes) if notes else "no pause or gap of their own"
        lines = [f"{self.address}: {why}"]
        if self.last_sent is not None:
            lines.append(f"  last email {_shown(self.last_sent)}")
        if (held := self.next_possible) is not None:
            lines.append(f"  next email not before {_shown(held)}")
        if not self.pending:
            lines.append("  no email waiting")
        for email in self.pending:
            lines.append(
                f"  {email.campaign} #{email.position} {email.status}, due {_shown(email.due_at)}"
            )
        return lines


def _shown(instant: datetime) -> str:
    return f"{instant.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def contact_status(store: Store, email: str, *, now: datetime) -> ContactStatus:
    """The patient's pending emails in every campaign, soonest first, and their pace."""
    try:
        address = normalise_email(email)
    except ValueError as exc:
        raise InputError(str(exc), field="--email") from None
    with store.connect() as conn:
        contact = conn.execute(
            select(contacts.c.id, contacts.c.paused_until, contacts.c.min_gap_days).where(
                contacts.c.email == address
            )
        ).first()
        if contact is None:
            raise NotFoundError("no contact has that address")
        rows = conn.execute(
            select(
                enrollments.c.campaign,
                deliveries.c.position,
                deliveries.c.status,
                deliveries.c.due_at,
            )
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .where(enrollments.c.contact_id == contact.id, deliveries.c.status.in_(PENDING))
            .order_by(deliveries.c.due_at, deliveries.c.id)
        ).all()
        last = last_sent(conn, [contact.id]).get(contact.id)
    return ContactStatus(
        display_address(address),
        Pace(contact.paused_until, contact.min_gap_days),
        now,
        [PendingEmail(*row) for row in rows],
        last,
    )
