"""A worker's leases on delivery rows: claiming, renewing, fencing, releasing, recovering.

Many workers may share one PostgreSQL database:

- claiming takes a batch with FOR UPDATE SKIP LOCKED, walking (due_at, id) forward
  from the last batch (a keyset, never OFFSET), and leases it: owner id + expiry on
  the database's clock (due times follow the engine's `now`, leases the real clock);
- fencing: every update that moves a claimed row on names the owner, so a worker
  whose lease was taken over finishes nothing and sends nothing it no longer holds;
- recovery: an expired `claimed` row goes back to the queue, an expired `sending`
  row (its worker died after hand-off) becomes `unknown`, never sent again.

SQLite keeps a single writer: BEGIN IMMEDIATE serialises the same transactions.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import (
    Connection,
    Integer,
    Select,
    Update,
    bindparam,
    literal,
    select,
    tuple_,
    update,
)

from campaigns.delivery.decide import DueRow
from campaigns.delivery.held import Holds
from campaigns.storage.statuses import CampaignStatus, DeliveryStatus, EnrollmentStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import campaigns, contacts, deliveries, enrollments

log = logging.getLogger("dripmail.dispatch")

S = DeliveryStatus
Cursor = tuple[datetime, int]  # (due_at, id) of the last row a claim read


def worker_owner(index: int | None = None) -> str:
    """A lease owner id unique to this process: host, pid, a random part (pids get reused)."""
    suffix = f":w{index}" if index is not None else ""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}{suffix}"


def fenced(owner: str) -> Update:
    """An update of the row `b_id`, done only while `owner` still holds its lease."""
    return update(deliveries).where(
        deliveries.c.id == bindparam("b_id"), deliveries.c.lease_owner == owner
    )


class Leases:
    """One worker's hold on the rows it claims. `clock`, when given, replaces the
    database's clock (tests)."""

    def __init__(
        self,
        store: Store,
        owner: str,
        *,
        length: timedelta,
        batch_size: int,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.owner = owner
        self.length = length
        self.batch_size = batch_size
        self.clock = clock
        # Campaigns this run keeps back (held.py): their due rows are passed over, counted.
        self.holds = Holds()

    def now(self, conn: Connection) -> datetime:
        """The time leases are measured in: the database's clock."""
        return self.clock() if self.clock is not None else self.store.clock(conn)

    def recover(self, now: datetime) -> int:
        """Expired leases: claimed rows go back to the queue; rows lost mid-hand-off are unknown."""
        with self.store.begin() as conn:
            expired = deliveries.c.lease_expires_at < self.now(conn)
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

    def claim_query(self, now: datetime, *, after: Cursor | None = None) -> Select:
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

    def claim(
        self, now: datetime, *, after: Cursor | None = None
    ) -> tuple[list[DueRow], Cursor | None]:
        """Lease the next batch of due rows: owner id and expiry on the database's clock.

        Returns the rows and the cursor to continue from (None: nothing left this pass).
        Rows of paused enrollments or campaigns are passed over, not claimed; so are
        the rows of campaigns kept back, which `holds` counts.
        """
        with self.store.begin() as conn:
            candidates = conn.execute(self.claim_query(now, after=after)).all()
            if not candidates:
                return [], None
            cursor = (candidates[-1].due_at, candidates[-1].id)
            rows = [
                DueRow(*row)
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
                        contacts.c.tags,
                        contacts.c.attributes,
                        contacts.c.language,
                        contacts.c.discreet,  # their own choice, read with the row
                        contacts.c.paused_until,
                        contacts.c.min_gap_days,
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
            if self.holds.held:
                for row in rows:
                    if row.campaign in self.holds:
                        self.holds.keep(row.campaign, (row.id,))
                rows = [row for row in rows if row.campaign not in self.holds]
            if rows:
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id.in_([r.id for r in rows]))
                    .values(
                        status=S.CLAIMED,
                        lease_owner=self.owner,
                        lease_expires_at=self.now(conn) + self.length,
                    )
                )
        return rows, cursor

    def renew(self, conn: Connection, lease_now: datetime) -> None:
        """A heartbeat for the rows still claimed, waiting their turn."""
        conn.execute(
            update(deliveries)
            .where(deliveries.c.status == S.CLAIMED, deliveries.c.lease_owner == self.owner)
            .values(lease_expires_at=lease_now + self.length)
        )

    def release(self) -> int:
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
