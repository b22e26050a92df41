"""Every status a campaign, enrollment or delivery can have, and the groups asked about.

The values are what the database stores (the `status` columns); nothing else in the
engine writes them as bare strings. See docs/architecture.md, "Delivery states".
"""

from __future__ import annotations

import enum


class DeliveryStatus(enum.StrEnum):
    """One planned email: scheduled -> claimed -> sending -> sent | failed | unknown."""

    SCHEDULED = "scheduled"  # planned, waiting for its due time
    CLAIMED = "claimed"  # leased by a worker; returns to the queue when the lease runs out
    SENDING = "sending"  # committed just before hand-off to the provider
    SENT = "sent"  # the provider accepted it
    FAILED = "failed"  # never goes (a permanent refusal, or out of attempts)
    UNKNOWN = "unknown"  # handed off but the answer was lost: never re-sent by itself
    SKIPPED = "skipped"  # not sent on purpose (suppressed, unsubscribed) when it came due
    CANCELLED = "cancelled"  # withdrawn before it was due (unsubscribe, erasure, edit)


class EnrollmentStatus(enum.StrEnum):
    """A contact in one campaign."""

    ACTIVE = "active"
    PAUSED = "paused"
    UNSUBSCRIBED = "unsubscribed"  # left this campaign (or everything) by an unsubscribe
    CONVERTED = "converted"  # reached a goal (an event, campaigns/planning/conversions.py)
    CANCELLED = "cancelled"  # stopped by the clinic (DELETE /api/v1/enrollments/{id})


class CampaignStatus(enum.StrEnum):
    """A published campaign as a whole."""

    ACTIVE = "active"
    PAUSED = "paused"


class ReviewState(enum.StrEnum):
    """A version submitted in the console: submitted -> approved | rejected; approved ->
    published. A newer submission of the same campaign withdraws an open one."""

    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    PUBLISHED = "published"


class CampaignKind(enum.StrEnum):
    """What a published campaign is, when it is not a drip (`campaigns.kind` is NULL then)."""

    NEWSLETTER = "newsletter"  # a one-off broadcast to tagged contacts


_D = DeliveryStatus

# Every delivery state, in the order reports list them.
DELIVERY_STATES: tuple[DeliveryStatus, ...] = tuple(DeliveryStatus)
# Not yet handed to a sender: what an unsubscribe, a pause or an edit may still change.
PENDING: tuple[DeliveryStatus, ...] = (_D.SCHEDULED, _D.CLAIMED)
# Handed to a sender (whatever came of it): the email counts as gone in its window
# opening, for min_gap, and as the contact's last email.
IN_FLIGHT: tuple[DeliveryStatus, ...] = (_D.SENDING, _D.SENT, _D.UNKNOWN)
# A contact has passed a step's position once that step, or a later one, is in flight,
# failed or skipped: a step added before it is not planned for them.
PASSED: tuple[DeliveryStatus, ...] = (*IN_FLIGHT, _D.FAILED, _D.SKIPPED)
# Enrollments that still get email (now or after a pause).
LIVE_ENROLLMENT: tuple[EnrollmentStatus, ...] = (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED)


class WebhookStatus(enum.StrEnum):
    """One outbound webhook message to one endpoint: pending -> delivered | failed."""

    PENDING = "pending"  # waiting for its next attempt (or leased by a worker delivering it)
    DELIVERED = "delivered"  # the endpoint answered 2xx
    FAILED = "failed"  # given up: no 2xx within 72 hours of the event


class WebhookEvent(enum.StrEnum):
    """What an endpoint can subscribe to (`dripmail webhooks add --events`)."""

    ENROLLED = "enrolled"
    # Double opt-in is not built yet: the name is reserved, and nothing emits it.
    CONFIRMED = "confirmed"
    SENT = "sent"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    CONVERTED = "converted"
