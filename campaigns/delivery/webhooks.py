"""Delivering the outbound webhook outbox: claim in order per contact, sign, POST, record.

At least once, in order per contact and endpoint: a message is claimed only when no
earlier message of the same contact to the same endpoint is still pending (delivered or
given up both count as done), so a contact's events arrive in the order they happened.
A claim is a lease (owner + expiry on the real clock, as delivery rows have): two
workers never deliver one message at once, and a worker killed mid-request leaves a
lease that runs out, after which the message goes again with the same `webhook-id`.

A failed attempt (no 2xx, a timeout, a dropped connection, a redirect: none is followed)
goes again after an exponential back-off with jitter, in engine time (`now=`), until 72
hours after the event; the first failure after that marks it failed. Only a short,
truncated error is kept of what the endpoint answered.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, and_, select, update

from campaigns.delivery.leases import worker_owner
from campaigns.delivery.webhook_signing import headers
from campaigns.storage.outbox import behind_an_earlier_one, subscribers
from campaigns.storage.statuses import WebhookStatus
from campaigns.storage.store import Store, utcnow
from campaigns.storage.tables import contacts, webhook_endpoints, webhook_messages

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("dripmail.webhooks")

W = WebhookStatus
m = webhook_messages.c
GIVE_UP_AFTER = timedelta(hours=72)
FIRST_RETRY = timedelta(seconds=30)
LONGEST_WAIT = timedelta(hours=4)
DEFAULT_LEASE = timedelta(minutes=2)  # well beyond the request timeout
DEFAULT_TIMEOUT = 10.0  # seconds per request: connect, read, write
DEFAULT_LIMIT = 100  # messages per round: a worker's tick stays short
ERROR_CHARS = 200
_attempting = threading.local()


def _not_an_endpoint_request(record: logging.LogRecord) -> bool:
    """Drop httpx's INFO "HTTP Request: POST <url>" records of webhook attempts: an
    endpoint URL may carry the receiver's own token. Other httpx users keep theirs."""
    return not getattr(_attempting, "active", False)


logging.getLogger("httpx").addFilter(_not_an_endpoint_request)


@dataclass
class WebhookReport:
    """What one round of delivery did."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0  # given up


@dataclass(frozen=True)
class Claimed:
    """A leased message with what is needed to send it."""

    id: int
    message_id: str
    payload: str
    created_at: datetime
    attempts: int
    url: str
    secret: str
    email: str | None  # the contact's address, for an include_email endpoint only


def backoff(attempts: int, rng: random.Random) -> timedelta:
    """The wait after the `attempts`-th failure: doubling from 30 s, at most 4 h, with
    jitter (between 75 % and 125 %), so a receiver back up is not hit by all at once."""
    wait = min(FIRST_RETRY * (2 ** (attempts - 1)), LONGEST_WAIT)
    return wait * rng.uniform(0.75, 1.25)


def body_of(claimed: Claimed) -> bytes:
    """The message's body: the stored payload, with the address for include_email."""
    if claimed.email is None:
        return claimed.payload.encode()
    document = json.loads(claimed.payload)
    document["data"]["email"] = claimed.email
    return json.dumps(document, separators=(",", ":")).encode()


class WebhookDeliverer:
    """One worker's delivery of due webhook messages. `clock`, when given, replaces the
    database's clock for leases (tests); `rng` the jitter's randomness."""

    def __init__(
        self,
        store: Store,
        *,
        owner: str | None = None,
        lease: timedelta = DEFAULT_LEASE,
        timeout: float = DEFAULT_TIMEOUT,
        client: httpx.Client | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] | None = None,
        real_time: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.owner = owner or worker_owner()
        self.lease = lease
        self.timeout = timeout
        self._client = client
        self.rng = rng or random.Random()
        self.clock = clock
        self.real_time = real_time

    @property
    def client(self) -> httpx.Client:
        """The HTTP client, made on first use: httpx (and the rich it imports) costs a worker
        10 MB, which an installation without webhook endpoints need not pay."""
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=self.timeout, follow_redirects=False)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def lease_now(self, conn: Connection) -> datetime:
        return self.clock() if self.clock is not None else self.store.clock(conn)

    def claim(self, now: datetime, limit: int) -> list[Claimed]:
        """Lease up to `limit` due messages, each the earliest pending one of its contact
        and endpoint (messages naming no contact have no order to keep)."""
        with self.store.begin() as conn:
            lease_now = self.lease_now(conn)
            due = (
                select(m.id)
                .where(
                    m.status == W.PENDING,
                    m.next_attempt_at <= now,
                    (m.lease_expires_at.is_(None)) | (m.lease_expires_at < lease_now),
                    ~behind_an_earlier_one(),
                )
                .order_by(m.next_attempt_at, m.id)
                .limit(limit)
            )
            if not self.store.is_sqlite:
                # Another worker's claim in progress is passed over, not waited for.
                due = due.with_for_update(skip_locked=True, of=webhook_messages)
            ids = list(conn.scalars(due))
            if not ids:
                return []
            conn.execute(
                update(webhook_messages)
                .where(m.id.in_(ids))
                .values(lease_owner=self.owner, lease_expires_at=lease_now + self.lease)
            )
            rows = conn.execute(
                select(
                    m.id,
                    m.message_id,
                    m.payload,
                    m.created_at,
                    m.attempts,
                    webhook_endpoints.c.url,
                    webhook_endpoints.c.secret,
                    webhook_endpoints.c.include_email,
                    contacts.c.email,
                )
                .join(webhook_endpoints, webhook_endpoints.c.id == m.endpoint_id)
                .outerjoin(contacts, contacts.c.id == m.contact_id)
                .where(m.id.in_(ids))
                .order_by(m.next_attempt_at, m.id)
            ).all()
        return [
            Claimed(
                r.id,
                r.message_id,
                r.payload,
                r.created_at,
                r.attempts,
                r.url,
                r.secret,
                r.email if r.include_email else None,
            )
            for r in rows
        ]

    def attempt(self, claimed: Claimed) -> str | None:
        """POST one message; None when the endpoint answered 2xx, else a short error."""
        import httpx  # loaded with the client (see `client`)

        body = body_of(claimed)
        stamp = int(self.real_time())
        _attempting.active = True
        try:
            with self.client.stream(
                "POST",
                claimed.url,
                content=body,
                headers=headers(claimed.secret, claimed.message_id, stamp, body),
            ) as response:
                if 200 <= response.status_code < 300:
                    return None
                text = b""
                for chunk in response.iter_bytes():
                    text += chunk
                    if len(text) >= ERROR_CHARS:
                        break
                shown = " ".join(text[:ERROR_CHARS].decode("utf-8", "replace").split())
                return f"HTTP {response.status_code}" + (f": {shown}" if shown else "")
        except httpx.TimeoutException:
            return "timed out"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {str(exc)[:ERROR_CHARS]}"
        finally:
            _attempting.active = False

    def record(self, claimed: Claimed, error: str | None, *, now: datetime) -> WebhookStatus:
        """Write an attempt's outcome, fenced on this worker's lease."""
        attempts = claimed.attempts + 1
        values: dict = {"attempts": attempts, "lease_owner": None, "lease_expires_at": None}
        if error is None:
            values.update(status=W.DELIVERED, delivered_at=now, last_error=None)
        elif now - claimed.created_at >= GIVE_UP_AFTER:
            values.update(status=W.FAILED, last_error=error)
        else:
            deadline = claimed.created_at + GIVE_UP_AFTER
            values.update(
                last_error=error,
                next_attempt_at=min(now + backoff(attempts, self.rng), deadline),
            )
        with self.store.begin() as conn:
            conn.execute(
                update(webhook_messages)
                .where(and_(m.id == claimed.id, m.lease_owner == self.owner))
                .values(**values)
            )
        return values.get("status", W.PENDING)

    def run(self, *, now: datetime, limit: int = DEFAULT_LIMIT) -> WebhookReport:
        """One round: claim up to `limit` due messages and attempt each once."""
        report = WebhookReport()
        for claimed in self.claim(now, limit):
            error = self.attempt(claimed)
            status = self.record(claimed, error, now=now)
            if status is W.DELIVERED:
                report.delivered += 1
            elif status is W.FAILED:
                report.failed += 1
                log.warning("webhook message %s given up: %s", claimed.message_id, error)
            else:
                report.retrying += 1
        if report.delivered or report.retrying or report.failed:
            log.info(
                "webhooks: %d delivered, %d to retry, %d given up",
                report.delivered,
                report.retrying,
                report.failed,
            )
        return report

    def drain(self, *, now: datetime, limit: int = DEFAULT_LIMIT) -> WebhookReport:
        """Rounds until nothing is due now (`webhooks deliver --once`)."""
        total = WebhookReport()
        while True:
            report = self.run(now=now, limit=limit)
            total.delivered += report.delivered
            total.retrying += report.retrying
            total.failed += report.failed
            if not (report.delivered or report.retrying or report.failed):
                return total


def has_endpoints(store: Store) -> bool:
    """Whether any endpoint exists (cached briefly): a worker without any skips the round."""
    with store.connect() as conn:
        return bool(subscribers(conn))


class WebhookThread:
    """Delivers due webhook messages beside a `dripmail run` worker, in a thread of its
    own, so a slow endpoint never holds up email. A round every `every` seconds, at most
    `limit` messages each; `now` (None: the clock) is the engine's time."""

    def __init__(
        self,
        store: Store,
        *,
        now: datetime | None,
        every: float = 2.0,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        self.store = store
        self.now = now
        self.stop = threading.Event()
        self.every = every
        self.limit = limit
        self.thread = threading.Thread(target=self._loop, name="dripmail-webhooks", daemon=True)

    def round(self) -> WebhookReport:
        """One bounded round now, in the caller's thread (`run --once`)."""
        if not has_endpoints(self.store):
            return WebhookReport()
        deliverer = WebhookDeliverer(self.store)
        try:
            return deliverer.run(now=self.now or utcnow(), limit=self.limit)
        finally:
            deliverer.close()

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> None:
        """Stop after the request in progress (each has a timeout)."""
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=DEFAULT_TIMEOUT + 5)

    def _loop(self) -> None:
        deliverer = WebhookDeliverer(self.store)
        try:
            while not self.stop.wait(self.every):
                try:
                    if has_endpoints(self.store):
                        deliverer.run(now=self.now or utcnow(), limit=self.limit)
                except Exception:  # the next round tries again; email goes on meanwhile
                    log.exception("webhook delivery round failed")
        finally:
            deliverer.close()
