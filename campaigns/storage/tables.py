"""The schema: SQLAlchemy Core tables, their indexes, and the UTC time column type.

`metadata` is the schema of the newest migration (campaigns/storage/migrations); the
migrations, not `create_all`, build and upgrade a database. Every stored time is UTC.
SQLite keeps naive timestamps, so UTCDateTime stores naive UTC and hands back aware
UTC on every backend alike.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
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
    # Migration 0022: the patient's own choices in the preference centre (NULL: none):
    # neutral subjects and From name, no email before `paused_until`, and at least
    # `min_gap_days` between any two of their emails across campaigns.
    Column("discreet", Boolean),
    Column("paused_until", UTCDateTime),
    Column("min_gap_days", Integer),
    # Migration 0023: when the contact last confirmed their address (double opt-in);
    # `consent_at` keeps the sign-up's time.
    Column("confirmed_at", UTCDateTime),
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
    # Migration 0016: the A/B variant it went as (chosen at hand-off); NULL without variants.
    Column("variant", String(32)),
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

# Migration 0019. Named, scoped bearer tokens for the /api/v1 routes (web/api_tokens.py):
# only the token's SHA-256 (hex) is kept; `scopes` is comma-separated (enroll,events,read);
# `last_used_at` is written at most once a minute; a revoked token keeps its row and name.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("scopes", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
)

Index("ix_contact_events_contact", contact_events.c.contact_id, contact_events.c.name)

# Migration 0016. A step's `winner:` choice, once per campaign step (the primary key makes
# it once, whichever worker gets there first); `figures` is JSON: each variant's sends,
# successes and rate when it was chosen.
variant_winners = Table(
    "variant_winners",
    metadata,
    Column("campaign", String(64), primary_key=True),
    Column("step_key", String(64), primary_key=True),
    Column("variant", String(32), nullable=False),
    Column("metric", String(16), nullable=False),
    Column("after", Integer, nullable=False),
    Column("figures", Text, nullable=False),
    Column("decided_at", UTCDateTime, nullable=False),
)


# Migration 0017: the marketing console's people, their sessions, failed sign-ins, and the
# audit trail. Only hashes of passwords (argon2id), session ids, set-up tokens and recovery
# codes are kept. The audit trail is append-only: dripmail has no function that updates or
# deletes its rows, and it holds opaque ids, never a patient's address or name.
console_users = Table(
    "console_users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),  # staff address, normalised
    Column("name", String(200)),  # display name, shown as typed
    Column("role", String(16), nullable=False),
    Column("password_hash", Text),  # argon2id; NULL until set up
    Column("totp_secret", String(64)),  # base32; set at set-up
    Column("totp_enabled_at", UTCDateTime),  # NULL: no second factor yet
    Column("totp_last_step", Integer),  # the last code's time step: a code works once
    Column("recovery_codes", Text),  # JSON list of SHA-256 hex of the unused codes
    Column("setup_token_hash", String(64), unique=True),  # SHA-256 of the set-up link's token
    Column("setup_expires_at", UTCDateTime),
    Column("disabled_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_sign_in_at", UTCDateTime),
)

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # SHA-256 of the cookie's session id
    Column("user_id", Integer, ForeignKey("console_users.id"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("mfa_pending", Integer, nullable=False, default=0),  # 1: password only so far
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
)

console_failures = Table(
    "console_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # "account:<sha256 of the address typed>" or "address:<client IP>"
    Column("key", String(100), nullable=False),
    Column("failed_at", UTCDateTime, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(64), nullable=False),  # a console user's id, or "cli"
    Column("action", String(64), nullable=False),
    Column("object_kind", String(32), nullable=False),
    Column("object_id", String(200)),
    Column("content_hash", String(64)),  # the version concerned (a campaign's version)
    Column("detail", Text),  # a short note with no personal data (a role given)
)

# Migration 0018. A campaign version an editor submitted for review, and the verdict: the
# version is the folder's content hash; at approval the plan's counts are kept (JSON), so a
# publish applies exactly what the reviewer saw or shows the recomputed plan again.
console_reviews = Table(
    "console_reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign", String(64), nullable=False),
    Column("version", String(32), nullable=False),
    Column("state", String(16), nullable=False),  # ReviewState
    Column("submitted_by", Integer, ForeignKey("console_users.id"), nullable=False),
    Column("submitted_at", UTCDateTime, nullable=False),
    Column("reviewed_by", Integer, ForeignKey("console_users.id")),
    Column("reviewed_at", UTCDateTime),
    Column("comment", Text),
    Column("plan", Text),  # JSON: the plan's counts the reviewer approved
    Column("published_at", UTCDateTime),
)

# Migration 0018. The console's settings kept once: clinic details, approval (JSON values).
console_settings = Table(
    "console_settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

Index("ix_console_reviews_campaign", console_reviews.c.campaign, console_reviews.c.id)
Index("ix_console_sessions_user", console_sessions.c.user_id)
Index("ix_console_failures_key", console_failures.c.key, console_failures.c.failed_at)
Index("ix_audit_log_at", audit_log.c.at)
Index("ix_enrollments_campaign", enrollments.c.campaign, enrollments.c.status)
Index("ix_deliveries_enrollment", deliveries.c.enrollment_id, deliveries.c.position)
# Migration 0002. Claiming walks due rows in (due_at, id) order from a keyset cursor, and
# recovery looks up `claimed` and `sending` rows: both read only the rows of one status, so
# a tick costs in proportion to the rows in play, not to every delivery ever sent.
Index("ix_deliveries_claim", deliveries.c.status, deliveries.c.due_at, deliveries.c.id)
# Migration 0006. `retry --unknown` looks for unknown rows last touched before a time; the
# index holds unknown rows only, so a sent delivery's status changes never touch it.
UNKNOWN_ONLY = text(f"status = '{DeliveryStatus.UNKNOWN}'")
# Migration 0016. A `winner:` rule counts each variant's sent emails at every hand-off of
# its step until it chooses: only rows that went as a variant are in this index, so it
# costs nothing to campaigns without variants, and the count reads the step's rows only.
WITH_VARIANT = text("variant IS NOT NULL")
Index(
    "ix_deliveries_variant",
    deliveries.c.step_key,
    deliveries.c.status,
    deliveries.c.variant,
    sqlite_where=WITH_VARIANT,
    postgresql_where=WITH_VARIANT,
)
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
# Migration 0020. The console's statistics: a campaign's sent emails per step and day
# answered from the index alone (its events by delivery: ix_events_delivery, 0013).
Index(
    "ix_deliveries_counts",
    deliveries.c.enrollment_id,
    deliveries.c.status,
    deliveries.c.step_key,
    deliveries.c.sent_at,
)

# Migration 0021. Outbound webhooks (campaigns/storage/outbox.py, delivery/webhooks.py):
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

# Migration 0023: sign-ups waiting for the patient to confirm (planning/confirmations.py).
# `send_due_at` is when the worker owes the confirmation email (NULL: nothing owed);
# the engine's time throughout.
confirmations = Table(
    "confirmations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("contact_id", Integer, ForeignKey("contacts.id"), nullable=False),
    Column("campaign", String(64), nullable=False),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("send_due_at", UTCDateTime),
    Column("sent_at", UTCDateTime),
    Column("resent_at", UTCDateTime),
    Column("confirmed_at", UTCDateTime),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("expired_at", UTCDateTime),
    # Migration 0025: a known contact's sign-up held until confirmed (JSON text;
    # planning/held_changes.py). Patient data: cleared on expiry, end and erasure.
    Column("held_changes", Text),
    UniqueConstraint("contact_id", "campaign", name="uq_confirmations_contact_campaign"),
)
Index("ix_confirmations_send_due", confirmations.c.send_due_at)
Index("ix_confirmations_expires", confirmations.c.expires_at)

# Counts for the console (migration 0024): kept by database triggers on enrollments,
# deliveries and events, never written by the engine; read by reporting/counts.py.
# `hour` is the UTC hour 'YYYY-MM-DD HH'. `n` of count_events is deliveries with at
# least one event of the kind, as the statistics count them.
count_enrolled = Table(
    "count_enrolled",
    metadata,
    Column("campaign", String(64), primary_key=True),
    Column("n", Integer, nullable=False),
)
count_deliveries = Table(
    "count_deliveries",
    metadata,
    Column("campaign", String(64), primary_key=True),
    Column("step_key", String(64), primary_key=True),
    Column("status", String(16), primary_key=True),
    Column("n", Integer, nullable=False),
)
count_due_hours = Table(  # pending deliveries by the hour they are due; no row at zero
    "count_due_hours",
    metadata,
    Column("campaign", String(64), primary_key=True),
    Column("hour", String(13), primary_key=True),
    Column("n", Integer, nullable=False),
)
count_sent_hours = Table(
    "count_sent_hours",
    metadata,
    Column("campaign", String(64), primary_key=True),
    Column("hour", String(13), primary_key=True),
    Column("n", Integer, nullable=False),
)
count_event_kinds = Table(  # which event types feed which kind of count_events
    "count_event_kinds",
    metadata,
    Column("type", String(32), primary_key=True),
    Column("kind", String(32), primary_key=True),
)
count_events = Table(
    "count_events",
    metadata,
    Column("campaign", String(64), primary_key=True),
    Column("step_key", String(64), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("n", Integer, nullable=False),
)
# PostgreSQL: the triggers append each statement's changes here instead of updating the
# count rows (no lock shared between workers); `counter` is enrolled, deliveries, due,
# sent or events, k1/k2 the count's other keys ('' when it has fewer). Readers add them
# to the counts; storage/count_fold.py moves them in. Empty on SQLite.
count_changes = Table(
    "count_changes",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("counter", String(16), nullable=False),
    Column("campaign", String(64), nullable=False),
    Column("k1", String(64), nullable=False),
    Column("k2", String(32), nullable=False),
    Column("n", Integer, nullable=False),
)
Index("ix_count_changes_counter", count_changes.c.counter, count_changes.c.campaign)
# PostgreSQL: the (delivery, kind) pairs count_events counts, under a unique key so two
# concurrent events of one kind count the delivery once. Empty on SQLite (one writer).
count_event_seen = Table(
    "count_event_seen",
    metadata,
    Column("delivery_id", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(32), primary_key=True),
    Column("campaign", String(64), nullable=False),
    Column("step_key", String(64), nullable=False),
)
