"""Worker heartbeats: one row per worker in the database, its last tick on the real clock.

A worker (its lease owner id) writes its row after its first batch or tick (a worker
refused at once by its configuration leaves the database as it was), updates it once
per tick (one UPDATE by primary key, and at most every 30 seconds between the batches
of a long tick), and marks it stopped on a clean exit. `dripmail status` shows them; at each tick
a running worker looks at the others and at `unknown` deliveries and raises alerts
(delivery/alerts.py): a worker silent for 5 minutes past its interval, unknown ones
piling up. Rows of workers stopped or silent for 7 days are deleted.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, or_, select, update

from campaigns.delivery.alerts import Alert, Alerter, AlertKind
from campaigns.delivery.autopause import prune
from campaigns.delivery.health_rules import (
    ALERT_EVERY,
    SILENT_AFTER,
    silent_for,
    unknown_piling,
)
from campaigns.delivery.report import RunReport
from campaigns.storage.statuses import DeliveryStatus
from campaigns.storage.store import Store, utcnow
from campaigns.storage.tables import deliveries, worker_heartbeats

log = logging.getLogger("dripmail.heartbeats")

FORGET_AFTER = timedelta(days=7)
BEAT_EVERY = 30.0  # seconds between heartbeats inside one long tick


@dataclass(frozen=True)
class Heartbeat:
    """One worker's row, as `dripmail status` shows it."""

    worker: str
    host: str
    pid: int
    interval: timedelta
    started_at: datetime
    last_tick_at: datetime
    ticks: int
    sent: int
    failed: int
    unknown: int
    stopped_at: datetime | None

    def line(self, now: datetime) -> str:
        """One line for `dripmail status`: the worker, its last tick, its counts, its state."""
        ago = max(now - self.last_tick_at, timedelta(0))
        return (
            f"{self.worker} (pid {self.pid}): last tick {self.last_tick_at:%Y-%m-%d %H:%M:%S} UTC"
            f" ({_ago(ago)}), {self.ticks} {'tick' if self.ticks == 1 else 'ticks'} since "
            f"{self.started_at:%Y-%m-%d %H:%M} UTC: "
            f"{self.sent} sent, {self.failed} failed, {self.unknown} unknown; {self.state(now)}"
        )

    def state(self, now: datetime) -> str:
        """`running`, `stopped`, or `silent for 7 min` (past its interval plus 5 minutes)."""
        if self.stopped_at is not None:
            return "stopped"
        quiet = silent_for(self.last_tick_at, self.interval, now)
        return "running" if quiet is None else f"silent for {_minutes(quiet)}"


def _ago(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    return f"{seconds} s ago" if seconds < 120 else f"{_minutes(span)} ago"


def _minutes(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h" if hours < 48 else f"{hours // 24} days"


class HeartbeatRecorder:
    """One worker's heartbeat. Every write is best effort: a failure is logged, never
    raised, since a heartbeat must not stop sending."""

    def __init__(
        self,
        store: Store,
        worker: str,
        *,
        interval: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.worker = worker
        self.interval = int(interval)
        self.clock = clock
        self.started = False
        self.started_at = clock()
        self._last_beat = 0.0

    def start(self) -> None:
        """Write this worker's row; forget workers long stopped or silent, old records."""
        self.started = True
        now = self.clock()
        values = {
            "host": socket.gethostname()[:255],
            "pid": os.getpid(),
            "interval_seconds": self.interval,
            "started_at": self.started_at,
            "last_tick_at": now,
            "ticks": 0,
            "sent": 0,
            "failed": 0,
            "unknown": 0,
            "stopped_at": None,
        }
        try:
            with self.store.begin() as conn:
                conn.execute(
                    delete(worker_heartbeats).where(
                        or_(
                            worker_heartbeats.c.worker == self.worker,
                            worker_heartbeats.c.last_tick_at < now - FORGET_AFTER,
                        )
                    )
                )
                conn.execute(insert(worker_heartbeats).values(worker=self.worker, **values))
                prune(conn, real_now=now)
        except Exception:
            log.exception("worker %s: its heartbeat could not be written", self.worker)

    def tick(self, report: RunReport) -> None:
        """A tick ended: its time and what it did."""
        if not self.started:
            self.start()
        self._write(
            last_tick_at=self.clock(),
            ticks=worker_heartbeats.c.ticks + 1,
            sent=worker_heartbeats.c.sent + report.sent,
            failed=worker_heartbeats.c.failed + report.failed,
            unknown=worker_heartbeats.c.unknown + report.unknown,
        )

    def beat(self) -> None:
        """Still working inside a long tick (at most every BEAT_EVERY seconds)."""
        if not self.started:
            self.start()
        elif time.monotonic() - self._last_beat >= BEAT_EVERY:
            self._write(last_tick_at=self.clock())

    def stop(self) -> None:
        """A clean exit: the row stays, marked stopped."""
        if self.started:
            self._write(stopped_at=self.clock())

    def _write(self, **values) -> None:
        self._last_beat = time.monotonic()
        try:
            with self.store.begin() as conn:
                conn.execute(
                    update(worker_heartbeats)
                    .where(worker_heartbeats.c.worker == self.worker)
                    .values(**values)
                )
        except Exception:
            log.exception("worker %s: its heartbeat could not be written", self.worker)


def heartbeats(store: Store) -> list[Heartbeat]:
    """Every worker's row, the most recent tick first."""
    with store.connect() as conn:
        rows = conn.execute(
            select(worker_heartbeats).order_by(
                worker_heartbeats.c.last_tick_at.desc(), worker_heartbeats.c.worker
            )
        ).all()
    return [
        Heartbeat(
            worker=row.worker,
            host=row.host,
            pid=row.pid,
            interval=timedelta(seconds=row.interval_seconds),
            started_at=row.started_at,
            last_tick_at=row.last_tick_at,
            ticks=row.ticks,
            sent=row.sent,
            failed=row.failed,
            unknown=row.unknown,
            stopped_at=row.stopped_at,
        )
        for row in rows
    ]


def watch(store: Store, alerter: Alerter, *, me: str, now: datetime | None = None) -> None:
    """What a running worker checks at each tick: workers gone silent, unknown deliveries.

    A silent worker is alerted on in the hour after it fell silent (one email, not one
    per hour for ever); `dripmail status` keeps showing it. Never raises.
    """
    now = now or alerter.clock()
    try:
        with store.connect() as conn:
            quiet = conn.execute(
                select(
                    worker_heartbeats.c.worker,
                    worker_heartbeats.c.host,
                    worker_heartbeats.c.last_tick_at,
                    worker_heartbeats.c.interval_seconds,
                ).where(
                    worker_heartbeats.c.stopped_at.is_(None),
                    worker_heartbeats.c.worker != me,
                    worker_heartbeats.c.last_tick_at < now - SILENT_AFTER,
                )
            ).all()
            unknown = conn.scalar(
                select(func.count())
                .select_from(deliveries)
                .where(deliveries.c.status == DeliveryStatus.UNKNOWN)
            )
    except Exception:
        log.exception("the watch over workers and unknown deliveries failed")
        return
    for row in quiet:
        span = silent_for(row.last_tick_at, timedelta(seconds=row.interval_seconds), now)
        limit = timedelta(seconds=row.interval_seconds) + SILENT_AFTER
        if span is not None and span <= limit + ALERT_EVERY:
            alerter.raise_(silent_alert(row.worker, row.host, row.last_tick_at, span), now=now)
    if unknown_piling(unknown or 0):
        alerter.raise_(unknown_alert(unknown or 0), now=now)


def silent_alert(worker: str, host: str, last_tick_at: datetime, span: timedelta) -> Alert:
    """The alert for a worker that stopped ticking without a clean exit."""
    return Alert(
        AlertKind.WORKER_SILENT,
        f"a worker on {host} has been silent for {_minutes(span)}",
        f"Worker {worker} on {host} last ticked at {last_tick_at:%Y-%m-%d %H:%M} UTC and has\n"
        f"been silent for {_minutes(span)}, without stopping cleanly.\n\n"
        "The rows it held go back to the queue when their lease runs out, and other\n"
        "workers send them; if it was the only worker, nothing is being sent.\n\n"
        "What to do: on that machine, systemctl status dripmail-worker and\n"
        "journalctl -u dripmail-worker (was it killed, out of memory, the machine down?),\n"
        "then start it again; dripmail status shows every worker's last tick.",
    )


def unknown_alert(count: int) -> Alert:
    """The alert for `unknown` deliveries piling up."""
    return Alert(
        AlertKind.UNKNOWN_PILING,
        f"{count} deliveries are unknown",
        f"{count} deliveries are unknown: they were handed to a provider and the answer\n"
        "was lost (a timeout, a dropped connection, a worker killed mid hand-off).\n"
        "They are never sent again by themselves: the patient may have received them.\n\n"
        "What to do: check the provider's activity log and connection; its events settle\n"
        "them by themselves. For those it never got, a person decides:\n"
        "dripmail retry --unknown --older-than 24h",
    )
