"""Claim due deliveries, decide what goes, hand it to a sender, record what happened.

Delivery states (docs/architecture.md, "Delivery states"): scheduled -> claimed (lease)
-> sending (committed just before hand-off) -> sent | failed | unknown; also skipped
and cancelled. Due times follow the engine's `now`; leases follow the database's clock.

The Dispatcher runs the loop; each concern has its module: leases.py (claiming,
fencing, recovery), settle.py (rows a stopped run left open, settled by senders that
can tell), decide.py (the rules, pure), handoff.py (building, the `sending` transition
and the senders), outcomes.py (what results mean, pure), recording.py (writing it down).
A stop request (SIGTERM) lets the hand-off in progress finish, releases the rows
claimed but not handed off, and ends the run. A campaign whose own problem stops it
(held.py) is kept back, its rows left `scheduled`, and every other campaign sends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Connection, select

from campaigns.authoring.spec import Campaign
from campaigns.delivery.alerts import Alerter, refused_alert
from campaigns.delivery.confirm_sending import ConfirmationSender
from campaigns.delivery.decide import DueRow, Openings, Rules, decide
from campaigns.delivery.handoff import HandOff, SenderFor
from campaigns.delivery.held import survey
from campaigns.delivery.history import SuppressedAddresses, by_status, rows_of
from campaigns.delivery.leases import Cursor, Leases, worker_owner
from campaigns.delivery.observer import Observer
from campaigns.delivery.recording import Recorder
from campaigns.delivery.report import RunReport
from campaigns.delivery.settle import settle
from campaigns.errors import ConfigurationError, InputError
from campaigns.planning.conditions import ContactFacts, evaluate, skip_note
from campaigns.planning.facts import clicked_steps
from campaigns.rendering.compile import compile_campaign
from campaigns.rendering.personalise import CompiledCampaign
from campaigns.storage.publish import load_version
from campaigns.storage.statuses import CampaignStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import campaigns, deliveries

DEFAULT_BATCH = 500
# Emails handed to the sender per transaction: a whole batch, so a batch costs three
# commits (claim, hand-off, record) and SendGrid can carry it in one or two requests.
# The README's figures are measured so (hand-offs of 100 measured slower, 1,205 against
# 1,402 deliveries/s); what it costs is that a worker killed mid hand-off over SMTP or
# SendGrid leaves up to this many rows `unknown` (the file sender settles its own), and
# `--batch-size` lowers both. README ("How workers share the work") says the same.
DEFAULT_HANDOFF = DEFAULT_BATCH
DEFAULT_LEASE = timedelta(minutes=5)
DEFAULT_MAX_ATTEMPTS = 5


class Dispatcher:
    """One worker: claims batches of due deliveries until none is left at `now`.

    `clock`, when given, replaces the database's clock for leases (tests); `stop`,
    when set, ends the run after the hand-off in progress; `observer` hears of every
    hand-off (observer.py). `alerter` raises the alerts
    (a paused campaign, a refused sender); `heartbeat`, when given, is called after
    each batch (heartbeats.py throttles it).
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
        observer: Observer | None = None,
        alerter: Alerter | None = None,
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        if lease <= timedelta(0):
            raise ConfigurationError("the lease must be longer than zero")
        self.store = store
        self.owner = owner or worker_owner()
        self.stop = stop or threading.Event()
        self.alerter = alerter or Alerter(store)
        self.heartbeat = heartbeat
        self.leases = Leases(store, self.owner, length=lease, batch_size=batch_size, clock=clock)
        self.recorder = Recorder(store, self.owner)
        self.suppressed = SuppressedAddresses(store, batch_size)
        self.hand_off = HandOff(
            store,
            sender_for,
            self.leases,
            self.recorder,
            self.suppressed,
            size=max(1, handoff_size),
            max_attempts=max_attempts,
            stop=self.stop,
            observer=observer,
            alerter=self.alerter,
        )
        self.sender_for = sender_for
        self.confirmations = ConfirmationSender(store, sender_for)
        self._versions: dict[tuple[str, str], Campaign] = {}
        self._compiled: dict[tuple[str, str], CompiledCampaign] = {}

    # -- the loop ---------------------------------------------------------------

    def run(self, *, now: datetime) -> RunReport:
        """Send everything due at `now`, batch by batch; safe to run again at the same `now`."""
        report = RunReport()
        # A campaign whose own problem stops it is kept back; the others send (held.py).
        with self.store.connect() as conn:
            self.leases.holds = survey(
                conn, lambda name, version: self._version(conn, name, version), self.sender_for
            )
        try:
            # Double opt-in first: a confirmation is the first email a sign-up is waiting for.
            asked = self.confirmations.run(now=now)
            report.confirmations, report.expired_signups = asked.sent, asked.expired
            report.recovered += self._recover(now)
            after: Cursor | None = None
            fresh_pass = True
            while not self.stop.is_set():
                batch, cursor = self.leases.claim(now, after=after)
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
                    if self.heartbeat is not None:
                        self.heartbeat()
        finally:
            # Claimed but not handed off (a stop, an error): back to the queue at once
            # rather than when the lease runs out.
            report.released += self.leases.release()
        report.held = self.leases.holds.reported()
        for held in self.leases.holds.held.values():
            if held.from_sender:  # a provider refusing its key (or unusable settings)
                self.alerter.raise_(refused_alert(held.campaign, held.problem))
        return report

    def _recover(self, now: datetime) -> int:
        """Rows a stopped run left open: settled by their senders where they can tell
        (settle.py), then expired leases taken back (leases.py)."""
        return settle(self.store, self.leases, self.leases.holds.senders, now=now) + (
            self.leases.recover(now)
        )

    def warm_up(self) -> int:
        """Compile every active campaign's current version now; returns how many loaded.

        A worker compiles a version once, on its first batch of it (about half a second
        for a long article); a long-running worker may do it before its first claim.
        """
        with self.store.connect() as conn:
            active = conn.execute(
                select(campaigns.c.name, campaigns.c.version).where(
                    campaigns.c.status == CampaignStatus.ACTIVE
                )
            ).all()
            compiled = 0
            for name, version in active:
                try:
                    self._campaign(conn, name, version)
                except InputError:
                    continue  # a version that no longer loads is kept back by run (held.py)
                compiled += 1
        return compiled

    def _version(self, conn: Connection, name: str, version: str) -> Campaign:
        """A published version, read once per worker (versions never change)."""
        key = (name, version)
        if key not in self._versions:
            self._versions[key] = load_version(conn, name, version)
        return self._versions[key]

    def _campaign(self, conn: Connection, name: str, version: str) -> CompiledCampaign:
        key = (name, version)
        if key not in self._compiled:
            self._compiled[key] = compile_campaign(self._version(conn, name, version))
        return self._compiled[key]

    # -- one batch --------------------------------------------------------------

    def _process(self, batch: list[DueRow], *, now: datetime, report: RunReport) -> None:
        """Decide what becomes of a claimed batch (decide.py), write it down, hand off."""
        enrollment_ids = {row.enrollment_id for row in batch}
        with self.store.connect() as conn:
            versions = dict(conn.execute(select(campaigns.c.name, campaigns.c.version)).all())
            compiled = {
                name: self._campaign(conn, name, versions[name])
                for name in {r.campaign for r in batch}
            }
            rules = {name: Rules.of(c.campaign) for name, c in compiled.items()}
            # Step conditions, decided now that the emails are due (tags change).
            unmet = unmet_conditions(conn, batch, compiled)
            openings = {
                key: Openings.at(now, rules[key[0]].window, key[1])
                for key in {r.zone_key for r in batch}
            }
            # Only the rows that bear on the choice: gone since the earliest opening, held
            # by this worker, or due before the latest next opening. A contact with more
            # than that to re-plan gets all its rows read below.
            history = rows_of(
                conn,
                enrollment_ids,
                by_status(
                    gone=deliveries.c.sent_at >= min(o.current or now for o in openings.values()),
                    claimed=deliveries.c.lease_owner == self.owner,
                    scheduled=deliveries.c.due_at < max(o.next for o in openings.values()),
                ),
            )
        suppressed = self.suppressed(batch)
        decision = decide(
            batch,
            history,
            openings,
            rules,
            now=now,
            suppressed=suppressed,
            unmet=unmet,
            complete=False,
        )
        if decision.unsure:
            with self.store.connect() as conn:
                everything = rows_of(conn, decision.unsure)
            rest = [row for live in decision.unsure.values() for row in live]
            again = decide(rest, everything, openings, rules, now=now, suppressed=suppressed)
            decision.going += again.going
            decision.moves.update(again.moves)

        self.recorder.skip(decision.skips, now=now, report=report)
        self.recorder.move(decision.moves, {r.id for r in batch}, now=now, report=report)
        if decision.going:
            self.hand_off(decision.going, compiled, rules, now=now, report=report)


def unmet_conditions(
    conn: Connection, batch: list[DueRow], compiled: dict[str, CompiledCampaign]
) -> dict[int, str]:
    """The claimed rows whose step's `when:` is false now: delivery id -> the reason.

    Tags and attributes came with the claim; clicks are read in one query for the
    batch, and only when a claimed step's condition asks about them.
    """
    conditions = {
        (name, step.key): step.when
        for name, c in compiled.items()
        for step in c.campaign.steps
        if step.when is not None
    }
    guarded = [r for r in batch if (r.campaign, r.step_key) in conditions]
    if not guarded:
        return {}
    click_keys = {key for r in guarded for key in conditions[r.campaign, r.step_key].click_steps}
    clicks = (
        clicked_steps(conn, {r.enrollment_id for r in guarded}, click_keys) if click_keys else {}
    )
    unmet = {}
    for row in guarded:
        facts = ContactFacts.stored(
            row.tags, row.attributes, clicks.get(row.enrollment_id, frozenset())
        )
        verdict = evaluate(conditions[row.campaign, row.step_key], facts)
        if not verdict.go:
            unmet[row.id] = skip_note(verdict.reason)
    return unmet
