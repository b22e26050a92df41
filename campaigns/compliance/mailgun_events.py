"""Mailgun's webhook payload -> ProviderEvents: a pure function, no I/O.

Mailgun posts one event per request as JSON, `{"signature": {...}, "event-data": {...}}`
(https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-payloads;
the signature is checked in campaigns/web/mailgun_webhook.py). What `event-data` means:

- `event`: accepted, delivered, failed, rejected, complained, unsubscribed, opened,
  clicked (and others, such as `stored`, that say nothing about a sent email: ignored).
- `failed` with `severity: permanent` is a hard bounce, `temporary` a soft one (Mailgun
  keeps trying). Its `reason` `suppress-bounce`, `suppress-complaint` or
  `suppress-unsubscribe` means Mailgun did not send at all because the address is on
  its own suppression list: rejected, and mirrored here.
- `rejected`: Mailgun refused the message itself (a sandbox domain, an account limit):
  the delivery failed, but the address did nothing, so it is not suppressed.
- `user-variables`: the `v:` values sent with the message, so our `delivery_id` (a
  string, or a number: Mailgun reads a `v:` value as JSON when it is JSON).
- `id`: Mailgun's event id, "unique within a day", so the event's key adds its time;
  a retried webhook repeats both and is stored once.

Only what the events table keeps is read: the recipient is passed on for the
suppression's keyed hash only; IPs, user agents, URLs and the SMTP text are left out.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from campaigns.compliance.event_model import EventKind, ProviderEvent
from campaigns.compliance.events import MAX_ID
from campaigns.errors import InputError

PROVIDER = "mailgun"

KINDS = {
    "accepted": EventKind.ACCEPTED,
    "delivered": EventKind.DELIVERED,
    "rejected": EventKind.REJECTED,
    "complained": EventKind.COMPLAINED,
    "unsubscribed": EventKind.UNSUBSCRIBED,
    "opened": EventKind.OPENED,
    "clicked": EventKind.CLICKED,
}
# `failed` reasons that mean "not sent: the address is on Mailgun's suppression list".
SUPPRESSED_BY_MAILGUN = frozenset({"suppress-bounce", "suppress-complaint", "suppress-unsubscribe"})
_WORD = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def parse_mailgun_payload(payload: Any) -> list[ProviderEvent]:
    """The events in one webhook body (one, or none when it is no event we count).

    Raises InputError (field `event-data`) when the body is not a Mailgun event.
    """
    data = payload.get("event-data") if isinstance(payload, Mapping) else None
    if not isinstance(data, Mapping) or not isinstance(data.get("event"), str):
        raise InputError("the body holds no Mailgun event (event-data.event)", field="event-data")
    kind = _kind(data)
    if kind is None:
        return []
    return [
        ProviderEvent(
            provider=PROVIDER,
            event_id=event_key(data),
            kind=kind,
            occurred_at=_time(data.get("timestamp")),
            delivery_id=_delivery_id(data.get("user-variables")),
            address=_address(data),
            reason=_reason(data),
            message_id=_message_id(data),
        )
    ]


def _kind(data: Mapping[str, Any]) -> EventKind | None:
    event = data["event"]
    if event != "failed":
        return KINDS.get(event)
    if data.get("reason") in SUPPRESSED_BY_MAILGUN:
        return EventKind.REJECTED
    # Only a failure Mailgun calls permanent suppresses; without a severity (never seen
    # in a payload) it may still be retried, so it counts as soft.
    return EventKind.BOUNCED_HARD if data.get("severity") == "permanent" else EventKind.BOUNCED_SOFT


def event_key(data: Mapping[str, Any]) -> str:
    """`mailgun:<id>:<unix time>`, or a hash of what tells events apart when there is no id."""
    event_id = data.get("id")
    when = data.get("timestamp")
    seconds = int(when) if _number(when) and abs(when) < 1e11 else None
    if isinstance(event_id, str) and 0 < len(event_id) <= 100:
        return f"{PROVIDER}:{event_id}:{seconds}"
    parts = [
        str(data.get("event")),
        str(seconds),
        str(_message_id(data)),
        str(_delivery_id(data.get("user-variables"))),
        str(data.get("severity")),
    ]
    return f"{PROVIDER}:sha256:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _time(value: Any) -> datetime | None:
    if not _number(value):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _delivery_id(variables: Any) -> int | None:
    """Our delivery id from `user-variables` (a `send-test`'s `test-...` is not one)."""
    value = variables.get("delivery_id") if isinstance(variables, Mapping) else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID:
        return value
    return None


def _address(data: Mapping[str, Any]) -> str | None:
    """The recipient, for the suppression's hash; none for a message Mailgun rejected."""
    if data["event"] == "rejected":
        return None  # about the message or the account, not about the address
    recipient = data.get("recipient")
    return recipient.strip() if isinstance(recipient, str) and recipient.strip() else None


def _reason(data: Mapping[str, Any]) -> str | None:
    """Mailgun's reason word and SMTP code for a failure, its text for a rejection."""
    if data["event"] == "failed":
        words = []
        reason = data.get("reason")
        if isinstance(reason, str) and _WORD.fullmatch(reason):
            words.append(reason)
        status = data.get("delivery-status")
        code = status.get("code") if isinstance(status, Mapping) else None
        if isinstance(code, int) and not isinstance(code, bool) and 0 <= code < 1000:
            words.append(str(code))
        return " ".join(words) or None
    if data["event"] == "rejected":
        reject = data.get("reject")
        text = reject.get("reason") if isinstance(reject, Mapping) else None
        if isinstance(text, str) and text.strip() and "@" not in text:
            return _CONTROL.sub(" ", text).strip()[:200]
    return None


def _message_id(data: Mapping[str, Any]) -> str | None:
    """The message's Message-Id, as the send answer's `id` is stored: no angle brackets."""
    message = data.get("message")
    headers = message.get("headers") if isinstance(message, Mapping) else None
    value = headers.get("message-id") if isinstance(headers, Mapping) else None
    if not isinstance(value, str):
        return None
    value = value.strip().strip("<>").strip()
    return value[:200] or None
