"""Rows a stopped run left `sending` or `unknown`, settled by the senders that can tell.

A worker that stops after marking rows `sending` (SIGKILL, a crash, a sender that
raised) leaves their outcome open: leases.py makes them `unknown` once the lease runs
out, never sent again by itself, since a provider may have taken them. A sender that
can know its own outcome (`Sender.settle`: the file sender, whose files are written
atomically) settles them first: a row whose email went is `sent`, one whose email
never went goes back to the queue with its attempt given back. Rows a sender cannot
tell about stay as they were. Each campaign's rows are asked of its own sender.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, bindparam, or_, select, update

from campaigns.delivery.leases import Leases
from campaigns.storage.statuses import DeliveryStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import deliveries, enrollments
from senders.base import Outcome, Sender, SendResult

log = logging.getLogger("dripmail.dispatch")

S = DeliveryStatus


def open_rows(lease_now: datetime) -> ColumnElement[bool]:
    """Rows whose outcome is open: `unknown`, or `sending` with a lease run out."""
    return or_(
        deliveries.c.status == S.UNKNOWN,
        and_(deliveries.c.status == S.SENDING, deliveries.c.lease_expires_at < lease_now),
    )


def settle(store: Store, leases: Leases, senders: Mapping[str, Sender], *, now: datetime) -> int:
    """Ask each campaign's sender (`senders`, by campaign name) about its open rows;
    record what they can tell. Returns how many rows were settled."""
    # Only senders that can tell (the default `settle` tells nothing): a SendGrid or SMTP
    # installation's `unknown` rows are not read again on every tick.
    senders = {name: s for name, s in senders.items() if type(s).settle is not Sender.settle}
    if not senders:
        return 0
    with store.connect() as conn:
        found = conn.execute(
            select(deliveries.c.id, enrollments.c.campaign)
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .where(enrollments.c.campaign.in_(list(senders)), open_rows(leases.now(conn)))
            .order_by(deliveries.c.id)
        ).all()
    if not found:
        return 0
    asked: dict[int, tuple[Sender, list[str]]] = {}
    for delivery_id, campaign in found:
        sender = senders[campaign]
        asked.setdefault(id(sender), (sender, []))[1].append(str(delivery_id))
    answers: list[SendResult] = []
    for sender, ids in asked.values():
        try:
            told = sender.settle(ids)
        except Exception:  # settling is a courtesy: the rows stay as they were
            log.exception(
                "the %s sender could not settle %d open deliveries", sender.name, len(ids)
            )
            continue
        wanted = set(ids)
        answers += [answer for answer in told if answer.delivery_id in wanted]
    return record(store, leases, answers, now=now)


def record(store: Store, leases: Leases, answers: Sequence[SendResult], *, now: datetime) -> int:
    """Write down what senders settled: SENT went, TRANSIENT goes back to the queue.

    Only rows still open are changed (another worker may have settled them meanwhile).
    """
    went = [
        {"b_id": int(a.delivery_id), "b_pid": a.provider_id}
        for a in answers
        if a.outcome is Outcome.SENT
    ]
    back = [
        {"b_id": int(a.delivery_id), "b_error": a.error}
        for a in answers
        if a.outcome is Outcome.TRANSIENT
    ]
    if not went and not back:
        return 0
    released = {"lease_owner": None, "lease_expires_at": None, "updated_at": now}
    with store.begin() as conn:
        still = update(deliveries).where(
            deliveries.c.id == bindparam("b_id"), open_rows(leases.now(conn))
        )
        if went:
            conn.execute(
                still.values(
                    status=S.SENT, provider_message_id=bindparam("b_pid"), error=None, **released
                ),
                went,
            )
        if back:
            conn.execute(
                still.values(
                    status=S.SCHEDULED,
                    attempts=deliveries.c.attempts - 1,
                    sent_at=None,
                    error=bindparam("b_error"),
                    **released,
                ),
                back,
            )
    log.warning(
        "settled by their senders: %d deliveries had gone, %d go again", len(went), len(back)
    )
    return len(went) + len(back)
