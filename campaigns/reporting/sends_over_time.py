"""Sends over time: a campaign's sent emails counted per UTC day (the console's chart).

Read from the sent emails the database counts per campaign and UTC hour
(reporting/counts.py, migration 0024): a few hundred rows, whatever the deliveries. Days with
no send between the first and the last are filled with zero, so a chart's gaps show.
"""

from __future__ import annotations

from datetime import date, timedelta

from campaigns.reporting.counts import sent_per_day
from campaigns.storage.store import Store

__all__ = ["MAX_DAYS", "sends_per_day"]

MAX_DAYS = 366  # the chart shows at most the last year of sends


def sends_per_day(store: Store, campaign: str) -> list[tuple[date, int]]:
    """(day, sent) for each UTC day from the first send to the last (at most MAX_DAYS)."""
    with store.connect() as conn:
        counts = sent_per_day(conn, campaign)
    if not counts:
        return []
    last = max(counts)
    first = max(min(counts), last - timedelta(days=MAX_DAYS - 1))
    return [
        (first + timedelta(days=n), counts.get(first + timedelta(days=n), 0))
        for n in range((last - first).days + 1)
    ]
