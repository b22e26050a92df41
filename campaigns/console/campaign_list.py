"""The console's campaign list: workspace folders and published campaigns, one row each.

A row's state is `draft` (a folder never published, not submitted), `in review` (its
newest submission waits for a verdict or approved and not yet published), `published`
or `paused` (with the reason when dripmail paused it by itself). Counts come from
reporting.overview and alerts from reporting.counts (the counts the database keeps):
unknown deliveries, a bounce rate over 2 % of emails sent, any complaint. Counts only, no contact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from campaigns.console.reviews import Review, latest_by_campaign
from campaigns.console.workspace import folders
from campaigns.reporting import counts
from campaigns.reporting.overview import campaign_overview
from campaigns.storage.statuses import DeliveryStatus, ReviewState
from campaigns.storage.store import Store
from campaigns.storage.tables import campaigns

__all__ = ["BOUNCE_ALERT", "CampaignRow", "alert_lines", "campaign_rows", "state_of"]

BOUNCE_ALERT = 0.02  # a bounce rate above 2 % of emails sent
NEXT_DAYS = timedelta(days=7)


@dataclass
class CampaignRow:
    name: str  # the campaign's name (published) or, for a folder that does not load, its folder
    folder: str | None  # the workspace folder's name (None: published from elsewhere)
    title: str
    state: str  # draft, in review, published, paused
    pause_reason: str | None = None  # why dripmail paused it by itself (None: by hand or not)
    enrolled: int = 0
    pending: int = 0
    sent_recently: int = 0
    next_send: datetime | None = None
    due_soon: int = 0  # pending emails due in the next 7 days
    alerts: list[str] = field(default_factory=list)
    error: str | None = None  # why the folder does not load


def state_of(published: str | None, review: Review | None) -> str:
    """draft / in review / published / paused from the campaign row's status and review."""
    if review is not None and review.state in (ReviewState.SUBMITTED, ReviewState.APPROVED):
        return "in review"
    if published is None:
        return "draft"
    return published


def campaign_rows(store: Store, root: Path, *, now: datetime) -> list[CampaignRow]:
    """Every campaign of the workspace and every published one, by name."""
    overview = {row.name: row for row in campaign_overview(store, now=now)}
    reviews = latest_by_campaign(store)
    reasons = _pause_reasons(store)
    alerts = _alerts(store)
    upcoming = _next_sends(store, now)
    rows: dict[str, CampaignRow] = {}
    for folder in folders(root):
        campaign = folder.campaign
        name = campaign.name if campaign else folder.name
        rows[name] = CampaignRow(
            name,
            folder.name,
            (campaign.spec.title or campaign.name) if campaign else folder.name,
            "draft",
            error=folder.error,
        )
    for name, published in overview.items():
        if name not in rows:
            rows[name] = CampaignRow(name, None, name, published.state)
    for name, row in rows.items():
        published = overview.get(name)
        row.state = state_of(published.state if published else None, reviews.get(name))
        if published is not None:
            row.enrolled, row.pending = published.enrolled, published.pending
            row.sent_recently = published.sent_recently
            if published.state == "paused":
                row.pause_reason = reasons.get(name)
        row.next_send, row.due_soon = upcoming.get(name, (None, 0))
        row.alerts = alerts.get(name, [])
    return [rows[name] for name in sorted(rows)]


def _pause_reasons(store: Store) -> dict[str, str]:
    """Why each paused campaign was paused by dripmail itself (a pause by hand has none)."""
    with store.connect() as conn:
        rows = conn.execute(
            select(campaigns.c.name, campaigns.c.pause_reason).where(
                campaigns.c.pause_reason.is_not(None)
            )
        ).all()
    return {name: str(reason) for name, reason in rows}


def _alerts(store: Store) -> dict[str, list[str]]:
    # From the counts the database keeps: deliveries per status, and deliveries with a
    # bounce (hard or soft: `bounced_any`) or a complaint.
    with store.connect() as conn:
        unknown = counts.status_totals(conn, (DeliveryStatus.UNKNOWN,))
        sent = counts.status_totals(conn, (DeliveryStatus.SENT,))
        by_kind = counts.events_by_kind(conn)
    bounced = {name: n for (name, kind), n in by_kind.items() if kind == "bounced_any"}
    complained = {name: n for (name, kind), n in by_kind.items() if kind == "complaints"}
    return alert_lines(unknown, sent, bounced, complained)


def alert_lines(
    unknown: dict[str, int],
    sent: dict[str, int],
    bounced: dict[str, int],
    complained: dict[str, int],
) -> dict[str, list[str]]:
    """campaign -> its alerts, from its unknown and sent deliveries, and its deliveries
    with a bounce (hard or soft) and with a complaint."""
    found: dict[str, list[str]] = {}
    for name, count in sorted(unknown.items()):
        found.setdefault(name, []).append(
            f"{count} unknown deliver{'y' if count == 1 else 'ies'}: "
            "see `dripmail deliveries --status unknown`"
        )
    for name, count in sorted(bounced.items()):
        total = sent.get(name, 0) + unknown.get(name, 0)
        if total and count / total > BOUNCE_ALERT:
            found.setdefault(name, []).append(
                f"bounce rate {count / total:.1%} ({count} of {total} sent), over 2 %"
            )
    for name, count in sorted(complained.items()):
        found.setdefault(name, []).append(f"{count} complaint{'' if count == 1 else 's'}")
    return found


def _next_sends(store: Store, now: datetime) -> dict[str, tuple[datetime, int]]:
    with store.connect() as conn:
        return counts.next_sends(conn, now, NEXT_DAYS)
