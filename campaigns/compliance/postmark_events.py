"""Postmark's webhook records -> ProviderEvents: a pure parser, one record per request.

Postmark posts one JSON object per event, its kind in `RecordType`
(https://postmarkapp.com/developer/webhooks/webhooks-overview): Delivery, Bounce,
SpamComplaint, Open, Click and SubscriptionChange are read; any other (Inbound, ...)
is none of ours. The Metadata a message was sent with comes back in its events, so
our delivery id (senders/postmark_body.py) arrives as `Metadata.delivery_id`.

Postmark retries a webhook it got no 2xx for, so the same record can arrive twice: each
gets a stable event id (a bounce's own `ID`; otherwise the record type, MessageID and
the event's time), and apply_provider_events stores it once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from campaigns.compliance.event_model import EventKind, ProviderEvent

POSTMARK = "postmark"
MAX_ID = 2**31 - 1  # the largest id an INTEGER column holds on PostgreSQL

# Bounce `Type`s, from Postmark's list (https://postmarkapp.com/developer/api/bounce-api,
# Bounce types). Hard: the address does not exist or is refused for good; Postmark
# deactivates such addresses itself. Soft: the address stays (mailbox full, DNS, a block
# about the sender, a delay). The rest are not failures to deliver (an auto-reply, a
# subscribe request, a challenge): no event.
HARD_BOUNCES = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})
SOFT_BOUNCES = frozenset(
    {
        "Transient",
        "SoftBounce",
        "DnsError",
        "Blocked",
        "Unknown",
        "SpamNotification",
        "VirusNotification",
        "DMARCPolicy",
        "SMTPApiError",
        "Unconfirmed",
        "TemplateRenderingFailed",
    }
)
NOT_BOUNCES = frozenset(
    {
        "AutoResponder",
        "AddressChange",
        "Subscribe",
        "ChallengeVerification",
        "OpenRelayTest",
        "InboundError",
    }
)
# A SubscriptionChange that suppresses says why: "HardBounce, SpamComplaint, or
# ManualSuppression" ("If a recipient unsubscribes, they will be suppressed with the
# SuppressionReason of ManualSuppression").
SUPPRESSION_KINDS = {"HardBounce": EventKind.BOUNCED_HARD, "SpamComplaint": EventKind.COMPLAINED}
# The time each record type names its event by.
TIME_FIELD = {
    "Delivery": "DeliveredAt",
    "Bounce": "BouncedAt",
    "SpamComplaint": "BouncedAt",
    "Open": "ReceivedAt",
    "Click": "ReceivedAt",
    "SubscriptionChange": "ChangedAt",
}


def parse_postmark_event(record: Any) -> list[ProviderEvent]:
    """The events in one webhook record: none, or one. Pure: no I/O, no clock."""
    if not isinstance(record, Mapping):
        return []
    record_type = record.get("RecordType")
    if not isinstance(record_type, str) or record_type not in TIME_FIELD:
        return []
    kind, address = _kind(record_type, record)
    if kind is None:
        return []
    occurred_at = _time(record.get(TIME_FIELD[record_type]))
    message_id = _text(record.get("MessageID") or record.get("MessageId"))
    return [
        ProviderEvent(
            provider=POSTMARK,
            event_id=_event_id(record_type, record, message_id),
            kind=kind,
            occurred_at=occurred_at,
            delivery_id=_delivery_id(record.get("Metadata")),
            # Only suppressing kinds need the address (for its keyed hash); the others
            # carry none, so it is not handled at all.
            address=address,
            reason=_reason(record_type, record),
            message_id=message_id,
        )
    ]


def _kind(record_type: str, record: Mapping[str, Any]) -> tuple[EventKind | None, str | None]:
    """(the event's kind, the address when that kind suppresses)."""
    if record_type == "Delivery":
        return EventKind.DELIVERED, None
    if record_type == "Open":
        return EventKind.OPENED, None
    if record_type == "Click":
        return EventKind.CLICKED, None
    if record_type == "SpamComplaint":
        return EventKind.COMPLAINED, _text(record.get("Email"))
    if record_type == "SubscriptionChange":
        if record.get("SuppressSending") is not True:
            # A reactivation at Postmark: dripmail's own suppression stays until staff
            # lift it here (`dripmail suppress`), not on a provider's word.
            return None, None
        reason = record.get("SuppressionReason")
        kind = SUPPRESSION_KINDS.get(reason, EventKind.UNSUBSCRIBED)
        return kind, _text(record.get("Recipient"))
    bounce = record.get("Type")
    if bounce in HARD_BOUNCES:
        return EventKind.BOUNCED_HARD, _text(record.get("Email"))
    if bounce == "SpamComplaint":
        return EventKind.COMPLAINED, _text(record.get("Email"))
    if bounce == "Unsubscribe":  # an unsubscribe request sent back by mail
        return EventKind.UNSUBSCRIBED, _text(record.get("Email"))
    if bounce in NOT_BOUNCES:
        return None, None
    if record.get("Inactive") is True:
        # Postmark deactivated the address for this bounce and refuses to send to it
        # (ErrorCode 406): for us too it is gone.
        return EventKind.BOUNCED_HARD, _text(record.get("Email"))
    return EventKind.BOUNCED_SOFT, None


def _event_id(record_type: str, record: Mapping[str, Any], message_id: str | None) -> str:
    own = record.get("ID")
    if record_type in ("Bounce", "SpamComplaint") and isinstance(own, int | str) and own != "":
        return f"{record_type}:{own}"
    # Manual suppressions and reactivations have no MessageID: the stream and the
    # microsecond time of the change tell them apart.
    subject = message_id or f"{record.get('ServerID')}/{record.get('MessageStream')}"
    parts = [record_type, subject, str(record.get(TIME_FIELD[record_type]))]
    if record_type == "SubscriptionChange":
        parts.append(str(record.get("SuppressionReason")))
    return ":".join(parts)[:200]


def _reason(record_type: str, record: Mapping[str, Any]) -> str | None:
    """Postmark's own name for what happened: a bounce type, a suppression reason.
    Never `Details` or `Description`, which can quote the address."""
    if record_type in ("Bounce", "SpamComplaint"):
        value = record.get("Type")
    elif record_type == "SubscriptionChange":
        value = record.get("SuppressionReason")
    else:
        return None
    return value if isinstance(value, str) and value.isalnum() and len(value) <= 40 else None


def _delivery_id(metadata: Any) -> int | None:
    """Our delivery id: digits only (a send-test's `test-...` is not one), within INTEGER."""
    value = metadata.get("delivery_id") if isinstance(metadata, Mapping) else None
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        number = int(value)
        return number if 0 < number <= MAX_ID else None
    return None


def _time(value: Any) -> datetime | None:
    """An ISO 8601 time ("2014-08-01T13:28:10.2735393-04:00": seven fraction digits,
    which fromisoformat reads from 3.11 on); None without a zone or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


def _text(value: Any) -> str | None:
    return value.strip()[:320] if isinstance(value, str) and value.strip() else None
