"""Sends over time: a campaign's sent emails counted per UTC day (the console's chart).

One grouped, indexed query (enrollments by campaign, their deliveries by enrollment),
so the cost grows with the campaign's own deliveries, not the whole table. Days with
no send between the first and the last are filled with zero, so a chart's gaps show.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import func, select

from campaigns.storage.statuses import DeliveryStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import deliveries, enrollments

__all__ = ["MAX_DAYS", "sends_per_day"]

MAX_DAYS = 366  # the chart shows at most the last year of sends


def _as_date(value: object) -> date:
    # SQLite's date() gives text, PostgreSQL's a date.
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def sends_per_day(store: Store, campaign: str) -> list[tuple[date, int]]:
    """(day, sent) for each UTC day from the first send to the last (at most MAX_DAYS)."""
    day = func.date(deliveries.c.sent_at)
    query = (
        select(day, func.count())
        .select_from(enrollments)
        .join(deliveries, deliveries.c.enrollment_id == enrollments.c.id)
        .where(enrollments.c.campaign == campaign, deliveries.c.status == DeliveryStatus.SENT)
        .group_by(day)
    )
    with store.connect() as conn:
        counts = {_as_date(when): count for when, count in conn.execute(query) if when}
    if not counts:
        return []
    last = max(counts)
    first = max(min(counts), last - timedelta(days=MAX_DAYS - 1))
    return [
        (first + timedelta(days=n), counts.get(first + timedelta(days=n), 0))
        for n in range((last - first).days + 1)
    ]
