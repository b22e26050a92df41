"""Amazon SES events, as SNS delivers them, -> ProviderEvents (a pure function).

An SNS Notification's `Message` is one SES event record: from a configuration set's
event destination (`eventType`: Bounce, Complaint, Delivery, Send, Reject, Open,
Click, DeliveryDelay, ...) or from an identity's feedback notifications
(`notificationType`: Bounce, Complaint, Delivery). Contents:
https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html
and https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html.

Our delivery id is the message tag `delivery_id` (event publishing returns tags as
`mail.tags`, each a list) or, for identity notifications with original headers,
the X-Dripmail-Delivery header (senders/ses.py sets both). The SES message id is
`mail.messageId`, which SendEmail returned. Only what the events table keeps comes out:
no IP address, user agent or clicked link, and the address only of a bounce or a
complaint, for the suppression's keyed hash.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from campaigns.compliance.event_model import EventKind, ProviderEvent

PROVIDER = "ses"
DELIVERY_TAG = "delivery_id"
DELIVERY_HEADER = "x-dripmail-delivery"
CAMPAIGN_TAG = "campaign"
MAX_ID = 2**31 - 1  # the largest id an INTEGER column holds on PostgreSQL

# SES event type -> our kind, for the types that are about the message as a whole.
_WHOLE = {
    "Send": EventKind.ACCEPTED,
    "Open": EventKind.OPENED,
    "Click": EventKind.CLICKED,
}


def parse_ses_event(record: Any, *, key: str) -> list[ProviderEvent]:
    """The events in one SES event record; `key` (the SNS MessageId) makes their ids.

    A record of a type we do not use (Rendering Failure, Subscription, the test
    notification SES sends when a topic is set) or of no known shape gives none.
    """
    if not isinstance(record, Mapping):
        return []
    kind = record.get("eventType") or record.get("notificationType")
    if not isinstance(kind, str):  # a list or a mapping here is no event of ours
        return []
    mail = record.get("mail") if isinstance(record.get("mail"), Mapping) else {}
    common = {
        "provider": PROVIDER,
        "delivery_id": _delivery_id(mail),
        "message_id": _text(mail.get("messageId")),
        "campaign_hint": _tag(mail, CAMPAIGN_TAG),
    }
    found: list[tuple[EventKind, Any, str | None, str | None]] = []  # kind, when, address, why
    if kind == "Bounce":
        bounce = _mapping(record.get("bounce"))
        bounce_type = _text(bounce.get("bounceType")) or "Undetermined"
        # Permanent: the address does not exist or refuses for good. Transient
        # (mailbox full, blocked for now) and Undetermined keep the address.
        bounced = EventKind.BOUNCED_HARD if bounce_type == "Permanent" else EventKind.BOUNCED_SOFT
        sub_type = _text(bounce.get("bounceSubType"))
        for recipient in _list(bounce.get("bouncedRecipients")):
            recipient = _mapping(recipient)
            # The status code (5.1.1) only: the diagnostic text may quote the address.
            status = _text(recipient.get("status"))
            why = "/".join(filter(None, (bounce_type, sub_type))) + (f" {status}" if status else "")
            found.append((bounced, bounce.get("timestamp"), recipient.get("emailAddress"), why))
    elif kind == "Complaint":
        complaint = _mapping(record.get("complaint"))
        why = _text(complaint.get("complaintFeedbackType")) or _text(
            complaint.get("complaintSubType")
        )
        for recipient in _list(complaint.get("complainedRecipients")):
            address = _mapping(recipient).get("emailAddress")
            found.append((EventKind.COMPLAINED, complaint.get("timestamp"), address, why))
    elif kind == "Delivery":
        delivery = _mapping(record.get("delivery"))
        for _recipient in _list(delivery.get("recipients")) or [None]:
            found.append((EventKind.DELIVERED, delivery.get("timestamp"), None, None))
    elif kind == "DeliveryDelay":
        delay = _mapping(record.get("deliveryDelay"))
        why = _text(delay.get("delayType"))
        for _recipient in _list(delay.get("delayedRecipients")) or [None]:
            found.append((EventKind.DEFERRED, delay.get("timestamp"), None, why))
    elif kind == "Reject":
        # SES took the call but would not send the message (a virus): the message's
        # fault, not the address's, so no address and no suppression.
        reject = _mapping(record.get("reject"))
        found.append((EventKind.REJECTED, mail.get("timestamp"), None, _text(reject.get("reason"))))
    elif kind in _WHOLE:
        detail = _mapping(record.get(str(kind).lower()))
        found.append((_WHOLE[kind], detail.get("timestamp") or mail.get("timestamp"), None, None))
    return [
        ProviderEvent(
            event_id=key if n == 0 else f"{key}:{n}",
            kind=event_kind,
            occurred_at=_time(when),
            address=_text(address),
            reason=why[:200] if why and "@" not in why else None,
            **common,
        )
        for n, (event_kind, when, address, why) in enumerate(found)
    ]


def _delivery_id(mail: Mapping[str, Any]) -> int | None:
    """Ours, from the tag, else from our header; digits only (a send-test's is not one)."""
    value = _tag(mail, DELIVERY_TAG)
    if value is None:
        for header in _list(mail.get("headers")):
            header = _mapping(header)
            if str(header.get("name", "")).lower() == DELIVERY_HEADER:
                value = _text(header.get("value"))
                break
    if value and value.isdigit() and len(value) < 11 and 0 < int(value) <= MAX_ID:
        return int(value)
    return None


def _tag(mail: Mapping[str, Any], name: str) -> str | None:
    values = _mapping(mail.get("tags")).get(name)
    value = values[0] if isinstance(values, list) and values else values
    return _text(value)


def _time(value: Any) -> datetime | None:
    """An ISO 8601 time as SES writes it (2017-08-05T00:41:02.669Z), in UTC."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _text(value: Any) -> str | None:
    return value[:500] if isinstance(value, str) and value else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
