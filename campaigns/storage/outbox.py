"""The outbound webhook outbox: writing an event for each endpoint subscribed to it.

Every change that an endpoint may hear of (an enrollment, a sent email, a bounce, an
unsubscribe, a conversion) calls `emit` inside its own transaction, so the message is
stored if and only if the change is (no event lost, none for a change rolled back).
Which endpoints listen is read once and cached per database for a few seconds: an
install without webhooks pays one dictionary look-up per change. An endpoint added in
another process is heard of within `SUBSCRIBERS_TTL`; one added here at once.

The payload holds ids only (contact, enrollment, delivery, campaign, step); the address
is added when the message is sent, and only for an endpoint with include_email. A name
or anything about health never goes in.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, exists, select

from campaigns.storage.statuses import WebhookEvent, WebhookStatus
from campaigns.storage.store import bulk_insert, naive_utc, sqlite_time
from campaigns.storage.tables import webhook_endpoints, webhook_messages

COLUMNS = (
    "endpoint_id",
    "message_id",
    "event",
    "contact_id",
    "payload",
    "created_at",
    "status",
    "attempts",
    "next_attempt_at",
)
SUBSCRIBERS_TTL = 5.0  # seconds an endpoint list is trusted for, per process


@dataclass(frozen=True)
class Subscriber:
    """An endpoint, as the outbox needs it: its id and the events it listens to."""

    id: int
    events: frozenset[str]


_cache: weakref.WeakKeyDictionary[Engine, tuple[float, tuple[Subscriber, ...]]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def split_events(value: str) -> frozenset[str]:
    """`;sent;bounced;` (as stored) -> the event names."""
    return frozenset(part for part in value.split(";") if part)


def join_events(names: Sequence[str]) -> str:
    """Event names -> `;a;b;`, as stored (in the WebhookEvent order)."""
    ordered = [e.value for e in WebhookEvent if e.value in set(names)]
    return ";" + ";".join(ordered) + ";"


def forget_subscribers() -> None:
    """Drop every cached endpoint list (after `webhooks add` or `remove` in this process)."""
    with _lock:
        _cache.clear()


def subscribers(conn: Connection) -> tuple[Subscriber, ...]:
    """Every endpoint, cached per database for SUBSCRIBERS_TTL seconds."""
    engine = conn.engine
    clock = time.monotonic()
    with _lock:
        cached = _cache.get(engine)
    if cached is not None and cached[0] > clock:
        return cached[1]
    found = tuple(
        Subscriber(row.id, split_events(row.events))
        for row in conn.execute(select(webhook_endpoints.c.id, webhook_endpoints.c.events))
    )
    with _lock:
        _cache[engine] = (clock + SUBSCRIBERS_TTL, found)
    return found


def listening(conn: Connection, event: WebhookEvent) -> list[int]:
    """The ids of the endpoints subscribed to `event` (usually none: then nothing to do)."""
    return [s.id for s in subscribers(conn) if event.value in s.events]


def message_id() -> str:
    """A Standard Webhooks message id (`webhook-id`): unique, the same on every retry."""
    return "msg_" + secrets.token_urlsafe(18)


def iso_time(value: datetime) -> str:
    """An aware time as the payload's `timestamp`: ISO 8601 UTC with a Z."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def payload(event: WebhookEvent, data: Mapping[str, Any], *, now: datetime) -> str:
    """The JSON body (without any address): type, timestamp, data."""
    return json.dumps(
        {"type": event.value, "timestamp": iso_time(now), "data": dict(data)},
        separators=(",", ":"),
    )


def emit(
    conn: Connection,
    event: WebhookEvent,
    items: Sequence[tuple[int | None, Mapping[str, Any]]],
    *,
    now: datetime,
) -> int:
    """Write `event` for each (contact id, data) to every endpoint listening, in `conn`'s
    transaction; returns the messages written. Nothing at all when none listens."""
    if not items:
        return 0
    endpoints = listening(conn, event)
    if not endpoints:
        return 0
    # Plain tuples through the driver (bulk_insert): a `sent` event per email of every
    # hand-off, so SQLAlchemy's per-value processing would show in dispatch figures.
    stamp = sqlite_time(now) if conn.dialect.name == "sqlite" else naive_utc(now)
    pending = WebhookStatus.PENDING.value
    rows = [
        (
            endpoint_id,
            message_id(),
            event.value,
            contact_id,
            payload(event, data, now=now),
            stamp,
            pending,
            0,
            stamp,
        )
        for contact_id, data in items
        for endpoint_id in endpoints
    ]
    bulk_insert(conn, webhook_messages, COLUMNS, rows)
    return len(rows)


def behind_an_earlier_one() -> ColumnElement[bool]:
    """A message waiting for an earlier pending one of its contact to its endpoint (it
    goes only after that one is delivered or given up: in order per contact)."""
    # The Core alias: sqlalchemy.orm's aliased() does the same for a Table, but importing
    # the ORM for it cost every worker 5.7 MB and 41 modules.
    earlier = webhook_messages.alias()
    m = webhook_messages.c
    return exists().where(
        earlier.c.endpoint_id == m.endpoint_id,
        earlier.c.contact_id == m.contact_id,
        earlier.c.status == WebhookStatus.PENDING,
        earlier.c.id < m.id,
    )
