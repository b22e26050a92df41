"""Provider events -> the events table, suppressions, and reconciling `unknown` deliveries.

The one path every provider's events take (compliance/event_model.py is the model): each
provider's webhook, or the mailbox reader, turns its payload into `ProviderEvent`s with a
pure parser of its own (SendGrid's is compliance/sendgrid_events.py) and calls
`apply_provider_events`, so suppressions, settling `unknown` and `dripmail stats` are the
same for every provider.

Only what statistics and compliance need is kept: provider, event id, delivery id, kind
(the `type` column holds the EventKind value) and time. The address an event names is
used for one thing, its keyed hash for a suppression, and is never stored or logged;
neither are IPs, user agents or clicked URLs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from campaigns.compliance.event_health import check_campaigns, count_bad_news
from campaigns.compliance.event_model import NOT_SENT, SUPPRESSING, EventKind, ProviderEvent
from campaigns.compliance.suppressions import contact_ids_for, insert_new, suppress_contacts
from campaigns.planning.contacts import normalise_email
from campaigns.rendering.categories import campaign_category
from campaigns.storage.outbox import emit, listening
from campaigns.storage.statuses import DeliveryStatus, WebhookEvent
from campaigns.storage.store import Store
from campaigns.storage.tables import campaigns, deliveries, enrollments, events

log = logging.getLogger("dripmail.events")

MAX_ID = 2**31 - 1  # the largest id an INTEGER column holds on PostgreSQL
# The provider events an outbound webhook endpoint can hear of (storage/outbox.py).
WEBHOOK_EVENTS = {
    EventKind.BOUNCED_HARD: WebhookEvent.BOUNCED,
    EventKind.BOUNCED_SOFT: WebhookEvent.BOUNCED,
    EventKind.COMPLAINED: WebhookEvent.COMPLAINED,
    EventKind.UNSUBSCRIBED: WebhookEvent.UNSUBSCRIBED,
}


@dataclass
class EventReport:
    """What one batch of provider events did."""

    stored: int = 0
    duplicates: int = 0
    ignored: int = 0  # not an event the model knows (set by the provider's parser)
    suppressed: int = 0  # addresses newly suppressed
    cancelled: int = 0  # pending deliveries cancelled by those suppressions
    reconciled: int = 0  # unknown deliveries settled as sent or failed
    paused: list[str] = field(default_factory=list)  # campaigns paused by these events


def event_address(value: Any) -> str | None:
    """An event's address, normalised as contacts are, for hashing only."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return normalise_email(value)
    except ValueError:
        return value.strip().lower()


def delivery_id_of(value: Any) -> int | None:
    """Our delivery id from what a message carried: digits only (a send-test's `test-...`
    is not one), and small enough to be an id at all."""
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        # Ids are INTEGER columns (32-bit on PostgreSQL): a larger number is not one of
        # ours, and looking it up would fail the whole batch.
        return value if 0 < value <= MAX_ID else None
    return None


def _campaigns_by_category(conn: Connection) -> dict[str, str]:
    """Opaque category `c-<hash>` -> campaign name, for events that name no delivery."""
    return {campaign_category(name): name for name in conn.scalars(select(campaigns.c.name))}


def apply_provider_events(
    store: Store, found: Iterable[ProviderEvent], *, now: datetime
) -> EventReport:
    """Store a batch of any provider's events idempotently and apply them, in one
    transaction: the one path every provider's webhook and the mailbox reader take.

    A replayed event (same provider and event id) is stored once and applied once.
    Suppressing kinds suppress the address across campaigns and cancel its contact's
    pending deliveries; `unknown` deliveries named by an event are settled. Hard bounces
    and complaints count towards the automatic pause (event_health.py): a campaign past
    a limit is paused, with an alert, once the batch is stored.
    """
    report = EventReport()
    found = list(found)
    stored: list[tuple[EventKind, int | None, str | None]] = []
    with store.begin() as conn:
        # Bounded again here: a parser's out-of-range id must not fail the whole batch.
        named = {e.delivery_id for e in found if delivery_id_of(e.delivery_id) is not None}
        known = set(conn.scalars(select(deliveries.c.id).where(deliveries.c.id.in_(named))))
        by_category = _campaigns_by_category(conn) if "campaign" in events.c else {}
        for event in found:
            delivery_id = event.delivery_id if event.delivery_id in known else None
            values: dict[str, Any] = {
                "provider": event.provider,
                "provider_event_id": event.event_id[:200],
                "delivery_id": delivery_id,
                "type": event.kind.value,
                "occurred_at": event.occurred_at,
                "created_at": now,
            }
            if by_category and delivery_id is None and event.campaign_hint in by_category:
                values["campaign"] = by_category[event.campaign_hint]
            if not insert_new(conn, events, values):
                report.duplicates += 1
                continue
            report.stored += 1
            stored.append((event.kind, delivery_id, values.get("campaign")))
            address = event_address(event.address)
            if address and event.kind in SUPPRESSING:
                new, cancelled = suppress_contacts(conn, store, address, event.kind, now=now)
                report.suppressed += int(new)
                report.cancelled += cancelled
            if delivery_id is not None:
                report.reconciled += _settle_unknown(conn, delivery_id, event, now=now)
            if event.kind in WEBHOOK_EVENTS and listening(conn, WEBHOOK_EVENTS[event.kind]):
                _emit_webhook(conn, event, delivery_id, address, now=now)
        counted = count_bad_news(conn, stored)
    report.paused = check_campaigns(store, counted, now=now)
    log.info(
        "%s events: %d stored, %d duplicates, %d addresses suppressed, "
        "%d deliveries cancelled, %d unknown deliveries reconciled",
        ",".join(sorted({e.provider for e in found})) or "provider",
        report.stored,
        report.duplicates,
        report.suppressed,
        report.cancelled,
        report.reconciled,
    )
    return report


def _settle_unknown(
    conn: Connection, delivery_id: int, event: ProviderEvent, *, now: datetime
) -> int:
    """An `unknown` delivery: failed when the provider would not send it, else sent."""
    if event.kind == NOT_SENT:
        error = f"rejected by {event.provider}"
        if event.reason and "@" not in event.reason:
            error += f": {event.reason[:200]}"
        values: dict[str, Any] = {"status": DeliveryStatus.FAILED, "error": error}
    else:
        values = {"status": DeliveryStatus.SENT, "error": None}
        if event.message_id:
            values["provider_message_id"] = event.message_id[:200]
    return conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id, deliveries.c.status == DeliveryStatus.UNKNOWN)
        .values(updated_at=now, **values)
    ).rowcount


def _emit_webhook(
    conn: Connection,
    event: ProviderEvent,
    delivery_id: int | None,
    address: str | None,
    *,
    now: datetime,
) -> None:
    """The webhook event of a stored provider event, for its contact: the delivery's, or
    (an event naming no delivery of ours) each contact with the address. Ids only."""
    data: dict[str, Any] = {"provider": event.provider, "delivery_id": delivery_id}
    if event.kind is EventKind.BOUNCED_HARD:
        data["bounce"] = "hard"
    elif event.kind is EventKind.BOUNCED_SOFT:
        data["bounce"] = "soft"
    elif event.kind is EventKind.UNSUBSCRIBED:
        data["scope"] = "all"
    items = []
    if delivery_id is not None:
        row = conn.execute(
            select(
                enrollments.c.contact_id,
                enrollments.c.id,
                enrollments.c.campaign,
                deliveries.c.step_key,
            )
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .where(deliveries.c.id == delivery_id)
        ).first()
        if row is not None:
            items.append(
                (
                    row.contact_id,
                    {
                        "contact_id": row.contact_id,
                        "enrollment_id": row.id,
                        "campaign": row.campaign,
                        "step": row.step_key,
                        **data,
                    },
                )
            )
    elif address:
        items = [(c, {"contact_id": c, **data}) for c in contact_ids_for(conn, address)]
    emit(conn, WEBHOOK_EVENTS[event.kind], items, now=now)
