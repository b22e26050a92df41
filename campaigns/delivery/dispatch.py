"""Claim due deliveries, render them, hand them to a sender, record what happened.

Delivery states (DESIGN.md): scheduled -> claimed (lease) -> sending (committed
just before hand-off) -> sent | failed | unknown; also skipped and cancelled.
Due times follow the engine's `now`; leases follow the real clock of the database.

Many workers may share one PostgreSQL database:

- claiming takes a batch with FOR UPDATE SKIP LOCKED, walking (due_at, id) forward
  from the last batch (a keyset, never OFFSET), and leases it: owner id + expiry on
  the database's clock;
- fencing: every update that moves a claimed row on names the owner, so a worker
  whose lease was taken over finishes nothing and sends nothing it no longer holds;
- recovery: an expired `claimed` row goes back to the queue, an expired `sending`
  row (its worker died after hand-off) becomes `unknown`, never sent again;
- one email per contact per window opening holds across workers: the hand-off
  transaction locks the contact's enrollment and looks at its other deliveries;
- a stop request (SIGTERM) lets the hand-off in progress finish, releases the rows
  claimed but not handed off, and ends the run.

SQLite keeps a single writer: BEGIN IMMEDIATE serialises the same transactions.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Row,
    Select,
    bindparam,
    case,
    false,
    literal,
    select,
    true,
    tuple_,
    update,
)

from campaigns.authoring.spec import Campaign
from campaigns.errors import ConfigurationError, InputError, NotFoundError
from campaigns.planning import schedule
from campaigns.planning.contacts import normalise_email
from campaigns.planning.enroll import last_sent
from campaigns.rendering.compile import compile_campaign
from campaigns.rendering.personalise import CompiledCampaign, Recipient
from campaigns.rendering.tokens import (
    PLACEHOLDER_PUBLIC_URL,
    Signer,
    UnsubscribeClaim,
    contact_links,
    public_url,
)
from campaigns.settings import Settings
from campaigns.storage.publish import load_version
from campaigns.storage.statuses import IN_FLIGHT, CampaignStatus, DeliveryStatus, EnrollmentStatus
from campaigns.storage.store import Store, utcnow
from campaigns.storage.tables import (
    UNKNOWN_ONLY,
    campaigns,
    contacts,
    deliveries,
    enrollments,
    suppressions,
)
from senders.base import Message, Outcome, Sender, SenderConfigurationError, SendResult

log = logging.getLogger("dripmail.dispatch")

S = DeliveryStatus
DEFAULT_BATCH = 500
# Emails handed to the sender per transaction: a whole batch, so a batch costs three
# commits (claim, hand-off, record) and SendGrid can carry it in one or two requests.
DEFAULT_HANDOFF = DEFAULT_BATCH
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
    released: int = 0
    batches: int = 0
    by_campaign: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def handed_off(self) -> int:
        return self.sent + self.failed + self.unknown + self.retrying

    def add(self, other: RunReport) -> None:
        """Fold another run's counts into this one (several workers, one total)."""
        for name in (
            "sent",
            "failed",
            "unknown",
            "retrying",
            "deferred",
            "skipped",
            "recovered",
            "released",
            "batches",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for campaign, count in other.by_campaign.items():
            self.by_campaign[campaign] += count


@dataclass(frozen=True)
class _Row:
    id: int
    enrollment_id: int
    step_key: str
    position: int
    due_at: datetime
    attempts: int
    contact_id: int
    email: str | None
    first_name: str | None
    timezone: str
    campaign: str


@dataclass(frozen=True)
class _Going:
    """A row chosen to go now, in the window opening that started at `opening`."""

    row: _Row
    opening: datetime
    start: datetime  # the next opening: where it moves, should the hand-off check say no


@dataclass(frozen=True)
class _Openings:
    """For one campaign window and time zone: the opening `now` is in, and the next."""

    current: datetime | None
    next: datetime
    tz: ZoneInfo

    @classmethod
    def at(cls, now: datetime, campaign: Campaign, timezone: str) -> _Openings:
        tz = schedule.zone(timezone)
        return cls(
            schedule.opening_containing(now, campaign.window, tz),
            schedule.next_opening(now, campaign.window, tz),
            tz,
        )


def _by_status(
    *,
    gone: ColumnElement[bool] | None = None,
    claimed: ColumnElement[bool] | None = None,
    scheduled: ColumnElement[bool] | None = None,
) -> ColumnElement[bool]:
    """A filter on a contact's deliveries: for each status, which rows to read (none where
    no condition is given).

    A CASE rather than an OR of status terms: next to `enrollment_id IN (...)`, SQLite
    without statistics answers such an OR from the status indexes, reading every sent
    or scheduled row of the table for each batch (a run went quadratic); a CASE can't
    use an index, so the contacts' few rows are found through their enrollment.
    """
    whens = [
        (deliveries.c.status.in_(IN_FLIGHT), gone),
        (deliveries.c.status == S.CLAIMED, claimed),
        (deliveries.c.status == S.SCHEDULED, scheduled),
    ]
    return case(*[(when, then) for when, then in whens if then is not None], else_=false())


def _zone_key(row: _Row) -> tuple[str, str]:
    return row.campaign, row.timezone


def _first_to_go(live: list[_Row], history: list[Row], openings: _Openings) -> _Going | None:
    """The contact's earliest claimed step, unless the window is shut or one went already
    in this opening (one email per contact per opening)."""
    opening = openings.current
    if opening is None or any(
        r.status in IN_FLIGHT and r.sent_at is not None and r.sent_at >= opening for r in history
    ):
        return None
    return _Going(live[0], opening, openings.next)


def _moved_on(
    live: list[_Row],
    history: list[Row],
    first: _Going | None,
    campaign: Campaign,
    openings: _Openings,
) -> dict[int, datetime]:
    """New due times for the contact's claimed and pending steps after the one going now
    (all of them when none goes): from the next opening, one per opening, in order."""
    claimed = {r.id for r in live}
    after = first.row.position if first is not None else -1
    pending = sorted(
        (r.position, r.id, r.due_at)
        for r in history
        if (r.status == S.SCHEDULED or r.id in claimed) and r.position > after
    )
    new_due = schedule.replan_in_order(
        openings.next,
        [due for _, _, due in pending],
        campaign.window,
        openings.tz,
        min_gap=campaign.min_gap,
    )
    return {
        delivery_id: due
        for (_, delivery_id, old_due), due in zip(pending, new_due, strict=True)
        if due != old_due or delivery_id in claimed
    }


SenderFor = Callable[[Campaign], Sender]


def worker_owner(index: int | None = None) -> str:
    """A lease owner id unique to this process: host, pid, a random part (pids get reused)."""
    suffix = f":w{index}" if index is not None else ""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}{suffix}"


class Dispatcher:
    """One worker: claims batches of due deliveries until none is left at `now`.

    `clock`, when given, replaces the database's clock for leases (tests); `stop`,
    when set, ends the run after the hand-off in progress.
    """

    def __init__(
        self,
        store: Store,
        sender_for: SenderFor,
        *,
        owner: str | None = None,
        batch_size: int = DEFAULT_BATCH,
        handoff_size: int = DEFAULT_HANDOFF,
        lease: timedelta = DEFAULT_LEASE,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        clock: Callable[[], datetime] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        if lease <= timedelta(0):
            raise ConfigurationError("the lease must be longer than zero")
        self.store = store
        self.sender_for = sender_for
        self.owner = owner or worker_owner()
        self.batch_size = batch_size
        self.handoff_size = max(1, handoff_size)
        self.lease = lease
        self.max_attempts = max_attempts
        self.clock = clock
        self.stop = stop or threading.Event()
        self._signer = Signer(store.secret_key())
        self._compiled: dict[tuple[str, str], CompiledCampaign] = {}
        self._hashes: dict[str, str] = {}  # address -> suppression hash

    # -- the loop ---------------------------------------------------------------

    def run(self, *, now: datetime) -> RunReport:
        """Send everything due at `now`, batch by batch; safe to run again at the same `now`."""
        report = RunReport()
        refuse_placeholders(self.store)
        try:
            report.recovered += self._recover(now)
            after: tuple[datetime, int] | None = None
            fresh_pass = True
            while not self.stop.is_set():
                batch, cursor = self._claim(now, after=after)
                if cursor is None:
                    if fresh_pass:
                        break
                    # The end of a pass. Rows behind the cursor may have come back since
                    # (a lease that ran out, rows another worker released): one more pass,
                    # which ends the run when it finds nothing to claim.
                    report.recovered += self._recover(now)
                    after, fresh_pass = None, True
                    continue
                after = cursor
                if batch:
                    fresh_pass = False
                    report.batches += 1
                    self._process(batch, now=now, report=report)
        finally:
            # Claimed but not handed off (a stop, an error): back to the queue at once
            # rather than when the lease runs out.
            report.released += self._release()
        return report

    def warm_up(self) -> int:
        """Compile every active campaign's current version now; returns how many.

        A worker compiles a version once, on its first batch of it (about half a second
        for a long article); a long-running worker may do it before its first claim.
        """
        with self.store.connect() as conn:
            active = conn.execute(
                select(campaigns.c.name, campaigns.c.version).where(
                    campaigns.c.status == CampaignStatus.ACTIVE
                )
            ).all()
            for name, version in active:
                self._campaign(conn, name, version)
        return len(active)

    def _campaign(self, conn: Connection, name: str, version: str) -> CompiledCampaign:
        key = (name, version)
        if key not in self._compiled:
            self._compiled[key] = compile_campaign(load_version(conn, name, version))
        return self._compiled[key]

    def _lease_now(self, conn: Connection) -> datetime:
        return self.clock() if self.clock is not None else self.store.clock(conn)

    # -- claiming ---------------------------------------------------------------

    def _recover(self, now: datetime) -> int:
        """Expired leases: claimed rows go back to the queue; rows lost mid-hand-off are unknown."""
        with self.store.begin() as conn:
            expired = deliveries.c.lease_expires_at < self._lease_now(conn)
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
                    updated_at=now,
                )
            ).rowcount
        if back or lost:
            log.warning("recovered expired leases: %d requeued, %d unknown", back, lost)
        return back + lost

    def claim_query(self, now: datetime, *, after: tuple[datetime, int] | None = None) -> Select:
        """Step one of a claim: the next due rows after the keyset cursor `after`, locked.

        One table, ordered by (due_at, id) and bounded below by the cursor: it reads
        ix_deliveries_claim in order from the cursor and stops after the batch, whatever
        the planner's statistics say (a join here is planned badly right after a bulk
        import, before ANALYZE). No OFFSET; rows passed over are not read again this pass.
        """
        due = (
            select(deliveries.c.id, deliveries.c.due_at)
            .where(deliveries.c.status == S.SCHEDULED, deliveries.c.due_at <= now)
            .order_by(deliveries.c.due_at, deliveries.c.id)
            .limit(self.batch_size)
        )
        if after is not None:
            # Typed like the columns, so the time is bound as naive UTC, as stored.
            cursor = tuple_(literal(after[0], deliveries.c.due_at.type), literal(after[1], Integer))
            due = due.where(tuple_(deliveries.c.due_at, deliveries.c.id) > cursor)
        if not self.store.is_sqlite:
            # Rows another worker is claiming right now are passed over, not waited for.
            due = due.with_for_update(skip_locked=True)
        return due

    def _claim(
        self, now: datetime, *, after: tuple[datetime, int] | None = None
    ) -> tuple[list[_Row], tuple[datetime, int] | None]:
        """Lease the next batch of due rows: owner id and expiry on the database's clock.

        Returns the rows and the cursor to continue from (None: nothing left this pass).
        Rows of paused enrollments or campaigns are passed over, not claimed.
        """
        with self.store.begin() as conn:
            candidates = conn.execute(self.claim_query(now, after=after)).all()
            if not candidates:
                return [], None
            cursor = (candidates[-1].due_at, candidates[-1].id)
            rows = [
                _Row(*row)
                for row in conn.execute(
                    select(
                        deliveries.c.id,
                        deliveries.c.enrollment_id,
                        deliveries.c.step_key,
                        deliveries.c.position,
                        deliveries.c.due_at,
                        deliveries.c.attempts,
                        contacts.c.id,
                        contacts.c.email,
                        contacts.c.first_name,
                        contacts.c.timezone,
                        enrollments.c.campaign,
                    )
                    .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
                    .join(campaigns, campaigns.c.name == enrollments.c.campaign)
                    .join(contacts, contacts.c.id == enrollments.c.contact_id)
                    .where(
                        deliveries.c.id.in_([c.id for c in candidates]),
                        enrollments.c.status == EnrollmentStatus.ACTIVE,
                        campaigns.c.status == CampaignStatus.ACTIVE,
                    )
                    .order_by(deliveries.c.due_at, deliveries.c.id)
                )
            ]
            if rows:
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id.in_([r.id for r in rows]))
                    .values(
                        status=S.CLAIMED,
                        lease_owner=self.owner,
                        lease_expires_at=self._lease_now(conn) + self.lease,
                    )
                )
        return rows, cursor

    def _release(self) -> int:
        """Rows this worker claimed and did not hand off go back to the queue."""
        try:
            with self.store.begin() as conn:
                released = conn.execute(
                    update(deliveries)
                    .where(deliveries.c.status == S.CLAIMED, deliveries.c.lease_owner == self.owner)
                    .values(status=S.SCHEDULED, lease_owner=None, lease_expires_at=None)
                ).rowcount
        except Exception:  # the database is gone: the leases run out instead
            log.exception("could not release claimed deliveries; their leases will run out")
            return 0
        if released:
            log.info("released %d claimed deliveries", released)
        return released

    # -- one batch --------------------------------------------------------------

    def _process(self, batch: list[_Row], *, now: datetime, report: RunReport) -> None:
        by_enrollment: dict[int, list[_Row]] = defaultdict(list)
        for row in batch:
            by_enrollment[row.enrollment_id].append(row)
        with self.store.connect() as conn:
            versions = dict(conn.execute(select(campaigns.c.name, campaigns.c.version)).all())
            compiled = {
                name: self._campaign(conn, name, versions[name])
                for name in {r.campaign for r in batch}
            }
            openings = {
                key: _Openings.at(now, compiled[key[0]].campaign, key[1])
                for key in {_zone_key(r) for r in batch}
            }
            # Only the rows that bear on the choice: gone since the earliest opening, held
            # by this worker, or due before the latest next opening. A contact with more
            # than that to re-plan gets all its rows read below.
            history = self._rows_of(
                conn,
                by_enrollment,
                _by_status(
                    gone=deliveries.c.sent_at >= min(o.current or now for o in openings.values()),
                    claimed=deliveries.c.lease_owner == self.owner,
                    scheduled=deliveries.c.due_at < max(o.next for o in openings.values()),
                ),
            )
        suppressed = self._suppressed(batch)

        going: list[_Going] = []
        skips: list[tuple[_Row, str]] = []
        replan: dict[int, list[_Row]] = {}  # enrollments whose later steps move
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
            first = _first_to_go(live, history[enrollment_id], openings[_zone_key(live[0])])
            # Steps waiting for a later opening were placed by these same rules when
            # planned (or re-planned by an edit); only a contact with another step
            # claimed or overdue, or none going now, needs its steps moved.
            if (
                first is not None
                and len(live) == 1
                and all(r.status != S.SCHEDULED for r in history[enrollment_id])
            ):
                going.append(first)
            else:
                replan[enrollment_id] = live
        moves: dict[int, datetime] = {}  # delivery id -> new due time
        if replan:
            with self.store.connect() as conn:
                everything = self._rows_of(conn, replan)
            for enrollment_id, live in replan.items():
                first = _first_to_go(live, everything[enrollment_id], openings[_zone_key(live[0])])
                campaign = compiled[live[0].campaign].campaign
                moves.update(
                    _moved_on(
                        live,
                        everything[enrollment_id],
                        first,
                        campaign,
                        openings[_zone_key(live[0])],
                    )
                )
                if first is not None:
                    going.append(first)

        self._skip(skips, now=now, report=report)
        self._move(moves, {r.id for r in batch}, now=now, report=report)
        if going:
            self._hand_off(going, compiled, now=now, report=report)

    def _rows_of(
        self, conn: Connection, enrollment_ids: Iterable[int], *where: ColumnElement[bool]
    ) -> dict[int, list[Row]]:
        """These enrollments' deliveries (those meeting `where`), by enrollment."""
        result: dict[int, list[Row]] = defaultdict(list)
        for row in conn.execute(
            select(
                deliveries.c.enrollment_id,
                deliveries.c.id,
                deliveries.c.position,
                deliveries.c.status,
                deliveries.c.due_at,
                deliveries.c.sent_at,
                deliveries.c.lease_owner,
            ).where(deliveries.c.enrollment_id.in_(sorted(enrollment_ids)), *where)
        ):
            result[row.enrollment_id].append(row)
        return result

    def _suppressed(self, batch: Sequence[_Row]) -> set[str]:
        """The batch's addresses that are suppressed (asked for again at hand-off)."""
        hashes = {self._address_hash(r.email): r.email for r in batch if r.email}
        if not hashes:
            return set()
        with self.store.connect() as conn:
            found = conn.scalars(
                select(suppressions.c.address_hash).where(
                    suppressions.c.address_hash.in_(list(hashes))
                )
            )
            return {hashes[h] for h in found}

    def _address_hash(self, email: str) -> str:
        # Each address is looked up twice per batch: hash it once (a few hundred kept).
        if len(self._hashes) > 4 * self.batch_size:
            self._hashes.clear()
        if (known := self._hashes.get(email)) is None:
            known = self._hashes[email] = self.store.address_hash(email)
        return known

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
                [{"b_id": r.id, "b_error": reason} for r, reason in sorted(skips, key=_by_id)],
            )
        report.skipped += len(skips)

    def _move(
        self, moves: dict[int, datetime], mine: set[int], *, now: datetime, report: RunReport
    ) -> None:
        """Re-plan rows to new due times; claimed ones go back to the queue."""
        if not moves:
            return
        with self.store.begin() as conn:
            self._move_in(conn, moves, mine, now=now)
        report.deferred += len(moves)

    def _move_in(
        self, conn: Connection, moves: dict[int, datetime], mine: set[int], *, now: datetime
    ) -> None:
        """Fenced too: rows this worker claimed move only while it still holds them; the
        contact's other rows only while nobody holds them (another worker's are its own
        to re-plan). Ids in order, so two workers re-planning one contact's rows lock
        them in the same order (no deadlock)."""
        values = {
            "status": S.SCHEDULED,
            "due_at": bindparam("b_due"),
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": now,
        }
        for held, status, owner in (
            (True, S.CLAIMED, deliveries.c.lease_owner == self.owner),
            (False, S.SCHEDULED, deliveries.c.lease_owner.is_(None)),
        ):
            params = [
                {"b_id": i, "b_due": due} for i, due in sorted(moves.items()) if (i in mine) is held
            ]
            if params:
                conn.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.id == bindparam("b_id"), deliveries.c.status == status, owner
                    )
                    .values(**values),
                    params,
                )

    def _hand_off(
        self,
        going: list[_Going],
        compiled: dict[str, CompiledCampaign],
        *,
        now: datetime,
        report: RunReport,
    ) -> None:
        """Hand the batch to the senders in chunks; a stop request ends it between chunks.

        A sender that puts many messages in one request (`batch_limit`) gets chunks of
        up to that many, so a claimed batch of one step can go in one request.
        """
        by_campaign: dict[str, list[_Going]] = defaultdict(list)
        for item in going:
            by_campaign[item.row.campaign].append(item)
        for name, items in by_campaign.items():
            sender = self.sender_for(compiled[name].campaign)
            size = max(self.handoff_size, getattr(sender, "batch_limit", 1))
            for start in range(0, len(items), size):
                if self.stop.is_set():
                    return  # the rest is still claimed: run() releases it
                chunk = items[start : start + size]
                # Suppressions again, right before hand-off: an unsubscribe may have landed.
                late = self._suppressed([item.row for item in chunk])
                skips = [(i.row, "the address is suppressed") for i in chunk if i.row.email in late]
                self._skip(skips, now=now, report=report)
                chunk = [item for item in chunk if item.row.email not in late]
                if chunk:
                    self._send(compiled[name], chunk, sender, now=now, report=report)

    def _messages(
        self, compiled: CompiledCampaign, chunk: list[_Going], *, now: datetime, batch_form: bool
    ) -> dict[int, Message]:
        """Each row's personalised Message, by delivery id."""
        spec = compiled.campaign.spec
        # The same for every email of the campaign: looked up once, not per contact.
        base_url = (
            public_url(self.store.settings.public_url, spec.links.public_url)
            or PLACEHOLDER_PUBLIC_URL
        )
        mailbox = spec.links.unsubscribe_mailto or spec.reply_to or spec.from_.address
        messages = {}
        for item in chunk:
            row = item.row
            token = self._signer.token(UnsubscribeClaim(row.contact_id, row.campaign, row.id))
            links = contact_links(base_url, token, mailbox)
            messages[row.id] = compiled.message(
                row.step_key,
                Recipient(row.email or "", row.first_name, row.timezone),
                delivery_id=str(row.id),
                unsubscribe_url=links.unsubscribe_url,
                unsubscribe_mailto=links.unsubscribe_mailto,
                preferences_url=links.preferences_url,
                date=now,
                batch_form=batch_form,
            )
        return messages

    def _send(
        self,
        compiled: CompiledCampaign,
        chunk: list[_Going],
        sender: Sender,
        *,
        now: datetime,
        report: RunReport,
    ) -> None:
        campaign = compiled.campaign
        # Rendered before anything is committed: a failure here leaves the rows claimed.
        messages = self._messages(
            compiled, chunk, now=now, batch_form=getattr(sender, "batch_limit", 1) > 1
        )
        with self.store.begin() as conn:
            lease_now = self._lease_now(conn)
            allowed = self._check_openings(conn, chunk, campaign, now=now, report=report)
            handed: set[int] = set()
            if allowed:
                handed = set(
                    conn.scalars(
                        update(deliveries)
                        .where(
                            deliveries.c.id.in_([item.row.id for item in allowed]),
                            deliveries.c.status == S.CLAIMED,
                            deliveries.c.lease_owner == self.owner,
                        )
                        .values(
                            status=S.SENDING,
                            attempts=deliveries.c.attempts + 1,
                            sent_at=now,
                            updated_at=now,
                            lease_expires_at=lease_now + self.lease,
                        )
                        .returning(deliveries.c.id)
                    )
                )
            # A heartbeat for the rest of the batch, still waiting its turn.
            conn.execute(
                update(deliveries)
                .where(deliveries.c.status == S.CLAIMED, deliveries.c.lease_owner == self.owner)
                .values(lease_expires_at=lease_now + self.lease)
            )
        if len(handed) < len(allowed):
            # The lease ran out and another worker took these over: theirs to send now.
            log.warning(
                "%d deliveries were taken over by another worker", len(allowed) - len(handed)
            )
        rows = {str(item.row.id): item.row for item in allowed if item.row.id in handed}
        if not rows:
            return
        try:
            results = sender.send([messages[row.id] for row in rows.values()])
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
                    [{"b_id": row.id} for row in sorted(rows.values(), key=lambda r: r.id)],
                )
            raise
        self._record(results, rows, campaign, now=now, report=report)

    def _check_openings(
        self,
        conn: Connection,
        chunk: list[_Going],
        campaign: Campaign,
        *,
        now: datetime,
        report: RunReport,
    ) -> list[_Going]:
        """The rows that may still go: no other email of the contact went in this opening,
        no earlier step of theirs is due or in another worker's hands, and (with
        `min_gap`) no email from any campaign went to them within the gap.

        The enrollments are locked first, so two workers handing off steps of one contact
        take turns, and the second sees what the first committed. With a gap the contacts
        are locked too (after the enrollments, both in id order: no deadlock), as the
        gap spans campaigns handed off by other workers. (SQLite: BEGIN IMMEDIATE.)
        """
        enrollment_ids = sorted({item.row.enrollment_id for item in chunk})
        gap = campaign.min_gap
        contact_ids = sorted({item.row.contact_id for item in chunk})
        if not self.store.is_sqlite:
            conn.execute(
                select(enrollments.c.id)
                .where(enrollments.c.id.in_(enrollment_ids))
                .order_by(enrollments.c.id)
                .with_for_update(key_share=True)
            )
            if gap:
                conn.execute(
                    select(contacts.c.id)
                    .where(contacts.c.id.in_(contact_ids))
                    .order_by(contacts.c.id)
                    .with_for_update(key_share=True)
                )
        last = last_sent(conn, contact_ids) if gap else {}
        # Only the contacts' rows that could block one: gone since the earliest opening,
        # in another worker's hands, or due. Usually none; the loop below decides exactly.
        siblings = self._rows_of(
            conn,
            enrollment_ids,
            _by_status(
                gone=deliveries.c.sent_at >= min(item.opening for item in chunk),
                claimed=deliveries.c.lease_owner != self.owner,
                scheduled=deliveries.c.due_at <= now,
            ),
        )
        allowed: list[_Going] = []
        waiting: list[tuple[_Going, datetime | None]] = []  # and not before when
        for item in chunk:
            row = item.row
            blocked = any(
                (other.status in IN_FLIGHT and other.sent_at and other.sent_at >= item.opening)
                or (
                    other.position < row.position
                    and (
                        (other.status == S.CLAIMED and other.lease_owner != self.owner)
                        or (other.status == S.SCHEDULED and other.due_at <= now)
                    )
                )
                for other in siblings[row.enrollment_id]
                if other.id != row.id
            )
            previous = last.get(row.contact_id)
            if blocked:
                waiting.append((item, None))
            elif previous is not None and now < previous + gap:
                # Too soon after another email to this contact (any campaign).
                waiting.append((item, previous + gap))
            else:
                allowed.append(item)
                last[row.contact_id] = now
        if waiting:
            log.info(
                "%d deliveries wait for the next opening: an earlier step is due or under way",
                len(waiting),
            )
            moves = self._moved_on_by_one(conn, waiting, campaign)
            self._move_in(conn, moves, {item.row.id for item in chunk}, now=now)
            report.deferred += len(waiting)
        return allowed

    def _moved_on_by_one(
        self,
        conn: Connection,
        waiting: list[tuple[_Going, datetime | None]],
        campaign: Campaign,
    ) -> dict[int, datetime]:
        """These rows and their contacts' later scheduled steps, moved on in order: to the
        next opening, and (too soon after another email) to the first after the gap."""
        later = self._rows_of(
            conn, {item.row.enrollment_id for item, _ in waiting}, _by_status(scheduled=true())
        )
        moves: dict[int, datetime] = {}
        for item, not_before in waiting:
            row = item.row
            steps = sorted(
                [(row.position, row.id, row.due_at)]
                + [
                    (r.position, r.id, r.due_at)
                    for r in later[row.enrollment_id]
                    if r.position > row.position
                ]
            )
            tz = schedule.zone(row.timezone)
            due = schedule.replan_in_order(
                item.start, [d for _, _, d in steps], campaign.window, tz, min_gap=campaign.min_gap
            )
            if not_before is not None:
                due = schedule.replan_in_order(
                    not_before, due, campaign.window, tz, min_gap=campaign.min_gap
                )
            moves.update(zip([i for _, i, _ in steps], due, strict=True))
        return moves

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
        # Emails that ended alike (a SendGrid request's shared X-Message-Id, a sender
        # with no id) are finished by one statement; the rest one parameter set each.
        alike: dict[tuple[str | None, int], list[int]] = defaultdict(list)
        for params in sent:
            alike[params["b_pid"], params["b_more"]].append(params["b_id"])
        one_by_one = [p for p in sent if len(alike[p["b_pid"], p["b_more"]]) == 1]
        with self.store.begin() as conn:
            for (provider_id, more), ids in alike.items():
                if len(ids) > 1:
                    conn.execute(
                        update(deliveries)
                        .where(deliveries.c.id.in_(ids), deliveries.c.lease_owner == self.owner)
                        .values(
                            status=S.SENT,
                            provider_message_id=provider_id,
                            error=None,
                            **{**done, "attempts": deliveries.c.attempts + more},
                        )
                    )
            if one_by_one:
                conn.execute(
                    self._fenced().values(
                        status=S.SENT, provider_message_id=bindparam("b_pid"), error=None, **done
                    ),
                    one_by_one,
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
            wait = max(wait, result.retry_at - (self.clock or utcnow)())
        return schedule.into_window(now + wait, campaign.window, schedule.zone(timezone))


def _by_id(pair: tuple[_Row, str]) -> int:
    return pair[0].id


class SenderPool:
    """Senders by campaign: the campaign file's choice unless `--sender` overrides it."""

    def __init__(self, override: str | None = None, settings: Settings | None = None) -> None:
        self.override = override
        self.settings = Settings.from_env() if settings is None else settings
        self._made: dict[tuple, Sender] = {}

    def __call__(self, campaign: Campaign) -> Sender:
        from senders.registry import NEEDS_PUBLIC_URL, make_sender

        config = campaign.spec.sender
        name = self.override or config.type
        if name in NEEDS_PUBLIC_URL and not public_url(
            self.settings.public_url, campaign.spec.links.public_url
        ):
            # An unsubscribe link that leads nowhere breaks the law: refuse to start.
            raise SenderConfigurationError(
                f"campaign {campaign.name}: the {name} sender needs a public URL for unsubscribe "
                "links: set DRIPMAIL_PUBLIC_URL or links.public_url in campaign.yaml"
            )
        key = (name, config)
        if key not in self._made:
            self._made[key] = make_sender(name, config, self.settings)
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


def refuse_placeholders(store: Store) -> None:
    """Stop before any claim while a published campaign still holds split's placeholders."""
    problems = []
    with store.connect() as conn:
        for name, version in conn.execute(
            select(campaigns.c.name, campaigns.c.version).where(
                campaigns.c.status == CampaignStatus.ACTIVE
            )
        ):
            problems += [
                f"campaign {name}: {field_name} is still a placeholder; set it in campaign.yaml"
                for field_name in load_version(conn, name, version).placeholders()
            ]
    if problems:
        raise ConfigurationError("\n".join(problems))


def retry_unknown(store: Store, *, older_than: timedelta, now: datetime) -> int:
    """Re-queue `unknown` deliveries last touched before `now - older_than` (a staff decision).

    An unknown delivery may have reached the contact: SendGrid has no idempotency key,
    so this is never automatic.
    """
    with store.begin() as conn:
        return conn.execute(
            update(deliveries)
            .where(
                UNKNOWN_ONLY,  # as written, so SQLite uses the partial index ix_deliveries_unknown
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
        public_url(store.settings.public_url, spec.links.public_url) or PLACEHOLDER_PUBLIC_URL,
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
    pool = SenderPool(sender, store.settings)
    try:
        (result,) = pool(campaign).send([message])
    finally:
        pool.close()
    return result
