"""The counts the database keeps for the console (migration 0024), read.

Triggers on enrollments, deliveries and events keep small tables up to date in the
transaction of every write (campaigns/storage/migrations/versions/0024_console_counts.py),
so the dashboard and a campaign's statistics read a few hundred rows, never the
deliveries and events themselves. The exceptions are two indexed look-ups over one
hour of pending deliveries (ix_deliveries_claim): the exact first due time of each
campaign and the pending emails due before the end of the next 7 days.

On PostgreSQL the triggers append their changes to count_changes instead (no shared
row locked by the workers' transactions), so each count read here is the count table's
row plus its pending changes, added up in one statement (storage/count_fold.py moves the
changes in; a reader folds first when it finds many).

Counts only: no contact in any of them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, Table, func, select, union_all
from sqlalchemy.sql import Subquery

from campaigns.storage.count_fold import fold_if_many
from campaigns.storage.statuses import PENDING
from campaigns.storage.tables import (
    count_changes,
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


def _counted(conn: Connection, table: Table, counter: str, keys: tuple[str, ...]) -> Subquery:
    """`table`'s counts with the pending changes of `counter` added, one row per key.

    Folds first when many changes are pending (PostgreSQL)."""
    fold_if_many(conn)
    others = (count_changes.c.k1, count_changes.c.k2)[: len(keys)]
    both = union_all(
        select(table.c.campaign, *(table.c[k] for k in keys), table.c.n),
        select(
            count_changes.c.campaign,
            *(column.label(k) for column, k in zip(others, keys, strict=True)),
            count_changes.c.n,
        ).where(count_changes.c.counter == counter),
    ).subquery()
    columns = (both.c.campaign, *(both.c[k] for k in keys))
    return select(*columns, func.sum(both.c.n).label("n")).group_by(*columns).subquery(table.name)


def enrolled(conn: Connection) -> dict[str, int]:
    """campaign -> enrollments, whatever their status."""
    counted = _counted(conn, count_enrolled, "enrolled", ())
    query = select(counted.c.campaign, counted.c.n).where(counted.c.n != 0)
    return {name: int(n) for name, n in conn.execute(query)}


def status_totals(conn: Connection, statuses: Collection[str]) -> dict[str, int]:
    """campaign -> deliveries in any of `statuses`, all steps."""
    counted = _counted(conn, count_deliveries, "deliveries", ("step_key", "status"))
    query = (
        select(counted.c.campaign, func.sum(counted.c.n))
        .where(counted.c.status.in_(statuses))
        .group_by(counted.c.campaign)
    )
    return {name: int(n) for name, n in conn.execute(query) if n}


def deliveries_by_status(conn: Connection, campaign: str, status: str) -> dict[str, int]:
    """step_key -> deliveries of `campaign` in `status`."""
    counted = _counted(conn, count_deliveries, "deliveries", ("step_key", "status"))
    query = select(counted.c.step_key, counted.c.n).where(
        counted.c.campaign == campaign,
        counted.c.status == status,
        counted.c.n != 0,
    )
    return {key: int(n) for key, n in conn.execute(query)}


def events_by_kind(conn: Connection, campaign: str | None = None) -> dict[tuple[str, str], int]:
    """(step_key, kind) -> deliveries with at least one event of that kind, for one
    campaign; with campaign=None, (campaign, kind) over all steps of every campaign."""
    counted = _counted(conn, count_events, "events", ("step_key", "kind"))
    if campaign is not None:
        query = select(counted.c.step_key, counted.c.kind, counted.c.n).where(
            counted.c.campaign == campaign, counted.c.n != 0
        )
    else:
        query = select(counted.c.campaign, counted.c.kind, func.sum(counted.c.n)).group_by(
            counted.c.campaign, counted.c.kind
        )
    return {(first, kind): int(n) for first, kind, n in conn.execute(query) if n}


def sent_since(conn: Connection, since: datetime) -> dict[str, int]:
    """campaign -> emails sent from the start of the UTC hour of `since` on."""
    counted = _counted(conn, count_sent_hours, "sent", ("hour",))
    query = (
        select(counted.c.campaign, func.sum(counted.c.n))
        .where(counted.c.hour >= hour_key(since))
        .group_by(counted.c.campaign)
    )
    return {name: int(n) for name, n in conn.execute(query) if n}


def sent_per_day(conn: Connection, campaign: str) -> dict[date, int]:
    """UTC day -> emails of `campaign` sent that day (days with a send only)."""
    counted = _counted(conn, count_sent_hours, "sent", ("hour",))
    query = select(counted.c.hour, counted.c.n).where(
        counted.c.campaign == campaign, counted.c.n != 0
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
    counted = _counted(conn, count_due_hours, "due", ("hour",))
    rows = conn.execute(
        select(counted.c.campaign, counted.c.hour, counted.c.n).where(counted.c.n != 0)
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
