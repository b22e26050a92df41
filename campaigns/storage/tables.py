"""The schema: SQLAlchemy Core tables, their indexes, and the UTC time column type.

`metadata` is the schema of the newest migration (campaigns/storage/migrations); the
migrations, not `create_all`, build and upgrade a database. Every stored time is UTC.
SQLite keeps naive timestamps, so UTCDateTime stores naive UTC and hands back aware
UTC on every backend alike.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)

from campaigns.storage.statuses import (
    CampaignStatus,
    DeliveryStatus,
    EnrollmentStatus,
    WebhookStatus,
)


class UTCDateTime(TypeDecorator):
    """Aware UTC in, aware UTC out; stored as naive UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

campaigns = Table(
    "campaigns",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("version", String(32), nullable=False),
    Column("status", String(16), nullable=False, default=CampaignStatus.ACTIVE),
    Column("paused_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    # Migration 0005: "newsletter" for a broadcast; NULL for a drip campaign.
    Column("kind", String(16)),
    # Migration 0007: the folder it was last published from (NULL: by name only), so a
    # message can name the command that fixes it.
    Column("folder", Text),
    # Migration 0012: why the engine paused it by itself (delivery/autopause.py): the rule
    # ("error_rate", "bounce_rate", "complaint_rate") and a sentence with the counts.
    # NULL for a campaign a person paused; `dripmail resume` clears both.
    Column("pause_kind", String(32)),
    Column("pause_reason", Text),
)

campaign_versions = Table(
    "campaign_versions",
    metadata,
    Column("campaign", String(64), primary_key=True),
    Column("version", String(32), primary_key=True),
    Column("files", Text, nullable=False),  # JSON: relative path -> text
    Column("published_at", UTCDateTime, nullable=False),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=True, unique=True),  # NULL once erased
    Column("first_name", String(200)),
    Column("timezone", String(64), nullable=False),
    Column("consent_source", Text),
    Column("consent_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    # Migration 0005: tags as `;a;b;` (membership is one LIKE), and leaving the newsletter.
    Column("tags", Text),
    Column("newsletter_unsubscribed_at", UTCDateTime),
    # Migration 0007: an imported file's other columns (Phone, Last Name), as a JSON object
    # of strings; NULL for none.
    Column("attributes", Text),
    # Migration 0015: the language the contact reads (BCP 47, like `es` or `pt-BR`);
    # NULL: the campaign's default language.
    Column("language", String(35)),
)

enrollments = Table(
    "enrollments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("contact_id", Integer, ForeignKey("contacts.id"), nullable=False),
    Column("campaign", String(64), nullable=False),
    Column("signed_up_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False, default=EnrollmentStatus.ACTIVE),
    Column("created_at", UTCDateTime, nullable=False),
    # Migration 0004: when this one contact was paused (resume shifts by the pause length).
    Column("paused_at", UTCDateTime),
    # Migration 0014: when the contact reached the campaign's goal (the event's own time),
    # and that event (contact_events.id); both NULL until then.
    Column("converted_at", UTCDateTime),
    Column("conversion_event_id", Integer),
    UniqueConstraint("contact_id", "campaign", name="uq_enrollment_contact_campaign"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("enrollment_id", Integer, ForeignKey("enrollments.id"), nullable=False),
    Column("step_key", String(64), nullable=False),
    Column("position", Integer, nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False, default=DeliveryStatus.SCHEDULED),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_owner", String(64)),
    Column("lease_expires_at", UTCDateTime),
    Column("provider_message_id", String(200)),
    Column("error", Text),
    Column("sent_at", UTCDateTime),
    Column("updated_at", UTCDateTime),
    UniqueConstraint("enrollment_id", "step_key", name="uq_delivery_enrollment_step"),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("address_hash", String(64), primary_key=True),  # HMAC of the normalised address
    Column("reason", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("provider", String(32), nullable=False),
    Column("provider_event_id", String(200), nullable=False, unique=True),
    Column("delivery_id", Integer),
    Column("type", String(32), nullable=False),
    Column("occurred_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    # Migration 0003: the campaign of an event that names no delivery (campaign-level stats).
    Column("campaign", String(64)),
)

# Migration 0011. The signature tokens a provider's webhook has used (Mailgun signs a
# timestamp and a token, not the body): a token seen once is refused after, by every worker.
webhook_tokens = Table(
    "webhook_tokens",
    metadata,
    Column("provider", String(32), primary_key=True),
    Column("token_hash", String(64), primary_key=True),  # SHA-256 of the token, hex
    Column("signed_at", UTCDateTime, nullable=False),
)

# Migration 0012. One row per worker (its lease owner id): where it runs, when it started,
# its last tick (the real clock), what that tick did; `stopped_at` once it exits cleanly.
# `dripmail status` shows them, and running workers alert on one gone silent.
worker_heartbeats = Table(
    "worker_heartbeats",
    metadata,
    Column("worker", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("interval_seconds", Integer, nullable=False),  # its pause between ticks
    Column("started_at", UTCDateTime, nullable=False),
    Column("last_tick_at", UTCDateTime, nullable=False),
    Column("ticks", Integer, nullable=False),
    Column("sent", Integer, nullable=False),  # since it started
    Column("failed", Integer, nullable=False),
    Column("unknown", Integer, nullable=False),
    Column("stopped_at", UTCDateTime),
)

# Migration 0012. The outcomes of each recorded hand-off and each applied batch of provider
# events, per campaign (the real clock): what the automatic pause reads, one short indexed
# query per check instead of a join over every delivery of the campaign.
# `outcomes` holds one letter per decided delivery of a hand-off (s sent, f failed,
# u unknown), so "the last 200" is exact whatever the hand-off size.
health_records = Table(
    "health_records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign", String(64), nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("sent", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("unknown", Integer, nullable=False),
    Column("bounced", Integer, nullable=False),  # hard bounces
    Column("complained", Integer, nullable=False),
    Column("outcomes", Text),
)

# Migration 0012. The last alert of each kind (delivery/alerts.py): when it was emailed, and
# how many more were raised within the hour and only logged. A conditional update of this
# row is the rate limit, so it holds across workers and restarts.
alerts = Table(
    "alerts",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("sent_at", UTCDateTime, nullable=False),  # last emailed (or tried)
    Column("raised_at", UTCDateTime, nullable=False),  # last raised
    Column("held_back", Integer, nullable=False),  # raised since sent_at, only logged
    Column("subject", Text, nullable=False),  # the last emailed one's subject line
)

# Migration 0013. Step conditions (`when: {clicked: STEP}`) look up a delivery's clicks.
Index("ix_events_delivery", events.c.delivery_id, events.c.type)
# Migration 0014. What a contact did that a campaign's `goal:` may name (booked): from the
# events API, `dripmail contacts event` or an import. `event_id` is the sender's own id
# (idempotency: the same id is recorded once); `source` is api, cli or import.
contact_events = Table(
    "contact_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("contact_id", Integer, ForeignKey("contacts.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("event_id", String(200), unique=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("source", String(16), nullable=False),
)

Index("ix_contact_events_contact", contact_events.c.contact_id, contact_events.c.name)
Index("ix_enrollments_campaign", enrollments.c.campaign, enrollments.c.status)
Index("ix_deliveries_enrollment", deliveries.c.enrollment_id, deliveries.c.position)
# Migration 0002. Claiming walks due rows in (due_at, id) order from a keyset cursor, and
# recovery looks up `claimed` and `sending` rows: both read only the rows of one status, so
# a tick costs in proportion to the rows in play, not to every delivery ever sent.
Index("ix_deliveries_claim", deliveries.c.status, deliveries.c.due_at, deliveries.c.id)
# Migration 0006. `retry --unknown` looks for unknown rows last touched before a time; the
# index holds unknown rows only, so a sent delivery's status changes never touch it.
UNKNOWN_ONLY = text(f"status = '{DeliveryStatus.UNKNOWN}'")
Index(
    "ix_deliveries_unknown",
    deliveries.c.updated_at,
    sqlite_where=UNKNOWN_ONLY,
    postgresql_where=UNKNOWN_ONLY,
)
# Migration 0012. The automatic pause reads a campaign's newest records (by id; those of
# the last 7 days are among its newest few hundred); old ones are deleted by time.
Index("ix_health_records_campaign", health_records.c.campaign, health_records.c.id)
Index("ix_health_records_time", health_records.c.recorded_at)

# Migration 0016. Outbound webhooks (campaigns/storage/outbox.py, delivery/webhooks.py):
# the endpoints a clinic's systems listen on, and the outbox of messages to them. The
# secret signs every message (Standard Webhooks), so it is kept as it is, not hashed:
# it is as sensitive as a provider key. `events` is `;sent;bounced;` (membership is a LIKE).
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("url", Text, nullable=False, unique=True),
    Column("events", Text, nullable=False),
    Column("include_email", Boolean, nullable=False),
    Column("secret", Text, nullable=False),  # whsec_<base64>
    Column("created_at", UTCDateTime, nullable=False),
)

# One row per event and subscribed endpoint, written in the transaction of the change
# that caused it. `message_id` is the `webhook-id` header (the same on every retry);
# `payload` the JSON body without the address (added when sent, for include_email).
# A pending message is leased like a delivery (owner + expiry on the real clock);
# `next_attempt_at` and `created_at` follow the engine's time (back-off, 72 h give-up).
webhook_messages = Table(
    "webhook_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint_id", Integer, ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("message_id", String(40), nullable=False, unique=True),
    Column("event", String(32), nullable=False),
    Column("contact_id", Integer),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False, default=WebhookStatus.PENDING),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_expires_at", UTCDateTime),
    Column("last_error", Text),
    Column("delivered_at", UTCDateTime),
)
# Claiming reads pending messages in (next_attempt_at, id) order; "is an earlier message
# of this contact to this endpoint still pending?" is one probe of the second index.
Index(
    "ix_webhook_messages_due",
    webhook_messages.c.status,
    webhook_messages.c.next_attempt_at,
    webhook_messages.c.id,
)
Index(
    "ix_webhook_messages_contact",
    webhook_messages.c.endpoint_id,
    webhook_messages.c.contact_id,
    webhook_messages.c.status,
    webhook_messages.c.id,
)
