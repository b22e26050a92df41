"""One event model for every provider: what a provider said about a message, in one set.

Each provider's webhook (or the mailbox reader, for SMTP) turns its own payload into a
list of `ProviderEvent` with a pure parser of its own; `apply_provider_events`
(compliance/events.py) stores and applies them identically for every provider:
suppressions, settling `unknown` deliveries, and what `dripmail stats` counts.

Only what statistics and compliance need is kept. `address` is used for one thing, its
keyed hash for a suppression, and is never stored or logged; `reason` is the provider's
own short text (a bounce's status, a drop reason), kept only when it names no address.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class EventKind(StrEnum):
    """What happened to a message, whichever provider said it (the `events.type` value)."""

    ACCEPTED = "accepted"  # the provider took the message (SendGrid `processed`, SES `Send`)
    DELIVERED = "delivered"
    DEFERRED = "deferred"  # a temporary refusal; the provider retries
    BOUNCED_HARD = "bounced_hard"  # the address does not exist or refuses for good
    BOUNCED_SOFT = "bounced_soft"  # mailbox full, blocked for now: the address stays
    COMPLAINED = "complained"  # marked as spam (feedback loop, ARF)
    UNSUBSCRIBED = "unsubscribed"  # through the provider's or the mailbox's unsubscribe
    OPENED = "opened"
    CLICKED = "clicked"
    REJECTED = "rejected"  # the provider would not send it at all (SendGrid `dropped`)


# Kinds after which the address is never mailed again, across campaigns.
SUPPRESSING = frozenset(
    {EventKind.BOUNCED_HARD, EventKind.COMPLAINED, EventKind.UNSUBSCRIBED, EventKind.REJECTED}
)
# Every kind but REJECTED proves the provider accepted the request, so a delivery whose
# answer was lost (`unknown`) was in fact sent; REJECTED settles it as failed.
NOT_SENT = EventKind.REJECTED


@dataclass(frozen=True)
class ProviderEvent:
    """One provider event, as every provider's parser gives it."""

    provider: str  # "sendgrid", "ses", "mailgun", "postmark", "mailbox"
    event_id: str  # the provider's id for the event (or a stable key): replays count once
    kind: EventKind
    occurred_at: datetime | None = None
    delivery_id: int | None = None  # ours, from the opaque id the message carried
    address: str | None = None  # for the suppression's keyed hash only; never stored
    reason: str | None = None  # the provider's reason, without any address
    message_id: str | None = None  # the provider's message id, for settling `unknown`
    campaign_hint: str | None = None  # an opaque category naming the campaign, if any
