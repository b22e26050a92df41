"""Every published campaign at a glance: its state, enrolled, pending, sent in the last week.

Read-only, from the counts the database keeps (reporting/counts.py, migration 0024), for
the console's dashboard. "Sent in the last 7 days" counts whole UTC hours: from the start
of the hour 7 days ago. Counts only: no contact in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from campaigns.reporting import counts
from campaigns.storage.statuses import PENDING, CampaignStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import campaigns

__all__ = ["RECENT", "CampaignOverview", "campaign_overview"]

RECENT = timedelta(days=7)


@dataclass(frozen=True)
class CampaignOverview:
    name: str
    kind: str  # "drip" or "newsletter"
    version: str
    state: str  # "published" or "paused"
    enrolled: int
    pending: int  # emails planned and not yet handed to a sender
    sent_recently: int  # sent in the last 7 days (from the start of that hour)
    updated_at: datetime


def campaign_overview(store: Store, *, now: datetime) -> list[CampaignOverview]:
    """One line per published campaign, by name."""
    # Read from the counts the database keeps (reporting/counts.py), not the deliveries.
    with store.connect() as conn:
        rows = conn.execute(select(campaigns).order_by(campaigns.c.name)).all()
        enrolled = counts.enrolled(conn)
        pending = counts.status_totals(conn, PENDING)
        sent = counts.sent_since(conn, now - RECENT)
    return [
        CampaignOverview(
            row.name,
            row.kind or "drip",
            row.version,
            "paused" if row.status == CampaignStatus.PAUSED else "published",
            enrolled.get(row.name, 0),
            pending.get(row.name, 0),
            sent.get(row.name, 0),
            row.updated_at,
        )
        for row in rows
    ]
