"""Conversions of a campaign: how many enrollments reached its goal, and after which email.

A conversion is attributed to the step of the contact's last email of the campaign
`sent` at or before the event's time (the email that was in their inbox when they
booked); one with no such email is counted as "before any email".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, func, select

from campaigns.storage.statuses import DeliveryStatus
from campaigns.storage.tables import deliveries, enrollments


@dataclass
class Conversions:
    """A campaign's conversions: the count, over how many enrolled, and by last step."""

    converted: int = 0
    enrolled: int = 0
    by_step: Counter[str] = field(default_factory=Counter)  # step key -> conversions
    before_any_email: int = 0

    @property
    def rate(self) -> float | None:
        return self.converted / self.enrolled if self.enrolled else None

    def as_dict(self) -> dict:
        return {
            "converted": self.converted,
            "enrolled": self.enrolled,
            "rate": self.rate,
            "by_step": dict(self.by_step),
            "before_any_email": self.before_any_email,
        }


def campaign_conversions(conn: Connection, name: str) -> Conversions:
    """Conversions of campaign `name`, attributed by last email sent before the event."""
    result = Conversions()
    result.enrolled = conn.scalar(
        select(func.count()).select_from(enrollments).where(enrollments.c.campaign == name)
    )
    converted: dict[int, datetime] = dict(
        conn.execute(
            select(enrollments.c.id, enrollments.c.converted_at).where(
                enrollments.c.campaign == name, enrollments.c.converted_at.is_not(None)
            )
        ).all()
    )
    result.converted = len(converted)
    if not converted:
        return result
    last: dict[int, tuple[datetime, str]] = {}
    for enrollment_id, key, sent_at in conn.execute(
        select(deliveries.c.enrollment_id, deliveries.c.step_key, deliveries.c.sent_at)
        .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
        .where(
            enrollments.c.campaign == name,
            enrollments.c.converted_at.is_not(None),
            deliveries.c.status == DeliveryStatus.SENT,
            deliveries.c.sent_at <= enrollments.c.converted_at,
        )
    ):
        if enrollment_id not in last or sent_at > last[enrollment_id][0]:
            last[enrollment_id] = (sent_at, key)
    result.by_step = Counter(key for _, key in last.values())
    result.before_any_email = result.converted - len(last)
    return result
