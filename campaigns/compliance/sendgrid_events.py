"""SendGrid's Event Webhook payload -> the one event model (compliance/event_model.py).

SendGrid (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event)
posts a JSON array of events. Custom args sent with a message come back as top-level
keys of each of its events, so our `delivery_id` (senders/sendgrid.py puts it in the
personalization's custom_args) arrives as `event["delivery_id"]`, a string.

`sendgrid_events` is pure: it maps each event to a `ProviderEvent` and leaves out what
the model has no kind for; `apply_sendgrid_events` hands the result to the path every
provider takes (compliance/events.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from campaigns.compliance.event_model import EventKind, ProviderEvent
from campaigns.compliance.events import (
    EventReport,
    apply_provider_events,
    delivery_id_of,
    event_address,
)
from campaigns.storage.store import Store

__all__ = ["SENDGRID", "apply_sendgrid_events", "sendgrid_event_key", "sendgrid_events"]

SENDGRID = "sendgrid"

# SendGrid's event name -> the kind. `bounce` is looked at again for its `type`; SendGrid's
# other events (group_resubscribe, account events) have no kind and are ignored.
KINDS: dict[str, EventKind] = {
    "processed": EventKind.ACCEPTED,
    "delivered": EventKind.DELIVERED,
    "deferred": EventKind.DEFERRED,
    "bounce": EventKind.BOUNCED_HARD,
    # SendGrid drops a message to an address on its own bounce/spam/unsubscribe lists,
    # so a drop mirrors those lists here (REJECTED suppresses).
    "dropped": EventKind.REJECTED,
    "spamreport": EventKind.COMPLAINED,
    "unsubscribe": EventKind.UNSUBSCRIBED,
    "group_unsubscribe": EventKind.UNSUBSCRIBED,
    "open": EventKind.OPENED,
    "click": EventKind.CLICKED,
}


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


def _kind(item: Mapping[str, Any]) -> EventKind | None:
    event = item.get("event")
    kind = KINDS.get(event) if isinstance(event, str) else None
    # A bounce of type "blocked" is a temporary refusal (often about the sending IP's
    # reputation, not the address): SendGrid itself does not suppress those, nor do we.
    if kind is EventKind.BOUNCED_HARD and item.get("type") == "blocked":
        return EventKind.BOUNCED_SOFT
    return kind


def _occurred_at(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _message_id(value: Any) -> str | None:
    # sg_message_id is the X-Message-Id the send returned plus ".filterNNN..." routing.
    if isinstance(value, str) and value:
        return value.split(".", 1)[0][:200]
    return None


def _campaign_hint(value: Any) -> str | None:
    """The opaque campaign category (`c-<hash>`, rendering/categories.py), if sent.

    SendGrid sends `category` as a string for one category and a list for several; the
    step's own category (`s-<hash>`) names no campaign.
    """
    values = value if isinstance(value, list) else [value]
    return next((v for v in values if isinstance(v, str) and v.startswith("c-")), None)


def _reason(item: Mapping[str, Any]) -> str | None:
    # A drop's reason is a short fixed phrase ("Bounced Address"); a bounce's is the
    # receiving server's reply, which may quote the address: the model keeps none with "@".
    reason = item.get("reason")
    return reason[:200] if isinstance(reason, str) and reason and "@" not in reason else None


def sendgrid_events(
    items: Iterable[Any], *, address_hash: Callable[[str], str]
) -> list[ProviderEvent]:
    """The events of a SendGrid batch in the model; anything else is left out.

    `address_hash` is the store's keyed hash of an address: an event without
    sg_event_id is keyed by it (never by the address), as it always was, so a replay
    of an event stored by an older dripmail is still recognised.
    """
    found: list[ProviderEvent] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = _kind(item)
        if kind is None:
            continue
        address = event_address(item.get("email"))
        found.append(
            ProviderEvent(
                provider=SENDGRID,
                event_id=sendgrid_event_key(item, address_hash(address) if address else None),
                kind=kind,
                occurred_at=_occurred_at(item.get("timestamp")),
                delivery_id=delivery_id_of(item.get("delivery_id")),
                address=address,
                reason=_reason(item),
                message_id=_message_id(item.get("sg_message_id")),
                campaign_hint=_campaign_hint(item.get("category")),
            )
        )
    return found


def apply_sendgrid_events(store: Store, items: Iterable[Any], *, now: datetime) -> EventReport:
    """Store a batch of SendGrid events idempotently and apply them, in one transaction.

    A replayed event (SendGrid retries for up to 72 hours on any non-2xx) is stored once
    and applied once; what the model has no kind for is counted as ignored.
    """
    items = list(items)
    found = sendgrid_events(items, address_hash=store.address_hash)
    report = apply_provider_events(store, found, now=now)
    report.ignored = len(items) - len(found)
    return report
