"""Waking a worker between ticks, so that an email due now goes within seconds.

A sign-up's first email (a `0d` welcome, a confirmation) is due at once; waiting for
the worker's next tick (30 s by default) would make the patient wait for it. Between
ticks, the worker's loop (workers.py) asks its `Wakeup` every nap whether to tick now:

- PostgreSQL: a `Listener` holds a dedicated connection that LISTENs on the channel
  that storage/wakeup.py `announce_due` NOTIFYs in the sign-up's transaction. A thread
  waits on it and raises a flag; the loop clears the flag when a tick starts, so any
  number of notifications during a tick (a burst of sign-ups) make one more tick, not
  one each. A rolled back transaction notifies nobody (PostgreSQL sends on COMMIT).
- SQLite has no notifications: a `Probe` asks `anything_due` once a second, a single
  indexed query (measured by `benchmarks/run.py latency`).

With `run --workers N` every worker listens (or probes) for itself: claims are leased,
so the workers a wake-up finds with nothing to claim lose one cheap tick each, and no
worker depends on the parent process to be woken.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Connection, bindparam, literal, select

from campaigns.delivery.report import RunReport
from campaigns.planning.confirmations import confirmations_due
from campaigns.storage.statuses import CampaignStatus, DeliveryStatus, EnrollmentStatus
from campaigns.storage.store import Store, utcnow
from campaigns.storage.tables import campaigns, deliveries, enrollments
from campaigns.storage.wakeup import DUE_CHANNEL

if TYPE_CHECKING:  # the driver is the engine's to import: SQLite installs need none
    import psycopg

log = logging.getLogger("dripmail.wakeups")

PROBE_EVERY = 1.0  # seconds between two SQLite probes
RECONNECT_AFTER = 5.0  # seconds before a lost LISTEN connection is opened again
# With campaigns held, the probe looks at rows due since this long before the last
# tick: a sign-up committed during a tick, its transaction begun before the tick.
IN_FLIGHT = timedelta(minutes=1)


def anything_due(
    conn: Connection,
    now: datetime,
    *,
    held: Collection[str] = (),
    after: datetime | None = None,
) -> bool:
    """Whether a tick at `now` has work: a scheduled email due, of an active enrollment
    in an active campaign that is not among `held` (the campaigns the last tick kept
    back, which a tick would pass over again).

    With `held`, only rows due after `after` count: the rows of a held campaign are
    all due, and walking past them every second costs (measured: 25 ms per 12,000);
    rows of the others due before `after` the last tick took already.

    Every kind of due work that should wake a worker goes in here, each its own
    indexed probe (`or` the next one). The first reads ix_deliveries_claim
    (status, due_at) and stops at the first row that counts; the second, a double
    opt-in confirmation owed (ix_confirmations_send_due, planning/confirmations.py).
    """
    return _deliveries_due(conn, now, held, after) or confirmations_due(conn, now)


# Built once: building the statement costs several times what SQLite takes to answer it.
_DUE = (
    select(literal(1))
    .select_from(deliveries)
    .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
    .join(campaigns, campaigns.c.name == enrollments.c.campaign)
    .where(
        deliveries.c.status == DeliveryStatus.SCHEDULED,
        deliveries.c.due_at <= bindparam("now", type_=deliveries.c.due_at.type),
        enrollments.c.status == EnrollmentStatus.ACTIVE,
        campaigns.c.status == CampaignStatus.ACTIVE,
    )
    .limit(1)
)
_DUE_NOT_HELD = _DUE.where(
    enrollments.c.campaign.not_in(bindparam("held", expanding=True)),
    deliveries.c.due_at > bindparam("after", type_=deliveries.c.due_at.type),
)
_LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)


def _deliveries_due(
    conn: Connection, now: datetime, held: Collection[str], after: datetime | None
) -> bool:
    if held:
        values = {"now": now, "held": list(held), "after": after or _LONG_AGO}
        return conn.execute(_DUE_NOT_HELD, values).first() is not None
    return conn.execute(_DUE, {"now": now}).first() is not None


class Wakeup(Protocol):
    """What the worker's loop asks between ticks."""

    def due(self, now: datetime) -> bool:
        """Whether to run a tick now rather than at the end of the interval."""
        ...

    def ticking(self) -> None:
        """A tick starts: whatever woke the worker until now, it will see."""
        ...

    def ticked(self, report: RunReport) -> None:
        """A tick ended with `report`."""
        ...

    def close(self) -> None: ...


class NoWakeup:
    """Ticks at the interval only (`run --once`)."""

    def due(self, now: datetime) -> bool:
        return False

    def ticking(self) -> None:
        pass

    def ticked(self, report: RunReport) -> None:
        pass

    def close(self) -> None:
        pass


class Probe:
    """SQLite: `anything_due` at most once every `every` seconds of `clock`."""

    def __init__(
        self,
        store: Store,
        *,
        every: float = PROBE_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.every = every
        self.clock = clock
        self.last = clock()
        self.held: frozenset[str] = frozenset()
        self.after: datetime | None = None  # with `held`: rows due since then count
        self.started: datetime | None = None
        self.probes = 0

    def due(self, now: datetime) -> bool:
        if self.clock() - self.last < self.every:
            return False
        self.last = self.clock()
        self.probes += 1
        with self.store.connect() as conn:
            return anything_due(conn, now, held=self.held, after=self.after)

    def ticking(self) -> None:
        self.started = utcnow()

    def ticked(self, report: RunReport) -> None:
        # Campaigns kept back stay due; probing for them would tick every second.
        self.held = frozenset(report.held)
        self.after = self.started - IN_FLIGHT if self.started is not None else None
        self.last = self.clock()

    def close(self) -> None:
        pass


class Listener:
    """PostgreSQL: LISTEN on a dedicated connection; a thread raises `woken` on NOTIFY.

    The first LISTEN happens here, before the worker's first tick claims anything, so
    no sign-up committed after that claim goes unheard.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.woken = threading.Event()
        self.notifications = 0  # received since the start (tests, the benchmark)
        self._closed = threading.Event()
        self._pg: psycopg.Connection | None = None
        try:
            self._pg = self._connect()
        except Exception as exc:  # the thread tries again; the ticks go on meanwhile
            log.warning("not listening for due emails yet (%s)", type(exc).__name__)
        self._thread = threading.Thread(target=self._run, name="dripmail-listen", daemon=True)
        self._thread.start()

    def due(self, now: datetime) -> bool:
        return self.woken.is_set()

    def ticking(self) -> None:
        self.woken.clear()

    def ticked(self, report: RunReport) -> None:
        pass

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)

    def _connect(self) -> psycopg.Connection:
        # Out of the pool for good: a LISTENing session must serve no other query.
        raw = self.store.engine.raw_connection()
        pg = raw.driver_connection
        raw.detach()
        pg.autocommit = True
        pg.execute(f"LISTEN {DUE_CHANNEL}")
        return pg

    def _run(self) -> None:
        pg = self._pg
        while not self._closed.is_set():
            try:
                if pg is None:
                    pg = self._connect()
                    # Whatever was announced while nobody listened: one tick finds it.
                    self.woken.set()
                # A short timeout, so that close() is seen within a second.
                for _ in pg.notifies(timeout=1.0):
                    self.notifications += 1
                    self.woken.set()
            except Exception as exc:  # the database went away: the interval's ticks go on
                log.warning(
                    "not listening for due emails (%s); trying again in %.0f s",
                    type(exc).__name__,
                    RECONNECT_AFTER,
                )
                if pg is not None:
                    _close(pg)
                pg = None
                self._closed.wait(RECONNECT_AFTER)
        if pg is not None:
            _close(pg)


def _close(pg: psycopg.Connection) -> None:
    with contextlib.suppress(Exception):  # already gone
        pg.close()


def open_wakeup(store: Store, *, once: bool) -> Wakeup:
    """The wake-up for a worker on `store`: none with `once`, else by database."""
    if once:
        return NoWakeup()
    return Probe(store) if store.is_sqlite else Listener(store)
