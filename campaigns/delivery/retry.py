"""Re-queuing deliveries whose outcome is unknown (`dripmail retry --unknown`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update

from campaigns.storage.statuses import DeliveryStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import UNKNOWN_ONLY, deliveries


def retry_unknown(store: Store, *, older_than: timedelta, now: datetime) -> int:
    """Re-queue `unknown` deliveries last touched before `now - older_than` (a staff decision).

    An unknown delivery may have reached the contact: SendGrid has no idempotency key,
    so this is never automatic.
    """
    with store.begin() as conn:
        return conn.execute(
            update(deliveries)
            .where(
                UNKNOWN_ONLY,  # as written, so SQLite uses the partial index ix_deliveries_unknown
                deliveries.c.updated_at <= now - older_than,
            )
            .values(
                status=DeliveryStatus.SCHEDULED,
                due_at=now,
                sent_at=None,
                error="re-queued by staff after an unknown outcome",
                updated_at=now,
            )
        ).rowcount
