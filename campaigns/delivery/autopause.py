"""The automatic pause: each hand-off's and events batch's counts kept, the rules applied,
a campaign paused with its reason and an alert raised.

The rules are pure (delivery/health_rules.py); this module reads what they need from
`health_records` (one row per recorded hand-off and per applied events batch, per
campaign, on the real clock), so a check is two small indexed queries, never a scan of
a campaign's deliveries. It is checked after each hand-off's outcomes are recorded
(delivery/handoff.py) and after provider events are applied (compliance/events.py).

A campaign paused here is paused as `dripmail pause` pauses it (its pending emails
held, the claim query skips it), with `pause_kind` and `pause_reason` set; only a
person resumes it (`dripmail resume`, which clears both). The engine never resumes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, func, insert, select, update

from campaigns.delivery.alerts import Alerter, paused_alert
from campaigns.delivery.health_rules import (
    ERROR_WINDOW,
    EVENT_WINDOW,
    FAILED,
    SENT,
    UNKNOWN,
    PauseReason,
    error_verdict,
    events_verdict,
    last_outcomes,
)
from campaigns.storage.statuses import CampaignStatus
from campaigns.storage.store import Store, utcnow
from campaigns.storage.tables import campaigns, health_records

log = logging.getLogger("dripmail.autopause")

KEEP_RECORDS = timedelta(days=30)  # older health records are deleted (heartbeats.py)


def record_handoff(
    conn: Connection, campaign: str, *, sent: int, failed: int, unknown: int, real_now: datetime
) -> None:
    """Keep one hand-off's decided outcomes (nothing when none was decided)."""
    if not sent + failed + unknown:
        return
    conn.execute(
        insert(health_records).values(
            campaign=campaign,
            recorded_at=real_now,
            sent=sent,
            failed=failed,
            unknown=unknown,
            bounced=0,
            complained=0,
            # Failures first: within one hand-off the order means nothing, and a window
            # cut inside this hand-off then keeps its failures (the cautious side).
            outcomes=FAILED * failed + UNKNOWN * unknown + SENT * sent,
        )
    )


def record_events(
    conn: Connection, counts: Mapping[str, tuple[int, int]], *, real_now: datetime
) -> None:
    """Keep an events batch's hard bounces and complaints, by campaign: (bounced, complained)."""
    rows = [
        {
            "campaign": name,
            "recorded_at": real_now,
            "sent": 0,
            "failed": 0,
            "unknown": 0,
            "bounced": bounced,
            "complained": complained,
            "outcomes": None,
        }
        for name, (bounced, complained) in sorted(counts.items())
        if bounced or complained
    ]
    if rows:
        conn.execute(insert(health_records), rows)


def verdict(
    conn: Connection, campaign: str, max_error_rate: float, *, real_now: datetime
) -> PauseReason | None:
    """What the rules say about a campaign now, from its health records."""
    letters = conn.scalars(
        select(health_records.c.outcomes)
        .where(health_records.c.campaign == campaign, health_records.c.outcomes.is_not(None))
        .order_by(health_records.c.id.desc())
        .limit(ERROR_WINDOW)  # each row holds at least one letter
    )
    found = error_verdict(last_outcomes(letters), max_error_rate)
    if found is not None:
        return found
    sent, bounced, complained = conn.execute(
        select(
            func.coalesce(func.sum(health_records.c.sent), 0),
            func.coalesce(func.sum(health_records.c.bounced), 0),
            func.coalesce(func.sum(health_records.c.complained), 0),
        ).where(
            health_records.c.campaign == campaign,
            health_records.c.recorded_at >= real_now - EVENT_WINDOW,
        )
    ).one()
    return events_verdict(int(sent), int(bounced), int(complained))


def pause_for(conn: Connection, campaign: str, why: PauseReason, *, now: datetime) -> bool:
    """Pause an active campaign with its reason; False when it was paused already."""
    return bool(
        conn.execute(
            update(campaigns)
            .where(campaigns.c.name == campaign, campaigns.c.status == CampaignStatus.ACTIVE)
            .values(
                status=CampaignStatus.PAUSED,
                paused_at=now,
                updated_at=now,
                pause_kind=why.kind.value,
                pause_reason=why.reason,
            )
        ).rowcount
    )


def check(
    store: Store,
    campaign: str,
    max_error_rate: float,
    alerter: Alerter,
    *,
    now: datetime,
    real_now: datetime | None = None,
) -> PauseReason | None:
    """Apply the rules to a campaign; pause it and raise an alert when they say so.

    Returns the reason when this call paused it. `now` is the engine's time (a pause's
    start, as `dripmail pause` records it), `real_now` the real clock of the records.
    Never raises for the check itself: sending goes on, and the failure is logged.
    """
    real_now = real_now or utcnow()
    try:
        with store.begin() as conn:
            why = verdict(conn, campaign, max_error_rate, real_now=real_now)
            if why is None or not pause_for(conn, campaign, why, now=now):
                return None
    except Exception:
        log.exception("campaign %s: the automatic pause check failed", campaign)
        return None
    log.warning("campaign %s paused by itself: %s", campaign, why.reason)
    alerter.raise_(paused_alert(campaign, why, real_now))
    return why


def prune(conn: Connection, *, real_now: datetime) -> int:
    """Delete health records older than KEEP_RECORDS."""
    return conn.execute(
        delete(health_records).where(health_records.c.recorded_at < real_now - KEEP_RECORDS)
    ).rowcount
