"""The database's counts, read at each scrape: deliveries, the queue, suppressions.

Three grouped queries per scrape, each on an index (deliveries by status through
ix_deliveries_claim's leading column, suppressions by primary key), so a scrape costs
milliseconds even with millions of rows. Due means due on the real clock, among the
rows a worker would claim (active enrollments of active campaigns). A database that
does not answer gives `dripmail_database_up 0` and none of the rest, never a failed
scrape; the reason goes to the log (its type only: a driver's text may name the host).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from campaigns.reporting.reports import status_counts
from campaigns.storage.statuses import CampaignStatus, DeliveryStatus, EnrollmentStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import campaigns, deliveries, enrollments, suppressions

log = logging.getLogger("dripmail.metrics")


class StoreCollector(Collector):
    """Gauges read from the store when Prometheus scrapes; `clock` gives Unix time."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "dripmail_database_up", "1 when the last scrape could read the database, else 0"
        )
        path = self.store.path
        try:
            if path is not None and not path.is_file():
                # A connection would make an empty SQLite database there: ask nothing.
                raise FileNotFoundError("the SQLite database file is missing")
            families = list(self._read())
        except (SQLAlchemyError, FileNotFoundError) as exc:
            log.warning("metrics: the database did not answer (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> Iterator[GaugeMetricFamily]:
        by_status = GaugeMetricFamily(
            "dripmail_deliveries",
            "Deliveries by campaign and status",
            labels=["campaign", "status"],
        )
        for campaign, counts in sorted(status_counts(self.store).items()):
            for status, count in counts.items():
                by_status.add_metric([campaign, status], count)
        yield by_status

        now = self.clock()
        queue = GaugeMetricFamily(
            "dripmail_queue_deliveries",
            "Scheduled deliveries a worker would claim: due now (real clock) or later",
            labels=["campaign", "when"],
        )
        oldest = GaugeMetricFamily(
            "dripmail_queue_oldest_due_age_seconds",
            "How long the oldest due delivery has waited (0 when none is due)",
            labels=["campaign"],
        )
        for campaign, due, later, first in self._queue(datetime.fromtimestamp(now, UTC)):
            queue.add_metric([campaign, "due"], due)
            queue.add_metric([campaign, "later"], later)
            oldest.add_metric([campaign], max(now - first.timestamp(), 0.0) if due else 0.0)
        yield queue
        yield oldest

        held = GaugeMetricFamily("dripmail_suppressions", "Addresses suppressed (never mailed)")
        with self.store.connect() as conn:
            held.add_metric([], conn.scalar(select(func.count()).select_from(suppressions)) or 0)
        yield held

    def _queue(self, now: datetime) -> list[tuple[str, int, int, datetime]]:
        """(campaign, due, later, oldest due time) for each active campaign with rows."""
        is_due = deliveries.c.due_at <= now
        query = (
            select(
                enrollments.c.campaign,
                func.count().filter(is_due),
                func.count().filter(~is_due),
                func.min(deliveries.c.due_at),
            )
            .select_from(deliveries)
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .join(campaigns, campaigns.c.name == enrollments.c.campaign)
            .where(
                deliveries.c.status == DeliveryStatus.SCHEDULED,
                enrollments.c.status == EnrollmentStatus.ACTIVE,
                campaigns.c.status == CampaignStatus.ACTIVE,
            )
            .group_by(enrollments.c.campaign)
            .order_by(enrollments.c.campaign)
        )
        with self.store.connect() as conn:
            return [(name, due, later, first) for name, due, later, first in conn.execute(query)]
