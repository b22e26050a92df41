"""SQLAlchemy Core tables and the connection to them (SQLite by default, PostgreSQL too).

Every stored time is UTC. SQLite keeps naive timestamps, so UTCDateTime stores
naive UTC and hands back aware UTC on every backend alike.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    insert,
    select,
)
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError

from .errors import ConfigurationError

DEFAULT_DATABASE = "dripmail.db"
DATABASE_ENV = "DRIPMAIL_DATABASE_URL"
SECRET_ENV = "DRIPMAIL_SECRET_KEY"
SCHEMA_VERSION = "1"


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
    Column("status", String(16), nullable=False, default="active"),
    Column("paused_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
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
)

enrollments = Table(
    "enrollments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("contact_id", Integer, ForeignKey("contacts.id"), nullable=False),
    Column("campaign", String(64), nullable=False),
    Column("signed_up_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False, default="active"),
    Column("created_at", UTCDateTime, nullable=False),
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
    Column("status", String(16), nullable=False, default="scheduled"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_owner", String(64)),
    Column("lease_expires_at", UTCDateTime),
    Column("provider_message_id", String(200)),
    Column("error", Text),
    Column("sent_at", UTCDateTime),
    Column("updated_at", UTCDateTime),
    UniqueConstraint("enrollment_id", "step_key", name="uq_delivery_enrollment_step"),
    Index("ix_deliveries_status_due", "status", "due_at"),
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
)

Index("ix_enrollments_campaign", enrollments.c.campaign, enrollments.c.status)
Index("ix_deliveries_enrollment", deliveries.c.enrollment_id, deliveries.c.position)


class DeliveryStatus:
    """The states of a delivery row (see DESIGN.md)."""

    SCHEDULED = "scheduled"
    CLAIMED = "claimed"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    ALL = (SCHEDULED, CLAIMED, SENDING, SENT, FAILED, UNKNOWN, SKIPPED, CANCELLED)
    PENDING = (SCHEDULED, CLAIMED)


def database_url(value: str | None = None) -> str:
    """`--db`, else DRIPMAIL_DATABASE_URL, else dripmail.db here. A bare path means SQLite."""
    url = value or os.environ.get(DATABASE_ENV) or DEFAULT_DATABASE
    if "://" not in url:
        url = f"sqlite:///{Path(url).expanduser()}"
    return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection) -> None:
    # A writing transaction takes the write lock at BEGIN, so two writers queue on the
    # busy timeout instead of one failing when it upgrades a read lock; readers don't.
    write = connection.get_execution_options().get("dripmail_write")
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Store:
    """The database: tables, a connection factory, and installation secrets."""

    def __init__(self, url: str | None = None) -> None:
        self.url = database_url(url)
        try:
            self.engine: Engine = create_engine(self.url)
        except (ArgumentError, ImportError) as exc:
            raise ConfigurationError(f"cannot use database {self.url!r}: {exc}") from None
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # pysqlite's own transaction handling is switched off so BEGIN IMMEDIATE works.
            event.listen(
                self.engine,
                "connect",
                lambda conn, _r: setattr(conn, "isolation_level", None),
            )
            event.listen(self.engine, "begin", _sqlite_begin)
        self._ensure_schema()

    @property
    def path(self) -> Path | None:
        """The SQLite file, when the store is one."""
        database = self.engine.url.database
        return Path(database) if self.is_sqlite and database else None

    def _ensure_schema(self) -> None:
        try:
            metadata.create_all(self.engine)
            with self.begin() as conn:
                if conn.scalar(select(meta.c.value).where(meta.c.key == "schema")) is None:
                    conn.execute(insert(meta).values(key="schema", value=SCHEMA_VERSION))
            # Made now, not on first use, so no transaction ever waits on another for them.
            self._secrets = {
                key: self._meta_secret(key) for key in ("secret_key", "suppression_key")
            }
        except OperationalError as exc:
            raise ConfigurationError(f"cannot open database {self.url}: {exc.orig}") from None

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A writing transaction: committed when the block ends, rolled back on any error."""
        with self.engine.connect() as conn:
            conn.execution_options(dripmail_write=True)
            with conn.begin():
                yield conn

    def connect(self) -> Connection:
        return self.engine.connect()

    def close(self) -> None:
        self.engine.dispose()

    # Installation secrets: generated once, kept in the store, never logged.

    def _meta_secret(self, key: str) -> str:
        with self.begin() as conn:
            value = conn.scalar(select(meta.c.value).where(meta.c.key == key))
            if value is None:
                value = secrets.token_urlsafe(32)
                try:
                    with conn.begin_nested():
                        conn.execute(insert(meta).values(key=key, value=value))
                except IntegrityError:  # another worker made it first
                    value = conn.scalar(select(meta.c.value).where(meta.c.key == key))
        return value

    def secret_key(self) -> str:
        """DRIPMAIL_SECRET_KEY, else one generated for this database and kept in it."""
        return os.environ.get(SECRET_ENV) or self._secrets["secret_key"]

    def address_hash(self, email: str) -> str:
        """Keyed hash of a normalised address: recognises it without keeping it.

        The key is never rotated: a rotated key would let erased or bounced addresses back in.
        """
        key = self._secrets["suppression_key"].encode()
        return hmac.new(key, email.strip().lower().encode(), sha256).hexdigest()


def utcnow() -> datetime:
    """The real clock, for leases and token ages only (due times follow `now=`)."""
    return datetime.now(UTC)
