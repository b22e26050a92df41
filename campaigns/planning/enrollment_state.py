"""An enrollment as the clinic's systems see it: found by exact address, its state and
planned calendar, and cancelled on request (the Enrollment API, web/enrollment_api.py).

Nothing here lists or searches contacts: an address is looked up only after
normalise_email, by equality, so a partial address or a pattern finds nobody. The
calendar gives each step's key, due time and status, never a subject or body.
Cancelling stops every email not yet handed to a sender (scheduled or claimed rows
become `cancelled`, their lease cleared so a worker holding one can no longer send it);
rows already `sending` are left to finish, and counted. The enrollment becomes
`cancelled` unless it had already ended (unsubscribed, converted): doing it twice
changes nothing the second time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select, update

from campaigns.errors import ConfigurationError, InputError, NotFoundError
from campaigns.planning import schedule
from campaigns.planning.contacts import normalise_email
from campaigns.planning.conversions import RowsBusy, cancel_pending
from campaigns.storage.statuses import LIVE_ENROLLMENT, PENDING, DeliveryStatus, EnrollmentStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import contacts, deliveries, enrollments

log = logging.getLogger("dripmail.planning")

CANCEL_REASON = "enrollment cancelled through the API"
_ATTEMPTS = 200  # a worker's hand-off holds rows for milliseconds; about a minute in all


def _utc(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def enrollments_of(store: Store, email: str) -> list[dict]:
    """The enrollments of the contact with exactly this address (normalised as stored):
    [] for an address no contact holds. InputError (field `email`) for one that is not
    an address."""
    try:
        address = normalise_email(email)
    except ValueError as exc:
        raise InputError(str(exc), field="email") from None
    with store.connect() as conn:
        rows = conn.execute(
            select(
                enrollments.c.id,
                enrollments.c.contact_id,
                enrollments.c.campaign,
                enrollments.c.status,
                enrollments.c.signed_up_at,
            )
            .join(contacts, contacts.c.id == enrollments.c.contact_id)
            .where(contacts.c.email == address)
            .order_by(enrollments.c.id)
        ).all()
    return [
        {
            "enrollment_id": row.id,
            "contact_id": row.contact_id,
            "campaign": row.campaign,
            "status": row.status,
            "signed_up_at": _utc(row.signed_up_at),
        }
        for row in rows
    ]


def enrollment_state(store: Store, enrollment_id: int) -> dict:
    """The enrollment's state and planned calendar (step key, due time, status);
    NotFoundError for an unknown id or an erased contact's enrollment."""
    with store.connect() as conn:
        row = conn.execute(
            select(
                enrollments.c.id,
                enrollments.c.contact_id,
                enrollments.c.campaign,
                enrollments.c.status,
                enrollments.c.signed_up_at,
                enrollments.c.paused_at,
                enrollments.c.converted_at,
                contacts.c.timezone,
            )
            .join(contacts, contacts.c.id == enrollments.c.contact_id)
            .where(enrollments.c.id == enrollment_id, contacts.c.email.is_not(None))
        ).first()
        if row is None:
            raise NotFoundError("no such enrollment")
        zone = schedule.zone(row.timezone)
        calendar = [
            {
                "step": d.step_key,
                "status": d.status,
                "due_utc": _utc(d.due_at),
                "due_local": d.due_at.astimezone(zone).isoformat(),
                "sent_at": _utc(d.sent_at),
            }
            for d in conn.execute(
                select(
                    deliveries.c.step_key,
                    deliveries.c.status,
                    deliveries.c.due_at,
                    deliveries.c.sent_at,
                )
                .where(deliveries.c.enrollment_id == row.id)
                .order_by(deliveries.c.position)
            )
        ]
    return {
        "enrollment_id": row.id,
        "contact_id": row.contact_id,
        "campaign": row.campaign,
        "status": row.status,
        "timezone": row.timezone,
        "signed_up_at": _utc(row.signed_up_at),
        "paused_at": _utc(row.paused_at),
        "converted_at": _utc(row.converted_at),
        "calendar": calendar,
    }


@dataclass(frozen=True)
class CancelResult:
    """What cancelling did: emails withdrawn now, emails already handed to a sender
    (`sending`) that will finish, and the enrollment's status after."""

    enrollment_id: int
    status: str
    cancelled: int
    left_to_finish: int

    def as_dict(self) -> dict:
        return {
            "enrollment_id": self.enrollment_id,
            "status": self.status,
            "cancelled": self.cancelled,
            "left_to_finish": self.left_to_finish,
        }


def cancel_enrollment(store: Store, enrollment_id: int, *, now: datetime) -> CancelResult:
    """Cancel the enrollment's pending emails and mark it cancelled; idempotent.

    NotFoundError for an unknown id; ConfigurationError when its rows stayed locked by
    workers for about a minute (nothing changed: try again).
    """
    for attempt in range(_ATTEMPTS):
        try:
            result = _cancel(store, enrollment_id, now=now)
            break
        except RowsBusy:  # rolled back: nothing changed; a worker's hand-off is brief
            time.sleep(min(0.2, 0.005 * (attempt + 1)))
    else:
        raise ConfigurationError(
            "the enrollment's emails stayed locked by a worker: nothing changed, try again"
        )
    log.info(
        "enrollment %d cancelled: %d pending emails cancelled, %d left to finish",
        enrollment_id,
        result.cancelled,
        result.left_to_finish,
    )
    return result


def _cancel(store: Store, enrollment_id: int, *, now: datetime) -> CancelResult:
    """One try of cancel_enrollment, in one transaction."""
    with store.begin() as conn:
        query = select(enrollments.c.status).where(enrollments.c.id == enrollment_id)
        if conn.dialect.name != "sqlite":
            # The enrollment first, as a worker's hand-off locks it: whoever comes second
            # waits before holding any delivery row (see conversions.mark_converted).
            query = query.with_for_update(key_share=True)
        status = conn.scalar(query)
        if status is None:
            raise NotFoundError("no such enrollment")
        cancelled = cancel_pending(
            conn, _locked_pending(conn, enrollment_id), CANCEL_REASON, now=now
        )
        if status in LIVE_ENROLLMENT:
            conn.execute(
                update(enrollments)
                .where(enrollments.c.id == enrollment_id)
                .values(status=EnrollmentStatus.CANCELLED)
            )
            status = EnrollmentStatus.CANCELLED
        left = conn.scalar(
            select(func.count())
            .select_from(deliveries)
            .where(
                deliveries.c.enrollment_id == enrollment_id,
                deliveries.c.status == DeliveryStatus.SENDING,
            )
        )
    return CancelResult(enrollment_id, str(status), cancelled, int(left or 0))


def _locked_pending(conn: Connection, enrollment_id: int) -> list[int]:
    """The enrollment's pending delivery ids, locked on PostgreSQL without waiting:
    RowsBusy when a worker holds one (roll back and try again)."""
    query = (
        select(deliveries.c.id)
        .where(deliveries.c.enrollment_id == enrollment_id, deliveries.c.status.in_(PENDING))
        .order_by(deliveries.c.id)
    )
    if conn.dialect.name == "sqlite":  # one writer at a time: nothing to lock
        return list(conn.scalars(query))
    wanted = list(conn.scalars(query))
    got = list(conn.scalars(query.with_for_update(skip_locked=True)))
    if got != wanted:
        raise RowsBusy
    return got
