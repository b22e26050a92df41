"""Helpers for the scheduling tests: a gapped clinic campaign, bulk sign-ups, ticking."""

from __future__ import annotations

import csv
import itertools
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from campaigns.authoring.spec import Campaign, load_folder
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.planning.enroll import import_csv
from campaigns.storage.tables import contacts, deliveries, enrollments
from senders.file import NullSender

ZONES = ("America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata")
GONE = ("sending", "sent", "unknown")


def with_window(folder: Path, window_yaml: str) -> Campaign:
    """Replace the campaign's send_window block; the campaign as loaded."""
    path = folder / "campaign.yaml"
    text = path.read_text()
    path.write_text(
        text[: text.index("send_window:")] + window_yaml + text[text.index("sender:") :]
    )
    return load_folder(folder)


def bulk_signups(
    store, campaign: Campaign, tmp: Path, count: int, start: datetime, every: timedelta, *, now
):
    """Import `count` contacts signed up `every` apart from `start`, zones in turn."""
    path = tmp / "contacts.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name", "timezone", "signed_up_at", "consent"])
        for i in range(count):
            at = (start + every * i).isoformat()
            writer.writerow([f"p{i}@example.com", f"P{i}", ZONES[i % len(ZONES)], at, "form"])
    report = import_csv(store, campaign, path, now=now)
    assert report.enrolled == count and not report.rejected
    return report


def tick(store, start: datetime, end: datetime, step: timedelta = timedelta(hours=2)) -> None:
    """A worker running every `step` of engine time from `start` up to `end`."""
    dispatcher = Dispatcher(store, lambda _c: NullSender())
    at = start
    while at <= end:
        dispatcher.run(now=at)
        at += step


def deliveries_by_contact(store, campaign: str) -> dict[int, list]:
    """Every delivery of the campaign, by contact, in position order."""
    result: dict[int, list] = defaultdict(list)
    with store.connect() as conn:
        for row in conn.execute(
            select(
                contacts.c.id.label("contact_id"),
                contacts.c.timezone,
                enrollments.c.signed_up_at,
                deliveries.c.id,
                deliveries.c.step_key,
                deliveries.c.position,
                deliveries.c.status,
                deliveries.c.due_at,
                deliveries.c.sent_at,
            )
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .join(contacts, contacts.c.id == enrollments.c.contact_id)
            .where(enrollments.c.campaign == campaign)
            .order_by(deliveries.c.position)
        ):
            result[row.contact_id].append(row)
    return result


def email_times(rows) -> list[datetime]:
    """When each email went (sent) or will go (scheduled), in time order."""
    return sorted(
        r.sent_at if r.status in GONE else r.due_at
        for r in rows
        if r.status in (*GONE, "scheduled", "claimed")
    )


def min_gap_of(times: list[datetime]) -> timedelta | None:
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return min(gaps) if gaps else None
