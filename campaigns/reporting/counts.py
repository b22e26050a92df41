"""The counts the database keeps for the console (migration 0024), read.

Triggers on enrollments, deliveries and events keep small tables up to date in the
transaction of every write (campaigns/storage/migrations/versions/0024_console_counts.py),
so the dashboard and a campaign's statistics read a few hundred rows, never the
deliveries and events themselves. The exceptions are two indexed look-ups over one
hour of pending deliveries (ix_deliveries_claim): the exact first due time of each
campaign and the pending emails due before the end of the next 7 days.

Counts only: no contact in any of them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, func, select

from campaigns.storage.statuses import PENDING
from campaigns.storage.tables import (
    count_deliveries,
    count_due_hours,
    count_enrolled,
    count_events,
    count_sent_hours,
    deliveries,
    enrollments,
)

__all__ = [
    "deliveries_by_status",
    "enrolled",
    "events_by_kind",
    "hour_key",
    "next_sends",
    "sent_per_day",
    "sent_since",
    "status_totals",
]

_HOUR = "%Y-%m-%d %H"


def hour_key(at: datetime) -> str:
    """The UTC hour `at` falls in, as the count tables key it ('YYYY-MM-DD HH')."""
    return at.astimezone(UTC).strftime(_HOUR)


def _hour_start(key: str) -> datetime:
    return datetime.strptime(key, _HOUR).replace(tzinfo=UTC)


def enrolled(conn: Connection) -> dict[str, int]:
    """campaign -> enrollments, whatever their status."""
    query = select(count_enrolled.c.campaign, count_enrolled.c.n).where(count_enrolled.c.n != 0)
    return {name: int(n) for name, n in conn.execute(query)}


def status_totals(conn: Connection, statuses: Collection[str]) -> dict[str, int]:
    """campaign -> deliveries in any of `statuses`, all steps."""
    query = (
        select(count_deliveries.c.campaign, func.sum(count_deliveries.c.n))
        .where(count_deliveries.c.status.in_(statuses))
        .group_by(count_deliveries.c.campaign)
    )
    return {name: int(n) for name, n in conn.execute(query) if n}


def deliveries_by_status(conn: Connection, campaign: str, status: str) -> dict[str, int]:
    """step_key -> deliveries of `campaign` in `status`."""
    query = select(count_deliveries.c.step_key, count_deliveries.c.n).where(
        count_deliveries.c.campaign == campaign,
        count_deliveries.c.status == status,
        count_deliveries.c.n != 0,
    )
    return {key: int(n) for key, n in conn.execute(query)}


def events_by_kind(conn: Connection, campaign: str | None = None) -> dict[tuple[str, str], int]:
    """(step_key, kind) -> deliveries with at least one event of that kind, for one
    campaign; with campaign=None, (campaign, kind) over all steps of every campaign."""
    if campaign is not None:
        query = select(count_events.c.step_key, count_events.c.kind, count_events.c.n).where(
            count_events.c.campaign == campaign, count_events.c.n != 0
        )
    else:
        query = select(
            count_events.c.campaign, count_events.c.kind, func.sum(count_events.c.n)
        ).group_by(count_events.c.campaign, count_events.c.kind)
    return {(first, kind): int(n) for first, kind, n in conn.execute(query) if n}


def sent_since(conn: Connection, since: datetime) -> dict[str, int]:
    """campaign -> emails sent from the start of the UTC hour of `since` on."""
    query = (
        select(count_sent_hours.c.campaign, func.sum(count_sent_hours.c.n))
        .where(count_sent_hours.c.hour >= hour_key(since))
        .group_by(count_sent_hours.c.campaign)
    )
    return {name: int(n) for name, n in conn.execute(query) if n}


def sent_per_day(conn: Connection, campaign: str) -> dict[date, int]:
    """UTC day -> emails of `campaign` sent that day (days with a send only)."""
    query = select(count_sent_hours.c.hour, count_sent_hours.c.n).where(
        count_sent_hours.c.campaign == campaign, count_sent_hours.c.n != 0
    )
    days: dict[date, int] = defaultdict(int)
    for hour, n in conn.execute(query):
        days[date.fromisoformat(hour[:10])] += int(n)
    return {day: n for day, n in days.items() if n}


def _pending_in(conn: Connection, start: datetime, end: datetime, names: Collection[str]):
    """(campaign, first due_at, count) of pending deliveries due in [start, end), read
    through the claim index's (status, due_at): at most an hour of pending rows."""
    query = (
        select(enrollments.c.campaign, func.min(deliveries.c.due_at), func.count())
        .select_from(deliveries)
        .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
        .where(
            deliveries.c.status.in_(PENDING),
            deliveries.c.due_at >= start,
            deliveries.c.due_at < end,
            enrollments.c.campaign.in_(names),
        )
        .group_by(enrollments.c.campaign)
    )
    return conn.execute(query).all()


def next_sends(
    conn: Connection, now: datetime, within: timedelta
) -> dict[str, tuple[datetime, int]]:
    """campaign -> (its earliest pending email's due time, pending emails due before
    now + within, overdue ones included); campaigns with nothing pending are absent."""
    rows = conn.execute(
        select(count_due_hours.c.campaign, count_due_hours.c.hour, count_due_hours.c.n).where(
            count_due_hours.c.n != 0
        )
    ).all()
    edge = hour_key(now + within)
    first_hour: dict[str, str] = {}
    soon: dict[str, int] = defaultdict(int)
    for name, hour, n in rows:
        if name not in first_hour or hour < first_hour[name]:
            first_hour[name] = hour
        if hour < edge:
            soon[name] += int(n)
    # The hour holding now + within counts up to that instant only.
    edge_start = _hour_start(edge)
    edge_names = [name for name, hour, _n in rows if hour == edge]
    if edge_names:
        for name, _first, n in _pending_in(conn, edge_start, now + within, edge_names):
            soon[name] += int(n)
    first: dict[str, datetime] = {}
    by_hour: dict[str, list[str]] = defaultdict(list)
    for name, hour in first_hour.items():
        by_hour[hour].append(name)
    for hour, names in by_hour.items():
        start = _hour_start(hour)
        for name, earliest, _n in _pending_in(conn, start, start + timedelta(hours=1), names):
            first[name] = earliest
    return {name: (first[name], soon.get(name, 0)) for name in first}
