"""Outbound webhook endpoints: adding (with its secret), listing, removing, their status.

An endpoint is a URL on the clinic's systems and the events it listens to. The URL must
be https, except on this machine (127.0.0.1, localhost, [::1]: local receivers, tests).
Its secret is made here and shown once; it stays in the store because every message is
signed with it, and is never listed or logged.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import delete, func, insert, select

from campaigns.delivery.webhook_signing import new_secret
from campaigns.errors import InputError, NotFoundError
from campaigns.storage.outbox import (
    behind_an_earlier_one,
    forget_subscribers,
    join_events,
    split_events,
)
from campaigns.storage.statuses import WebhookEvent, WebhookStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import webhook_endpoints, webhook_messages

EVENT_NAMES = tuple(e.value for e in WebhookEvent)


@dataclass(frozen=True)
class Endpoint:
    """An endpoint as listed (no secret)."""

    id: int
    url: str
    events: tuple[str, ...]
    include_email: bool
    created_at: datetime


@dataclass(frozen=True)
class EndpointStatus:
    """How an endpoint's messages stand."""

    endpoint: Endpoint
    pending: int
    delivered: int
    failed: int
    last_error: str | None
    next_attempt_at: datetime | None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str:
    """An endpoint URL, or InputError: https, or http on a loopback address only."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise InputError(f"webhook URL {url!r}: give a full https:// URL")
    if parts.scheme == "http" and not _is_loopback(host):
        raise InputError(
            f"webhook URL {url!r}: must be https (http only on 127.0.0.1, localhost or [::1])"
        )
    return url.strip()


def parse_events(value: str) -> tuple[str, ...]:
    """`--events enrolled,sent` -> the names, or InputError naming the unknown one."""
    names = [part.strip().lower() for part in value.split(",") if part.strip()]
    if not names:
        raise InputError(f"--events: name at least one of {', '.join(EVENT_NAMES)}")
    for name in names:
        if name not in EVENT_NAMES:
            raise InputError(
                f"--events: unknown event {name!r}; the events are {', '.join(EVENT_NAMES)}"
            )
    return tuple(e for e in EVENT_NAMES if e in names)


def add_endpoint(
    store: Store, url: str, events: Sequence[str], *, include_email: bool, now: datetime
) -> tuple[Endpoint, str]:
    """Add an endpoint; returns it and its secret (shown once)."""
    url = check_url(url)
    secret = new_secret()
    with store.begin() as conn:
        if conn.scalar(select(webhook_endpoints.c.id).where(webhook_endpoints.c.url == url)):
            raise InputError(f"webhook URL {url!r} is added already (`dripmail webhooks list`)")
        endpoint_id = conn.execute(
            insert(webhook_endpoints)
            .values(
                url=url,
                events=join_events(events),
                include_email=include_email,
                secret=secret,
                created_at=now,
            )
            .returning(webhook_endpoints.c.id)
        ).scalar_one()
    forget_subscribers()
    return Endpoint(endpoint_id, url, tuple(events), include_email, now), secret


def _endpoint(row) -> Endpoint:
    events = split_events(row.events)
    return Endpoint(
        row.id,
        row.url,
        tuple(e for e in EVENT_NAMES if e in events),
        bool(row.include_email),
        row.created_at,
    )


def list_endpoints(store: Store) -> list[Endpoint]:
    """Every endpoint, oldest first (no secrets)."""
    columns = [c for c in webhook_endpoints.c if c.name != "secret"]
    with store.connect() as conn:
        return [
            _endpoint(row)
            for row in conn.execute(select(*columns).order_by(webhook_endpoints.c.id))
        ]


def remove_endpoint(store: Store, ref: str) -> tuple[Endpoint, int]:
    """Remove the endpoint with id or URL `ref`, with its messages; (it, messages dropped)."""
    columns = [c for c in webhook_endpoints.c if c.name != "secret"]
    where = (
        webhook_endpoints.c.id == int(ref)
        if ref.isdigit()
        else webhook_endpoints.c.url == ref.strip()
    )
    with store.begin() as conn:
        row = conn.execute(select(*columns).where(where)).first()
        if row is None:
            raise NotFoundError(f"no webhook endpoint {ref!r} (`dripmail webhooks list`)")
        dropped = conn.execute(
            delete(webhook_messages).where(webhook_messages.c.endpoint_id == row.id)
        ).rowcount
        conn.execute(delete(webhook_endpoints).where(webhook_endpoints.c.id == row.id))
    forget_subscribers()
    return _endpoint(row), dropped


def endpoint_status(store: Store) -> list[EndpointStatus]:
    """Per endpoint: messages pending, delivered, failed; the last error; the next attempt."""
    endpoints = list_endpoints(store)
    m = webhook_messages.c
    with store.connect() as conn:
        counts = {
            (row.endpoint_id, row.status): row.n
            for row in conn.execute(
                select(m.endpoint_id, m.status, func.count().label("n")).group_by(
                    m.endpoint_id, m.status
                )
            )
        }
        upcoming = dict(
            conn.execute(
                select(m.endpoint_id, func.min(m.next_attempt_at))
                .where(m.status == WebhookStatus.PENDING, ~behind_an_earlier_one())
                .group_by(m.endpoint_id)
            ).all()
        )
        errors = {}
        for endpoint in endpoints:
            errors[endpoint.id] = conn.scalar(
                select(m.last_error)
                .where(m.endpoint_id == endpoint.id, m.last_error.is_not(None))
                .order_by(m.id.desc())
                .limit(1)
            )
    return [
        EndpointStatus(
            endpoint,
            counts.get((endpoint.id, WebhookStatus.PENDING), 0),
            counts.get((endpoint.id, WebhookStatus.DELIVERED), 0),
            counts.get((endpoint.id, WebhookStatus.FAILED), 0),
            errors[endpoint.id],
            upcoming.get(endpoint.id),
        )
        for endpoint in endpoints
    ]
