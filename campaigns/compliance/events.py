"""Provider events -> the events table, suppressions, and reconciling `unknown` deliveries.

Only what statistics and compliance need is kept: provider, event id, delivery id, type
and time. The address an event names is used for one thing, its keyed hash for a
suppression, and is never stored or logged; neither are IPs, user agents or clicked URLs.

SendGrid's Event Webhook (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event)
posts a JSON array of events. Custom args sent with a message come back as top-level
keys of each of its events, so our `delivery_id` (senders/sendgrid.py puts it in the
personalization's custom_args) arrives as `event["delivery_id"]`, a string.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select, update

from campaigns.compliance.event_model import NOT_SENT as KIND_NOT_SENT
from campaigns.compliance.event_model import SUPPRESSING as KIND_SUPPRESSING
from campaigns.compliance.event_model import ProviderEvent
from campaigns.compliance.suppressions import insert_new, suppress_contacts
from campaigns.planning.contacts import normalise_email
from campaigns.rendering.categories import campaign_category
from campaigns.storage.statuses import DeliveryStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import campaigns, deliveries, events

log = logging.getLogger("dripmail.events")

SENDGRID = "sendgrid"

# Events that mean "never mail this address again". SendGrid drops a message to an
# address on its own bounce/spam/unsubscribe lists, so a drop mirrors those lists here.
SUPPRESSING = frozenset({"bounce", "dropped", "spamreport", "unsubscribe", "group_unsubscribe"})
# Every event about a message except `dropped` proves SendGrid accepted the request,
# so a delivery whose answer was lost (`unknown`) was in fact sent.
NOT_SENT = "dropped"
_TYPE = re.compile(r"^[a-z_]{1,32}$")
MAX_ID = 2**31 - 1  # the largest id an INTEGER column holds on PostgreSQL


@dataclass
class EventReport:
    """What one batch of provider events did."""

    stored: int = 0
    duplicates: int = 0
    ignored: int = 0  # not an event object, or no event type
    suppressed: int = 0  # addresses newly suppressed
    cancelled: int = 0  # pending deliveries cancelled by those suppressions
    reconciled: int = 0  # unknown deliveries settled as sent or failed


def sendgrid_event_key(item: Mapping[str, Any], address_hash: str | None) -> str:
    """sg_event_id, or a stable composite key for events that lack one.

    The fallback hashes what tells two events apart (type, delivery, time, message and
    the address's keyed hash) so a replay of the same event maps to the same key.
    """
    event_id = item.get("sg_event_id")
    if isinstance(event_id, str) and 0 < len(event_id) <= 200:
        return event_id
    parts = [
        str(item.get("event")),
        str(item.get("delivery_id")),
        str(item.get("timestamp")),
        str(item.get("sg_message_id")),
        address_hash or "",
    ]
    return "sha256:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _delivery_id(value: Any) -> int | None:
    """Our delivery id from custom args: digits only (a send-test's `test-...` is not one)."""
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        # Ids are INTEGER columns (32-bit on PostgreSQL): a larger number is not one of
        # ours, and looking it up would fail the whole batch.
        return value if 0 < value <= MAX_ID else None
    return None


def _occurred_at(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _address(value: Any) -> str | None:
    """The event's address, normalised as contacts are, for hashing only."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return normalise_email(value)
    except ValueError:
        return value.strip().lower()


def _message_id(value: Any) -> str | None:
    # sg_message_id is the X-Message-Id the send returned plus ".filterNNN..." routing.
    if isinstance(value, str) and value:
        return value.split(".", 1)[0][:200]
    return None


def _campaigns_by_category(conn: Connection) -> dict[str, str]:
    """Opaque category `c-<hash>` -> campaign name, for events that name no delivery."""
    return {campaign_category(name): name for name in conn.scalars(select(campaigns.c.name))}


def _category_campaign(item: Mapping[str, Any], by_category: dict[str, str]) -> str | None:
    # SendGrid sends `category` as a string for one category and a list for several.
    found = item.get("category")
    values = found if isinstance(found, list) else [found]
    for value in values:
        if isinstance(value, str) and value in by_category:
            return by_category[value]
    return None


def apply_sendgrid_events(store: Store, items: Iterable[Any], *, now: datetime) -> EventReport:
    """Store a batch of SendGrid events idempotently and apply them, in one transaction.

    A replayed event (SendGrid retries for up to 72 hours on any non-2xx) is stored once
    and applied once. Suppressing events suppress the address across campaigns and cancel
    its contact's pending deliveries; `unknown` deliveries named by an event are settled.
    """
    report = EventReport()
    items = list(items)
    with store.begin() as conn:
        named = {_delivery_id(i.get("delivery_id")) for i in items if isinstance(i, dict)}
        named.discard(None)
        known = set(conn.scalars(select(deliveries.c.id).where(deliveries.c.id.in_(named))))
        by_category = _campaigns_by_category(conn) if "campaign" in events.c else {}
        for item in items:
            event_type = item.get("event") if isinstance(item, dict) else None
            if not isinstance(event_type, str) or not _TYPE.match(event_type):
                report.ignored += 1
                continue
            address = _address(item.get("email"))
            address_hash = store.address_hash(address) if address else None
            delivery_id = _delivery_id(item.get("delivery_id"))
            delivery_id = delivery_id if delivery_id in known else None
            values: dict[str, Any] = {
                "provider": SENDGRID,
                "provider_event_id": sendgrid_event_key(item, address_hash),
                "delivery_id": delivery_id,
                "type": event_type,
                "occurred_at": _occurred_at(item.get("timestamp")),
                "created_at": now,
            }
            if by_category and delivery_id is None:
                values["campaign"] = _category_campaign(item, by_category)
            if not insert_new(conn, events, values):
                report.duplicates += 1
                continue
            report.stored += 1
            if address and _suppresses(event_type, item):
                new, cancelled = suppress_contacts(conn, store, address, event_type, now=now)
                report.suppressed += int(new)
                report.cancelled += cancelled
            if delivery_id is not None:
                report.reconciled += _reconcile(conn, delivery_id, event_type, item, now=now)
    log.info(
        "sendgrid events: %d stored, %d duplicates, %d ignored, %d addresses suppressed, "
        "%d deliveries cancelled, %d unknown deliveries reconciled",
        report.stored,
        report.duplicates,
        report.ignored,
        report.suppressed,
        report.cancelled,
        report.reconciled,
    )
    return report


def _suppresses(event_type: str, item: Mapping[str, Any]) -> bool:
    if event_type not in SUPPRESSING:
        return False
    # A bounce of type "blocked" is a temporary refusal (often about the sending IP's
    # reputation, not the address): SendGrid itself does not suppress those, nor do we.
    return not (event_type == "bounce" and item.get("type") == "blocked")


def _reconcile(
    conn: Connection, delivery_id: int, event_type: str, item: Mapping[str, Any], *, now: datetime
) -> int:
    """Settle an `unknown` delivery: sent when SendGrid accepted it, failed when it dropped it."""
    if event_type == NOT_SENT:
        # SendGrid's drop reasons are short fixed phrases ("Bounced Address"); anything
        # that could quote an address is left out, since the error column is kept.
        reason = item.get("reason")
        error = "dropped by SendGrid"
        if isinstance(reason, str) and "@" not in reason:
            error += f": {reason[:200]}"
        values: dict[str, Any] = {"status": DeliveryStatus.FAILED, "error": error}
    else:
        values = {"status": DeliveryStatus.SENT, "error": None}
        message_id = _message_id(item.get("sg_message_id"))
        if message_id:
            values["provider_message_id"] = message_id
    return conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id, deliveries.c.status == DeliveryStatus.UNKNOWN)
        .values(updated_at=now, **values)
    ).rowcount


def apply_provider_events(
    store: Store, found: Iterable[ProviderEvent], *, now: datetime
) -> EventReport:
    """Store a batch of any provider's events idempotently and apply them, in one
    transaction: the one path every provider's webhook and the mailbox reader take.

    A replayed event (same provider and event id) is stored once and applied once.
    Suppressing kinds suppress the address across campaigns and cancel its contact's
    pending deliveries; `unknown` deliveries named by an event are settled.
    """
    report = EventReport()
    found = list(found)
    with store.begin() as conn:
        named = {e.delivery_id for e in found if e.delivery_id is not None}
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
            address = _address(event.address)
            if address and event.kind in KIND_SUPPRESSING:
                new, cancelled = suppress_contacts(conn, store, address, event.kind, now=now)
                report.suppressed += int(new)
                report.cancelled += cancelled
            if delivery_id is not None:
                report.reconciled += _settle_unknown(conn, delivery_id, event, now=now)
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
    if event.kind == KIND_NOT_SENT:
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
