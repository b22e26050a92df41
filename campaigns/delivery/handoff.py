"""Handing the rows chosen to go to their senders, and recording what they answered.

Chunk by chunk: suppressions are asked again (an unsubscribe may have landed), every
message of the chunk is built (personalised, then `Sender.build`: the file sender's
MIME), each row is checked again against the rules in the transaction that marks it
`sending`, committed just before the sender sees it, and the sender's results are
recorded. No message strands its chunk: one that cannot be built fails alone, with
the reason, before any row is `sending`; a sender that raises anyway (a bug, not a
configuration problem) has its rows settled by `Sender.settle` where it can tell, the
rest `unknown` with the reason, and the next chunk goes on. After each hand-off the
observer (observer.py: the metrics) hears its campaign, sender, time and answers.
One email per contact per window opening holds across workers: that transaction
locks the contacts' enrollments and looks at their other deliveries. A stop request
(SIGTERM) ends the hand-off between chunks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import Connection, select, true, update

from campaigns.authoring.spec import Campaign
from campaigns.delivery import autopause
from campaigns.delivery.alerts import Alerter
from campaigns.delivery.decide import DueRow, Going, Rules, admit, needs_last_sent, postpone
from campaigns.delivery.history import SuppressedAddresses, by_status, rows_of
from campaigns.delivery.leases import Leases
from campaigns.delivery.observer import HandedOff, NoObserver, Observer
from campaigns.delivery.outcomes import classify
from campaigns.delivery.recording import Recorder
from campaigns.delivery.report import RunReport
from campaigns.delivery.variants import VariantChooser, by_variant
from campaigns.planning.conditions import parse_attributes
from campaigns.planning.facts import last_sent
from campaigns.rendering.links import LinkBase, contact_message
from campaigns.rendering.personalise import CompiledCampaign, Recipient
from campaigns.rendering.tokens import Signer, UnsubscribeClaim
from campaigns.rendering.verp import ReturnPaths, configured
from campaigns.storage.statuses import DeliveryStatus
from campaigns.storage.store import Store, utcnow
from campaigns.storage.tables import contacts, deliveries, enrollments
from senders.base import Message, Outcome, Sender, SenderConfigurationError, SendResult

log = logging.getLogger("dripmail.dispatch")

S = DeliveryStatus
SenderFor = Callable[[Campaign], Sender]


class _KeptBack(Exception):
    """The campaign is kept back: its rows are not handed off."""


class HandOff:
    """Hands rows to senders in chunks of `size` (or a sender's `batch_limit`, if larger)."""

    def __init__(
        self,
        store: Store,
        sender_for: SenderFor,
        leases: Leases,
        recorder: Recorder,
        suppressed: SuppressedAddresses,
        *,
        size: int,
        max_attempts: int,
        stop: threading.Event,
        alerter: Alerter,
        observer: Observer | None = None,
    ) -> None:
        self.store = store
        self.alerter = alerter
        self.sender_for = sender_for
        self.leases = leases
        self.recorder = recorder
        self.suppressed = suppressed
        self.size = size
        self.max_attempts = max_attempts
        self.stop = stop
        self.observer = observer or NoObserver()
        self._signer = Signer(store.secret_key())
        self._return_paths = ReturnPaths(store.secret_key())
        self._variants = VariantChooser(store)

    def __call__(
        self,
        going: Sequence[Going],
        compiled: Mapping[str, CompiledCampaign],
        rules: Mapping[str, Rules],
        *,
        now: datetime,
        report: RunReport,
    ) -> None:
        """Hand the rows to the senders in chunks; a stop request ends it between chunks.

        A sender that puts many messages in one request gets chunks of up to its
        `batch_limit`, so a claimed batch of one step can go in one request.
        """
        by_campaign: dict[str, list[Going]] = defaultdict(list)
        for item in going:
            by_campaign[item.row.campaign].append(item)
        holds = self.leases.holds
        for name, items in by_campaign.items():
            sender: Sender | None = None
            start = 0
            try:
                if name in holds:  # kept back since the batch was claimed (its sender failed)
                    raise _KeptBack
                sender = self.sender_for(compiled[name].campaign)
                size = max(self.size, sender.batch_limit)
                for start in range(0, len(items), size):
                    if self.stop.is_set():
                        return  # the rest is still claimed: the dispatcher releases it
                    if name in report.paused:
                        break  # paused by itself: the rest is released at the end of the run
                    chunk = items[start : start + size]
                    # Suppressions again, right before hand-off: an unsubscribe may have landed.
                    late = self.suppressed([item.row for item in chunk])
                    skips = [
                        (i.row, "the address is suppressed") for i in chunk if i.row.email in late
                    ]
                    self.recorder.skip(skips, now=now, report=report)
                    chunk = [item for item in chunk if item.row.email not in late]
                    if chunk:
                        self._send(
                            compiled[name], rules[name], chunk, sender, now=now, report=report
                        )
            except SenderConfigurationError as exc:
                # Raises again when the sender is every sending campaign's (held.py).
                holds.sender_failed(name, sender, str(exc))
                holds.keep(name, (item.row.id for item in items[start:]))
            except _KeptBack:
                # Still claimed, not sent: the dispatcher releases them at the end of the run.
                holds.keep(name, (item.row.id for item in items))

    def _build(
        self,
        compiled: CompiledCampaign,
        chunk: list[Going],
        sender: Sender,
        variants: Mapping[int, str],
        *,
        now: datetime,
    ) -> tuple[dict[int, Message], list[tuple[DueRow, str]]]:
        """Each row's Message, personalised and built by its sender, by delivery id; and
        the rows whose message could not be built, with the reason (they fail alone)."""
        # The same for every email of the campaign: worked out once, not per contact.
        base = LinkBase.of(compiled.campaign, self.store.settings.public_url)
        batch_form = sender.batch_limit > 1
        return_path = configured(compiled.campaign)
        messages: dict[int, Message] = {}
        broken: list[tuple[DueRow, str]] = []
        for item in chunk:
            row = item.row
            token = self._signer.token(UnsubscribeClaim(row.contact_id, row.campaign, row.id))
            try:
                message = contact_message(
                    compiled,
                    row.step_key,
                    Recipient(
                        row.email or "",
                        row.first_name,
                        row.timezone,
                        attributes=parse_attributes(row.attributes),
                        language=row.language,
                        discreet=bool(row.discreet),
                    ),
                    base.signed(token),
                    delivery_id=str(row.id),
                    date=now,
                    batch_form=batch_form,
                    return_path=self._return_paths.address(return_path, row.id)
                    if return_path
                    else None,
                    variant=variants.get(row.id),
                )
                messages[row.id] = sender.build(message)
            except SenderConfigurationError:
                raise
            except Exception as exc:  # this message's own data: it fails alone
                # The type only in the log: an exception's text may quote an address.
                log.warning("delivery %d: could not be built (%s)", row.id, type(exc).__name__)
                broken.append((row, f"could not build it: {_describe(exc)}"))
        return messages, broken

    def _send(
        self,
        compiled: CompiledCampaign,
        rules: Rules,
        chunk: list[Going],
        sender: Sender,
        *,
        now: datetime,
        report: RunReport,
    ) -> None:
        # Built before anything is committed: a message that cannot be built fails alone,
        # and nothing of it is `sending`.
        # Each row's A/B variant (a winner, once chosen, for all): written with `sending`.
        variants = self._variants.choose(
            compiled.campaign,
            ((item.row.id, item.row.contact_id, item.row.step_key) for item in chunk),
            now=now,
        )
        messages, broken = self._build(compiled, chunk, sender, variants, now=now)
        self.recorder.fail(broken, now=now, report=report)
        chunk = [item for item in chunk if item.row.id in messages]
        if not chunk:
            return
        with self.store.begin() as conn:
            lease_now = self.leases.now(conn)
            allowed = self._check_openings(conn, chunk, rules, now=now, report=report)
            handed = self._start_sending(conn, allowed, now=now, lease_now=lease_now)
            for variant, ids in by_variant(variants, sorted(handed)).items():
                conn.execute(
                    update(deliveries).where(deliveries.c.id.in_(ids)).values(variant=variant)
                )
            # A heartbeat for the rest of the batch, still waiting its turn.
            self.leases.renew(conn, lease_now)
        if len(handed) < len(allowed):
            # The lease ran out and another worker took these over (theirs to send now),
            # or they were cancelled meanwhile (an unsubscribe, a goal reached): not sent.
            log.warning(
                "%d deliveries were taken over by another worker or cancelled meanwhile",
                len(allowed) - len(handed),
            )
        rows = {str(item.row.id): item.row for item in allowed if item.row.id in handed}
        if not rows:
            return
        started = time.perf_counter()
        try:
            results = sender.send([messages[row.id] for row in rows.values()])
        except SenderConfigurationError:
            # Nothing went out: put every row back as it was, marked neither sent nor failed.
            self.recorder.put_back(row.id for row in rows.values())
            raise
        except Exception as exc:  # a sender broke its contract: settle what it can tell
            log.error(
                "the %s sender raised %s while handing over %d emails",
                sender.name,
                type(exc).__name__,
                len(rows),
            )
            results = _after_raise(sender, list(rows), exc)
        seconds = time.perf_counter() - started
        outcomes = classify(
            results,
            rows,
            window=rules.window,
            max_attempts=self.max_attempts,
            now=now,
            real_now=(self.leases.clock or utcnow)(),
        )
        name = compiled.campaign.name
        self.recorder.record(outcomes, name, now=now, report=report)
        self.observer.handed_off(HandedOff(name, sender.name, seconds, outcomes.answers()))
        # The automatic pause, over the outcomes just recorded (autopause.py).
        why = autopause.check(
            self.store,
            name,
            compiled.campaign.spec.max_error_rate,
            self.alerter,
            now=now,
            real_now=(self.leases.clock or utcnow)(),
        )
        if why is not None:
            report.paused[name] = why.reason

    def _start_sending(
        self, conn: Connection, allowed: list[Going], *, now: datetime, lease_now: datetime
    ) -> set[int]:
        """Mark the rows `sending` (one attempt more); returns the ids this worker still held."""
        if not allowed:
            return set()
        return set(
            conn.scalars(
                update(deliveries)
                .where(
                    deliveries.c.id.in_([item.row.id for item in allowed]),
                    deliveries.c.status == S.CLAIMED,
                    deliveries.c.lease_owner == self.leases.owner,
                )
                .values(
                    status=S.SENDING,
                    attempts=deliveries.c.attempts + 1,
                    sent_at=now,
                    updated_at=now,
                    lease_expires_at=lease_now + self.leases.length,
                )
                .returning(deliveries.c.id)
            )
        )

    def _check_openings(
        self,
        conn: Connection,
        chunk: list[Going],
        rules: Rules,
        *,
        now: datetime,
        report: RunReport,
    ) -> list[Going]:
        """The rows that may still go (decide.admit); the others move on (decide.postpone).

        The enrollments are locked first, so two workers handing off steps of one contact
        take turns, and the second sees what the first committed. With a gap (or a
        contact's own pace) the contacts are locked too (after the enrollments, both in
        id order: no deadlock), as the gap spans campaigns handed off by other workers.
        (SQLite: BEGIN IMMEDIATE.)
        """
        owner = self.leases.owner
        enrollment_ids = sorted({item.row.enrollment_id for item in chunk})
        gap = rules.min_gap
        # A campaign's gap, or a contact's own pace (planning/pace.py), spans campaigns.
        spans = needs_last_sent(chunk, gap)
        contact_ids = sorted({item.row.contact_id for item in chunk})
        if not self.store.is_sqlite:
            conn.execute(
                select(enrollments.c.id)
                .where(enrollments.c.id.in_(enrollment_ids))
                .order_by(enrollments.c.id)
                .with_for_update(key_share=True)
            )
            if spans:
                conn.execute(
                    select(contacts.c.id)
                    .where(contacts.c.id.in_(contact_ids))
                    .order_by(contacts.c.id)
                    .with_for_update(key_share=True)
                )
        last = last_sent(conn, contact_ids) if spans else {}
        # Only the contacts' rows that could block one: gone since the earliest opening,
        # in another worker's hands, or due. Usually none; `admit` decides exactly.
        siblings = rows_of(
            conn,
            enrollment_ids,
            by_status(
                gone=deliveries.c.sent_at >= min(item.opening for item in chunk),
                claimed=deliveries.c.lease_owner != owner,
                scheduled=deliveries.c.due_at <= now,
            ),
        )
        admission = admit(chunk, siblings, last, owner=owner, min_gap=gap, now=now)
        if admission.waiting:
            log.info(
                "%d deliveries wait for the next opening: an earlier step is due or under way",
                len(admission.waiting),
            )
            later = rows_of(
                conn,
                {item.row.enrollment_id for item, _ in admission.waiting},
                by_status(scheduled=true()),
            )
            moves = postpone(admission.waiting, later, rules)
            self.recorder.move_in(conn, moves, {item.row.id for item in chunk}, now=now)
            report.deferred += len(admission.waiting)
        return admission.allowed


def _describe(exc: Exception) -> str:
    """An exception as a reason a user can read in the delivery's row."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _after_raise(sender: Sender, ids: list[str], exc: Exception) -> list[SendResult]:
    """Results for a hand-off whose sender raised: what it can settle, the rest unknown.

    Some of them may have gone before it raised, so the others are never sent again
    by themselves (`unknown`, with the reason).
    """
    try:
        settled = {r.delivery_id: r for r in sender.settle(ids) if r.delivery_id in ids}
    except Exception:  # settling is a courtesy; unknown is always safe
        log.exception("the %s sender could not settle its hand-off", sender.name)
        settled = {}
    reason = f"the {sender.name} sender stopped while handing it over: {_describe(exc)}"
    return [settled.get(i) or SendResult(i, Outcome.AMBIGUOUS, error=reason) for i in ids]
