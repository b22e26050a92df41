"""Writing down what became of claimed rows: skipped, moved on, put back, or ended.

Every statement is fenced: a worker finishes only rows it still holds the lease on.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Connection, bindparam, select, update

from campaigns.delivery.autopause import record_handoff
from campaigns.delivery.decide import DueRow
from campaigns.delivery.leases import fenced
from campaigns.delivery.outcomes import Outcomes
from campaigns.delivery.report import RunReport
from campaigns.storage.outbox import emit, listening
from campaigns.storage.statuses import DeliveryStatus, WebhookEvent
from campaigns.storage.store import Store, utcnow
from campaigns.storage.tables import deliveries, enrollments

log = logging.getLogger("dripmail.dispatch")

S = DeliveryStatus


class Recorder:
    """Records for one worker (the lease owner `owner`), each write in its own transaction
    unless a connection is given."""

    def __init__(self, store: Store, owner: str) -> None:
        self.store = store
        self.owner = owner

    def skip(
        self, skips: Sequence[tuple[DueRow, str]], *, now: datetime, report: RunReport
    ) -> None:
        """Mark rows skipped, each with its reason."""
        self._end(skips, S.SKIPPED, now=now)
        report.skipped += len(skips)

    def fail(
        self, failures: Sequence[tuple[DueRow, str]], *, now: datetime, report: RunReport
    ) -> None:
        """Mark claimed rows failed before hand-off (their email could not be built)."""
        self._end(failures, S.FAILED, now=now)
        report.failed += len(failures)

    def _end(self, ended: Sequence[tuple[DueRow, str]], status: str, *, now: datetime) -> None:
        if not ended:
            return
        with self.store.begin() as conn:
            conn.execute(
                fenced(self.owner).values(
                    status=status,
                    error=bindparam("b_error"),
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                ),
                [
                    {"b_id": r.id, "b_error": reason}
                    for r, reason in sorted(ended, key=lambda pair: pair[0].id)
                ],
            )

    def move(
        self, moves: dict[int, datetime], mine: set[int], *, now: datetime, report: RunReport
    ) -> None:
        """Re-plan rows to new due times; claimed ones go back to the queue."""
        if not moves:
            return
        with self.store.begin() as conn:
            self.move_in(conn, moves, mine, now=now)
        report.deferred += len(moves)

    def move_in(
        self, conn: Connection, moves: dict[int, datetime], mine: set[int], *, now: datetime
    ) -> None:
        """Fenced too: rows this worker claimed (`mine`) move only while it still holds
        them; the contact's other rows only while nobody holds them (another worker's are
        its own to re-plan). Ids in order, so two workers re-planning one contact's rows
        lock them in the same order (no deadlock)."""
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

    def put_back(self, ids: Iterable[int]) -> None:
        """Rows marked `sending` that never went out: back as they were, neither sent nor
        failed."""
        with self.store.begin() as conn:
            conn.execute(
                fenced(self.owner).values(
                    status=S.SCHEDULED,
                    attempts=deliveries.c.attempts - 1,
                    sent_at=None,
                    lease_owner=None,
                    lease_expires_at=None,
                ),
                [{"b_id": i} for i in sorted(ids)],
            )

    def record(
        self, outcomes: Outcomes, campaign: str, *, now: datetime, report: RunReport
    ) -> None:
        """Finish the rows a sender answered for, in one transaction."""
        sent = [{"b_id": e.id, "b_more": e.more, "b_pid": e.provider_id} for e in outcomes.sent]
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
                    fenced(self.owner).values(
                        status=S.SENT, provider_message_id=bindparam("b_pid"), error=None, **done
                    ),
                    one_by_one,
                )
            for status, ended in ((S.UNKNOWN, outcomes.unknown), (S.FAILED, outcomes.failed)):
                if ended:
                    conn.execute(
                        fenced(self.owner).values(
                            status=status, error=bindparam("b_error"), **done
                        ),
                        [{"b_id": e.id, "b_more": e.more, "b_error": e.error} for e in ended],
                    )
            if outcomes.retry:
                conn.execute(
                    fenced(self.owner).values(
                        status=S.SCHEDULED,
                        error=bindparam("b_error"),
                        due_at=bindparam("b_due"),
                        sent_at=None,
                        **done,
                    ),
                    [
                        {"b_id": e.id, "b_more": e.more, "b_error": e.error, "b_due": e.due}
                        for e in outcomes.retry
                    ],
                )
            if outcomes.sent and listening(conn, WebhookEvent.SENT):
                _emit_sent(conn, [e.id for e in outcomes.sent], now=now)
            # What the automatic pause reads (autopause.py), with the outcomes it counts.
            record_handoff(
                conn,
                campaign,
                sent=len(outcomes.sent),
                failed=len(outcomes.failed),
                unknown=len(outcomes.unknown),
                real_now=utcnow(),
            )
        report.sent += len(outcomes.sent)
        report.failed += len(outcomes.failed)
        report.unknown += len(outcomes.unknown)
        report.retrying += len(outcomes.retry)
        report.by_campaign[campaign] += len(outcomes.sent)
        log.info(
            "batch: %d sent, %d failed, %d unknown, %d to retry",
            len(outcomes.sent),
            len(outcomes.failed),
            len(outcomes.unknown),
            len(outcomes.retry),
        )


def _emit_sent(conn: Connection, delivery_ids: list[int], *, now: datetime) -> None:
    """The `sent` webhook event of each delivery, in the transaction that records it."""
    rows = conn.execute(
        select(
            deliveries.c.id,
            deliveries.c.enrollment_id,
            deliveries.c.step_key,
            deliveries.c.provider_message_id,
            enrollments.c.contact_id,
            enrollments.c.campaign,
        )
        .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
        .where(deliveries.c.id.in_(delivery_ids))
        .order_by(deliveries.c.id)
    )
    emit(
        conn,
        WebhookEvent.SENT,
        [
            (
                row.contact_id,
                {
                    "contact_id": row.contact_id,
                    "enrollment_id": row.enrollment_id,
                    "campaign": row.campaign,
                    "step": row.step_key,
                    "delivery_id": row.id,
                },
            )
            for row in rows
        ],
        now=now,
    )
