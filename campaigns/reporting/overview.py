"""Every published campaign at a glance: its state, enrolled, pending, sent in the last week.

Read-only, a few grouped queries (no per-campaign loop), for the console's dashboard.
Counts only: no contact in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from campaigns.storage.statuses import PENDING, CampaignStatus, DeliveryStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import campaigns, deliveries, enrollments

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
    sent_recently: int  # sent in the last 7 days
    updated_at: datetime


def campaign_overview(store: Store, *, now: datetime) -> list[CampaignOverview]:
    """One line per published campaign, by name."""
    with store.connect() as conn:
        rows = conn.execute(select(campaigns).order_by(campaigns.c.name)).all()
        enrolled = dict(
            conn.execute(
                select(enrollments.c.campaign, func.count()).group_by(enrollments.c.campaign)
            ).all()
        )
        by_campaign = (
            select(enrollments.c.campaign, func.count())
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .group_by(enrollments.c.campaign)
        )
        pending = dict(conn.execute(by_campaign.where(deliveries.c.status.in_(PENDING))).all())
        sent = dict(
            conn.execute(
                by_campaign.where(
                    deliveries.c.status == DeliveryStatus.SENT, deliveries.c.sent_at >= now - RECENT
                )
            ).all()
        )
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
