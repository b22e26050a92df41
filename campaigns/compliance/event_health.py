"""Provider events' hard bounces and complaints, counted per campaign for the automatic pause.

compliance/events.py hands over the events it stored (never a replay); their counts go
into `health_records` in the same transaction, and once it commits each campaign named
is checked against the rules (delivery/autopause.py, delivery/health_rules.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, select

from campaigns.compliance.event_model import EventKind
from campaigns.delivery import autopause
from campaigns.delivery.alerts import Alerter
from campaigns.errors import DripmailError
from campaigns.storage.publish import load_version
from campaigns.storage.store import Store, utcnow
from campaigns.storage.tables import deliveries, enrollments

COUNTED = (EventKind.BOUNCED_HARD, EventKind.COMPLAINED)


def count_bad_news(
    conn: Connection, stored: Iterable[tuple[EventKind, int | None, str | None]]
) -> dict[str, tuple[int, int]]:
    """(kind, delivery id, campaign) of each stored event -> campaign: (bounced, complained),
    and those counts kept in `health_records`."""
    stored = [item for item in stored if item[0] in COUNTED]
    ids = {delivery_id for _, delivery_id, _ in stored if delivery_id is not None}
    campaign_of = (
        dict(
            conn.execute(
                select(deliveries.c.id, enrollments.c.campaign)
                .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
                .where(deliveries.c.id.in_(ids))
            ).all()
        )
        if ids
        else {}
    )
    bounced: Counter[str] = Counter()
    complained: Counter[str] = Counter()
    for kind, delivery_id, campaign in stored:
        name = campaign_of.get(delivery_id) if delivery_id is not None else campaign
        if name:
            (bounced if kind is EventKind.BOUNCED_HARD else complained)[name] += 1
    counts = {name: (bounced[name], complained[name]) for name in {*bounced, *complained}}
    autopause.record_events(conn, counts, real_now=utcnow())
    return counts


def check_campaigns(store: Store, names: Iterable[str], *, now: datetime) -> list[str]:
    """Check each campaign against the rules; the names of those paused now."""
    paused = []
    alerter = Alerter(store)
    for name in sorted(names):
        try:
            with store.connect() as conn:
                limit = load_version(conn, name).spec.max_error_rate
        except DripmailError:
            continue  # a version that no longer loads is kept back by the run (held.py)
        if autopause.check(store, name, limit, alerter, now=now) is not None:
            paused.append(name)
    return paused
