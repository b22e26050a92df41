"""Claim due deliveries, render them, hand them to a sender, record what happened.

Delivery states (DESIGN.md): scheduled -> claimed (lease) -> sending (committed
just before hand-off) -> sent | failed | unknown; also skipped and cancelled.
Due times follow the engine's `now`; leases follow the real clock.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, bindparam, select, update

from senders.base import Message, Outcome, Sender, SenderConfigurationError, SendResult

from . import schedule
from .errors import ConfigurationError
from .publish import load_version
from .render import CompiledCampaign, Recipient, compile_campaign
from .spec import Campaign
from .store import (
    DeliveryStatus,
    Store,
    campaigns,
    contacts,
    deliveries,
    enrollments,
    suppressions,
    utcnow,
)
from .tokens import PLACEHOLDER_PUBLIC_URL, Signer, UnsubscribeClaim, contact_links, public_url

log = logging.getLogger("dripmail.dispatch")

S = DeliveryStatus
DEFAULT_BATCH = 500
DEFAULT_LEASE = timedelta(minutes=5)
DEFAULT_MAX_ATTEMPTS = 5
RETRY_BASE = timedelta(minutes=5)


@dataclass
class RunReport:
    """Counts of what one run did."""

    sent: int = 0
    failed: int = 0
    unknown: int = 0
    retrying: int = 0
    deferred: int = 0
    skipped: int = 0
    recovered: int = 0
    batches: int = 0
    by_campaign: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def handed_off(self) -> int:
        return self.sent + self.failed + self.unknown + self.retrying


@dataclass(frozen=True)
class _Row:
    id: int
    enrollment_id: int
    step_key: str
    position: int
    attempts: int
    contact_id: int
    email: str | None
    first_name: str | None
    timezone: str
    campaign: str


SenderFor = Callable[[Campaign], Sender]


class Dispatcher:
    """One worker: claims batches of due deliveries until none is left at `now`."""

    def __init__(
        self,
        store: Store,
        sender_for: SenderFor,
        *,
        owner: str | None = None,
        batch_size: int = DEFAULT_BATCH,
        lease: timedelta = DEFAULT_LEASE,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.sender_for = sender_for
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.batch_size = batch_size
        self.lease = lease
        self.max_attempts = max_attempts
        self.clock = clock
        self._signer = Signer(store.secret_key())
        self._compiled: dict[tuple[str, str], CompiledCampaign] = {}

    # -- the loop ---------------------------------------------------------------

    def run(self, *, now: datetime) -> RunReport:
        """Send everything due at `now`, batch by batch; safe to run again at the same `now`."""
        report = RunReport()
        self._refuse_placeholders()
        with self.store.begin() as conn:
            report.recovered = self._recover(conn)
        while True:
            batch = self._claim(now)
            if not batch:
                return report
            report.batches += 1
            self._process(batch, now=now, report=report)

    def _refuse_placeholders(self) -> None:
        problems = []
        with self.store.connect() as conn:
            for name, version in conn.execute(
                select(campaigns.c.name, campaigns.c.version).where(campaigns.c.status == "active")
            ):
                campaign = self._campaign(conn, name, version).campaign
                problems += [
                    f"campaign {name}: {field_name} is still a placeholder; set it in campaign.yaml"
                    for field_name in campaign.placeholders()
                ]
        if problems:
            raise ConfigurationError("\n".join(problems))

    def _campaign(self, conn: Connection, name: str, version: str) -> CompiledCampaign:
        key = (name, version)
        if key not in self._compiled:
            self._compiled[key] = compile_campaign(load_version(conn, name, version))
        return self._compiled[key]

    # -- claiming ---------------------------------------------------------------

    def _recover(self, conn: Connection) -> int:
        """Expired leases: claimed rows go back to the queue; rows lost mid-hand-off are unknown."""
        real_now = self.clock()
        expired = and_(deliveries.c.lease_expires_at < real_now)
        back = conn.execute(
            update(deliveries)
            .where(deliveries.c.status == S.CLAIMED, expired)
            .values(status=S.SCHEDULED, lease_owner=None, lease_expires_at=None)
        ).rowcount
        lost = conn.execute(
            update(deliveries)
            .where(deliveries.c.status == S.SENDING, expired)
            .values(
                status=S.UNKNOWN,
                lease_owner=None,
                lease_expires_at=None,
                error="the worker stopped after handing this email to the provider",
            )
        ).rowcount
        if back or lost:
            log.warning("recovered expired leases: %d requeued, %d unknown", back, lost)
        return back + lost

    def _claim(self, now: datetime) -> list[_Row]:
        due = (
            select(deliveries.c.id)
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .join(campaigns, campaigns.c.name == enrollments.c.campaign)
            .where(
                deliveries.c.status == S.SCHEDULED,
                deliveries.c.due_at <= now,
                enrollments.c.status == "active",
                campaigns.c.status == "active",
            )
            .order_by(deliveries.c.due_at, deliveries.c.id)
            .limit(self.batch_size)
        )
        if not self.store.is_sqlite:
            due = due.with_for_update(skip_locked=True, of=deliveries)
        with self.store.begin() as conn:
            ids = list(conn.scalars(due))
            if not ids:
                return []
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(ids), deliveries.c.status == S.SCHEDULED)
                .values(
                    status=S.CLAIMED,
                    lease_owner=self.owner,
                    lease_expires_at=self.clock() + self.lease,
                )
            )
            rows = conn.execute(
                select(
                    deliveries.c.id,
                    deliveries.c.enrollment_id,
                    deliveries.c.step_key,
                    deliveries.c.position,
                    deliveries.c.attempts,
                    contacts.c.id,
                    contacts.c.email,
                    contacts.c.first_name,
                    contacts.c.timezone,
                    enrollments.c.campaign,
                )
                .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
                .join(contacts, contacts.c.id == enrollments.c.contact_id)
                .where(deliveries.c.id.in_(ids), deliveries.c.lease_owner == self.owner)
                .order_by(deliveries.c.due_at, deliveries.c.id)
            ).all()
        return [_Row(*row) for row in rows]

    # -- one batch --------------------------------------------------------------

    def _process(self, batch: list[_Row], *, now: datetime, report: RunReport) -> None:
        with self.store.connect() as conn:
            versions = dict(conn.execute(select(campaigns.c.name, campaigns.c.version)).all())
            compiled = {
                name: self._campaign(conn, name, versions[name])
                for name in {r.campaign for r in batch}
            }
            history = self._history(conn, {r.enrollment_id for r in batch})
        suppressed = self._suppressed(batch)

        going: list[_Row] = []
        skips: list[tuple[_Row, str]] = []
        moves: dict[int, datetime] = {}  # delivery id -> new due time
        by_enrollment: dict[int, list[_Row]] = defaultdict(list)
        for row in batch:
            by_enrollment[row.enrollment_id].append(row)
        for enrollment_id, rows in by_enrollment.items():
            rows.sort(key=lambda r: r.position)
            campaign = compiled[rows[0].campaign]
            for row in rows:
                if row.email is None:
                    skips.append((row, "the contact was erased"))
                elif row.email in suppressed:
                    skips.append((row, "the address is suppressed"))
                elif row.step_key not in campaign.steps:
                    skips.append((row, "the step was removed from the campaign"))
            skipped_ids = {r.id for r, _ in skips}
            live = [r for r in rows if r.id not in skipped_ids]
            if not live:
                continue
            first = self._one_per_opening(
                live, history[enrollment_id], campaign.campaign, now=now, moves=moves
            )
            if first is not None:
                going.append(first)

        self._skip(skips, now=now, report=report)
        self._move(moves, now=now, report=report)
        if going:
            self._hand_off(going, compiled, now=now, report=report)

    def _history(self, conn: Connection, enrollment_ids: set[int]) -> dict[int, list[tuple]]:
        """Every delivery of these enrollments: (id, position, status, due_at, sent_at)."""
        result: dict[int, list[tuple]] = defaultdict(list)
        for row in conn.execute(
            select(
                deliveries.c.enrollment_id,
                deliveries.c.id,
                deliveries.c.position,
                deliveries.c.status,
                deliveries.c.due_at,
                deliveries.c.sent_at,
            ).where(deliveries.c.enrollment_id.in_(list(enrollment_ids)))
        ):
            result[row[0]].append(tuple(row[1:]))
        return result

    def _one_per_opening(
        self,
        live: list[_Row],
        history: list[tuple],
        campaign: Campaign,
        *,
        now: datetime,
        moves: dict[int, datetime],
    ) -> _Row | None:
        """Pick the one email this contact may get now; re-plan the rest, keeping order."""
        tz = schedule.zone(live[0].timezone)
        window = campaign.window
        opening = schedule.opening_containing(now, window, tz)
        already = opening is not None and any(
            sent_at is not None and sent_at >= opening
            for _, _, status, _, sent_at in history
            if status in (S.SENT, S.SENDING, S.UNKNOWN)
        )
        first = None if opening is None or already else live[0]
        claimed = {r.id for r in live}
        # The contact's later pending steps, in order, after the one going now.
        pending = sorted(
            (position, delivery_id, due_at)
            for delivery_id, position, status, due_at, _ in history
            if (status == S.SCHEDULED or delivery_id in claimed)
            and (first is None or position > first.position)
        )
        start = schedule.next_opening(now, window, tz)
        new_due = schedule.replan_in_order(start, [due for _, _, due in pending], window, tz)
        for (_, delivery_id, old_due), due in zip(pending, new_due, strict=True):
            if due != old_due or delivery_id in claimed:
                moves[delivery_id] = due
        return first

    def _suppressed(self, batch: Sequence[_Row]) -> set[str]:
        hashes = {self.store.address_hash(r.email): r.email for r in batch if r.email}
        if not hashes:
            return set()
        with self.store.connect() as conn:
            found = conn.scalars(
                select(suppressions.c.address_hash).where(
                    suppressions.c.address_hash.in_(list(hashes))
                )
            )
            return {hashes[h] for h in found}

    # -- recording --------------------------------------------------------------

    def _fenced(self):
        # Fencing: a worker finishes only rows it still holds the lease on.
        return update(deliveries).where(
            deliveries.c.id == bindparam("b_id"), deliveries.c.lease_owner == self.owner
        )

    def _skip(self, skips: list[tuple[_Row, str]], *, now: datetime, report: RunReport) -> None:
        if not skips:
            return
        with self.store.begin() as conn:
            conn.execute(
                self._fenced().values(
                    status=S.SKIPPED,
                    error=bindparam("b_error"),
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                ),
                [{"b_id": r.id, "b_error": reason} for r, reason in skips],
            )
        report.skipped += len(skips)

    def _move(self, moves: dict[int, datetime], *, now: datetime, report: RunReport) -> None:
        """Re-plan rows to new due times; claimed ones go back to the queue."""
        if not moves:
            return
        with self.store.begin() as conn:
            conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.id == bindparam("b_id"),
                    (deliveries.c.status == S.SCHEDULED) | (deliveries.c.status == S.CLAIMED),
                    (deliveries.c.lease_owner == self.owner) | (deliveries.c.lease_owner.is_(None)),
                )
                .values(
                    status=S.SCHEDULED,
                    due_at=bindparam("b_due"),
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                ),
                [{"b_id": i, "b_due": due} for i, due in moves.items()],
            )
        report.deferred += len(moves)

    def _hand_off(
        self,
        going: list[_Row],
        compiled: dict[str, CompiledCampaign],
        *,
        now: datetime,
        report: RunReport,
    ) -> None:
        messages: dict[str, list[tuple[_Row, Message]]] = defaultdict(list)
        for row in going:
            campaign = compiled[row.campaign]
            messages[row.campaign].append((row, self._message(campaign, row, now=now)))
        # Suppressions again, right before hand-off: an unsubscribe may have landed meanwhile.
        late = self._suppressed(going)
        for name, pairs in messages.items():
            skips = [(row, "the address is suppressed") for row, _ in pairs if row.email in late]
            self._skip(skips, now=now, report=report)
            pairs = [(row, m) for row, m in pairs if row.email not in late]
            if pairs:
                self._send(compiled[name].campaign, pairs, now=now, report=report)

    def _message(self, compiled: CompiledCampaign, row: _Row, *, now: datetime) -> Message:
        spec = compiled.campaign.spec
        token = self._signer.token(UnsubscribeClaim(row.contact_id, row.campaign, row.id))
        links = contact_links(
            public_url(spec.links.public_url) or PLACEHOLDER_PUBLIC_URL,
            token,
            spec.links.unsubscribe_mailto or spec.reply_to or spec.from_.address,
        )
        return compiled.message(
            row.step_key,
            Recipient(row.email or "", row.first_name, row.timezone),
            delivery_id=str(row.id),
            unsubscribe_url=links.unsubscribe_url,
            unsubscribe_mailto=links.unsubscribe_mailto,
            preferences_url=links.preferences_url,
            date=now,
        )

    def _send(
        self,
        campaign: Campaign,
        pairs: list[tuple[_Row, Message]],
        *,
        now: datetime,
        report: RunReport,
    ) -> None:
        rows = {str(row.id): row for row, _ in pairs}
        with self.store.begin() as conn:
            conn.execute(
                self._fenced().values(
                    status=S.SENDING,
                    attempts=deliveries.c.attempts + 1,
                    sent_at=now,
                    updated_at=now,
                ),
                [{"b_id": row.id} for row in rows.values()],
            )
        try:
            sender = self.sender_for(campaign)
            results = sender.send([message for _, message in pairs])
        except SenderConfigurationError:
            # Nothing went out: put every row back as it was, marked neither sent nor failed.
            with self.store.begin() as conn:
                conn.execute(
                    self._fenced().values(
                        status=S.SCHEDULED,
                        attempts=deliveries.c.attempts - 1,
                        sent_at=None,
                        lease_owner=None,
                        lease_expires_at=None,
                    ),
                    [{"b_id": row.id} for row in rows.values()],
                )
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.status == S.CLAIMED, deliveries.c.lease_owner == self.owner)
                    .values(status=S.SCHEDULED, lease_owner=None, lease_expires_at=None)
                )
            raise
        self._record(results, rows, campaign, now=now, report=report)

    def _record(
        self,
        results: list[SendResult],
        rows: dict[str, _Row],
        campaign: Campaign,
        *,
        now: datetime,
        report: RunReport,
    ) -> None:
        sent, failed, unknown, retry = [], [], [], []
        for result in results:
            row = rows[result.delivery_id]
            # `sending` already counted one attempt; in-run retries add the rest.
            base = {"b_id": row.id, "b_more": max(result.attempts - 1, 0)}
            attempts = row.attempts + max(result.attempts, 1)
            if result.outcome is Outcome.SENT:
                sent.append({**base, "b_pid": result.provider_id})
            elif result.outcome is Outcome.AMBIGUOUS:
                unknown.append({**base, "b_error": result.error})
            elif result.outcome is Outcome.TRANSIENT and attempts < self.max_attempts:
                due = self._retry_due(attempts, row.timezone, campaign, result, now=now)
                retry.append({**base, "b_error": result.error, "b_due": due})
            else:
                failed.append({**base, "b_error": result.error})
        done = {
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": now,
            "attempts": deliveries.c.attempts + bindparam("b_more"),
        }
        with self.store.begin() as conn:
            if sent:
                conn.execute(
                    self._fenced().values(
                        status=S.SENT, provider_message_id=bindparam("b_pid"), error=None, **done
                    ),
                    sent,
                )
            for status, params in ((S.UNKNOWN, unknown), (S.FAILED, failed)):
                if params:
                    conn.execute(
                        self._fenced().values(status=status, error=bindparam("b_error"), **done),
                        params,
                    )
            if retry:
                conn.execute(
                    self._fenced().values(
                        status=S.SCHEDULED,
                        error=bindparam("b_error"),
                        due_at=bindparam("b_due"),
                        sent_at=None,
                        **done,
                    ),
                    retry,
                )
        report.sent += len(sent)
        report.failed += len(failed)
        report.unknown += len(unknown)
        report.retrying += len(retry)
        report.by_campaign[campaign.name] += len(sent)
        log.info(
            "batch: %d sent, %d failed, %d unknown, %d to retry",
            len(sent),
            len(failed),
            len(unknown),
            len(retry),
        )

    def _retry_due(
        self, attempts: int, timezone: str, campaign: Campaign, result: SendResult, *, now: datetime
    ) -> datetime:
        """Exponential backoff in engine time, at least what the provider asked; in the window."""
        wait = RETRY_BASE * (2 ** (attempts - 1))
        if result.retry_at is not None:  # a real-clock time, e.g. a 429's X-RateLimit-Reset
            wait = max(wait, result.retry_at - self.clock())
        return schedule.into_window(now + wait, campaign.window, schedule.zone(timezone))


class SenderPool:
    """Senders by campaign: the campaign file's choice unless `--sender` overrides it."""

    def __init__(self, override: str | None = None) -> None:
        self.override = override
        self._made: dict[tuple, Sender] = {}

    def __call__(self, campaign: Campaign) -> Sender:
        from senders.registry import NEEDS_PUBLIC_URL, make_sender

        config = campaign.spec.sender.model_dump()
        name = self.override or config["type"]
        if name in NEEDS_PUBLIC_URL and not public_url(campaign.spec.links.public_url):
            # An unsubscribe link that leads nowhere breaks the law: refuse to start.
            raise SenderConfigurationError(
                f"campaign {campaign.name}: the {name} sender needs a public URL for unsubscribe "
                "links: set DRIPMAIL_PUBLIC_URL or links.public_url in campaign.yaml"
            )
        key = (name, repr(sorted(config.items())))
        if key not in self._made:
            self._made[key] = make_sender(name, config)
        return self._made[key]

    def check(self, store: Store) -> None:
        """Build every sender the published campaigns need, so bad settings fail before a claim."""
        with store.connect() as conn:
            for name, version in conn.execute(select(campaigns.c.name, campaigns.c.version)):
                self(load_version(conn, name, version))

    def close(self) -> None:
        for sender in self._made.values():
            sender.close()
        self._made.clear()


def run_worker(
    store: Store,
    *,
    now: datetime | None,
    once: bool,
    sender: str | None = None,
    batch_size: int = DEFAULT_BATCH,
    interval: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[RunReport]:
    """Run ticks: one at `now` when given (or with `once`), else one per `interval` on the clock."""
    pool = SenderPool(sender)
    try:
        pool.check(store)
        dispatcher = Dispatcher(store, pool, batch_size=batch_size)
        while True:
            yield dispatcher.run(now=now or utcnow())
            if once:
                return
            sleep(interval)
    finally:
        pool.close()


def retry_unknown(store: Store, *, older_than: timedelta, now: datetime) -> int:
    """Re-queue `unknown` deliveries last touched before `now - older_than` (a staff decision).

    An unknown delivery may have reached the contact: SendGrid has no idempotency key,
    so this is never automatic.
    """
    with store.begin() as conn:
        return conn.execute(
            update(deliveries)
            .where(
                deliveries.c.status == S.UNKNOWN,
                deliveries.c.updated_at <= now - older_than,
            )
            .values(
                status=S.SCHEDULED,
                due_at=now,
                sent_at=None,
                error="re-queued by staff after an unknown outcome",
                updated_at=now,
            )
        ).rowcount


def send_test(
    store: Store, campaign: Campaign, step_key: str, to: str, *, sender: str | None, now: datetime
) -> SendResult:
    """Send one rendered step to a staff address, marked as a test; no delivery is recorded."""
    from .enroll import normalise_email
    from .errors import InputError, NotFoundError

    try:
        address = normalise_email(to)
    except ValueError as exc:
        raise InputError(str(exc), field="--to") from None
    compiled = compile_campaign(campaign)
    if step_key not in compiled.steps:
        keys = ", ".join(compiled.steps)
        raise NotFoundError(f"no step {step_key!r} in {campaign.name} (steps: {keys})")
    spec = campaign.spec
    token = Signer(store.secret_key()).token(UnsubscribeClaim(0, campaign.name, None))
    links = contact_links(
        public_url(spec.links.public_url) or PLACEHOLDER_PUBLIC_URL,
        token,
        spec.links.unsubscribe_mailto or spec.reply_to or spec.from_.address,
    )
    message = compiled.message(
        step_key,
        Recipient(address, "Test", spec.timezone),
        delivery_id=f"test-{secrets.token_hex(6)}",
        unsubscribe_url=links.unsubscribe_url,
        unsubscribe_mailto=links.unsubscribe_mailto,
        preferences_url=links.preferences_url,
        date=now,
        is_test=True,
    )
    pool = SenderPool(sender)
    try:
        (result,) = pool(campaign).send([message])
    finally:
        pool.close()
    return result
