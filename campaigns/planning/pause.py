"""Pause and resume a campaign or one contact's enrollment.

Pausing holds pending deliveries: the claim query takes only rows whose campaign and
enrollment are both active. Resuming moves every held delivery later by the length of
the pause (keeping every gap between a contact's emails), then into the window, one
per opening and `min_gap` apart, so nobody gets the backlog at once. The engine also
pauses a campaign by itself (its reason in `campaigns.pause_reason`,
delivery/autopause.py); only a person resumes one, and resuming clears the reason.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, bindparam, select, update

from campaigns.authoring.spec import Campaign
from campaigns.errors import InputError, NotFoundError
from campaigns.planning import schedule
from campaigns.planning.contacts import normalise_email
from campaigns.planning.facts import last_sent
from campaigns.planning.pace import Pace
from campaigns.storage.publish import campaign_name, load_version
from campaigns.storage.statuses import PENDING, CampaignStatus, DeliveryStatus, EnrollmentStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import campaigns, contacts, deliveries, enrollments


@dataclass
class PauseReport:
    """What a pause or resume did."""

    campaign: str
    email: str | None
    changed: bool  # False: it was already paused (pause) or not paused (resume)
    held: int = 0  # pending deliveries held (pause) or moved (resume)
    paused_for: timedelta | None = None


def pause(store: Store, ref: str | Path, *, email: str | None = None, now: datetime) -> PauseReport:
    """Hold a campaign's (or one contact's) pending emails from `now`.

    `ref` is the campaign's folder or its published name.
    """
    name = campaign_name(ref)
    with store.begin() as conn:
        load_version(conn, name)  # NotFoundError for an unknown campaign
        if email is None:
            changed = bool(
                conn.execute(
                    update(campaigns)
                    .where(campaigns.c.name == name, campaigns.c.status == CampaignStatus.ACTIVE)
                    .values(status=CampaignStatus.PAUSED, paused_at=now, updated_at=now)
                ).rowcount
            )
            ids = _enrollment_ids(conn, name)
        else:
            enrollment_id = _enrollment_of(conn, name, email)
            changed = bool(
                conn.execute(
                    update(enrollments)
                    .where(
                        enrollments.c.id == enrollment_id,
                        enrollments.c.status == EnrollmentStatus.ACTIVE,
                    )
                    .values(status=EnrollmentStatus.PAUSED, paused_at=now)
                ).rowcount
            )
            ids = [enrollment_id]
        held = _pending_count(conn, ids)
    return PauseReport(name, email, changed, held)


def resume(
    store: Store, ref: str | Path, *, email: str | None = None, now: datetime
) -> PauseReport:
    """Let held emails go again, each moved later by the length of the pause.

    `ref` is the campaign's folder or its published name.
    """
    name = campaign_name(ref)
    with store.begin() as conn:
        campaign = load_version(conn, name)
        if email is None:
            paused_at = conn.scalar(
                select(campaigns.c.paused_at).where(
                    campaigns.c.name == name, campaigns.c.status == CampaignStatus.PAUSED
                )
            )
            if paused_at is None:
                return PauseReport(name, None, False)
            conn.execute(
                update(campaigns)
                .where(campaigns.c.name == name)
                # A person resuming also clears why the engine paused it (delivery/autopause.py).
                .values(
                    status=CampaignStatus.ACTIVE,
                    paused_at=None,
                    updated_at=now,
                    pause_kind=None,
                    pause_reason=None,
                )
            )
            # Contacts paused one by one stay paused: their own resume shifts them.
            ids = list(
                conn.scalars(
                    select(enrollments.c.id).where(
                        enrollments.c.campaign == name,
                        enrollments.c.status == EnrollmentStatus.ACTIVE,
                    )
                )
            )
        else:
            enrollment_id = _enrollment_of(conn, name, email)
            paused_at = conn.scalar(
                select(enrollments.c.paused_at).where(
                    enrollments.c.id == enrollment_id,
                    enrollments.c.status == EnrollmentStatus.PAUSED,
                )
            )
            if paused_at is None:
                return PauseReport(name, email, False)
            conn.execute(
                update(enrollments)
                .where(enrollments.c.id == enrollment_id)
                .values(status=EnrollmentStatus.ACTIVE, paused_at=None)
            )
            ids = [enrollment_id]
        length = max(now - paused_at, timedelta(0))
        moved = shift_pending(conn, campaign, ids, length, now=now)
    return PauseReport(name, email, True, moved, length)


def shift_pending(
    conn: Connection,
    campaign: Campaign,
    enrollment_ids: list[int],
    by: timedelta,
    *,
    now: datetime,
    not_before: datetime | None = None,
) -> int:
    """Move these enrollments' scheduled deliveries later by `by`, then into the window.

    Per contact, in step order: never before `not_before` (default `now`) nor before
    the patient's own pause ends, one per opening, `min_gap` (or the patient's own gap,
    if larger) apart and after their last email. Bulk: one read, one batched update.
    `by` may be negative (a patient's pause ended early).
    """
    if not enrollment_ids:
        return 0
    rows: dict[int, list] = defaultdict(list)
    for chunk in _chunks(enrollment_ids):
        for row in conn.execute(
            select(
                deliveries.c.enrollment_id,
                deliveries.c.id,
                deliveries.c.position,
                deliveries.c.due_at,
                contacts.c.timezone,
                contacts.c.id.label("contact_id"),
                contacts.c.paused_until,
                contacts.c.min_gap_days,
            )
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .join(contacts, contacts.c.id == enrollments.c.contact_id)
            .where(
                deliveries.c.enrollment_id.in_(chunk),
                deliveries.c.status == DeliveryStatus.SCHEDULED,
            )
        ):
            rows[row.enrollment_id].append(row)
    contact_ids = sorted({r[0].contact_id for r in rows.values()})
    last: dict[int, datetime] = {}
    for chunk in _chunks(contact_ids):
        last.update(last_sent(conn, chunk))
    params = []
    for pending in rows.values():
        pending.sort(key=lambda r: r.position)
        tz = schedule.zone(pending[0].timezone)
        # The patient's own pace (planning/pace.py): not before their pause ends, their gap.
        pace = Pace(pending[0].paused_until, pending[0].min_gap_days)
        start = pace.not_before(now if not_before is None else max(now, not_before))
        assert start is not None
        new_due = schedule.replan_in_order(
            start,
            [r.due_at + by for r in pending],
            campaign.window,
            tz,
            min_gap=pace.gap(campaign.min_gap),
            previous=last.get(pending[0].contact_id),
        )
        params += [{"b_id": r.id, "b_due": due} for r, due in zip(pending, new_due, strict=True)]
    if params:
        params.sort(key=lambda p: p["b_id"])
        conn.execute(
            update(deliveries)
            .where(
                deliveries.c.id == bindparam("b_id"),
                deliveries.c.status == DeliveryStatus.SCHEDULED,
            )
            .values(due_at=bindparam("b_due"), updated_at=now),
            params,
        )
    return len(params)


def _chunks(ids: list[int], size: int = 1000):
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _enrollment_ids(conn: Connection, name: str) -> list[int]:
    return list(conn.scalars(select(enrollments.c.id).where(enrollments.c.campaign == name)))


def _enrollment_of(conn: Connection, name: str, email: str) -> int:
    try:
        address = normalise_email(email)
    except ValueError as exc:
        raise InputError(str(exc), field="--email") from None
    found = conn.scalar(
        select(enrollments.c.id)
        .join(contacts, contacts.c.id == enrollments.c.contact_id)
        .where(enrollments.c.campaign == name, contacts.c.email == address)
    )
    if found is None:
        raise NotFoundError(f"that address is not enrolled in {name}")
    return found


def _pending_count(conn: Connection, ids: list[int]) -> int:
    total = 0
    for chunk in _chunks(ids):
        total += len(
            conn.execute(
                select(deliveries.c.id).where(
                    deliveries.c.enrollment_id.in_(chunk),
                    deliveries.c.status.in_(PENDING),
                )
            ).all()
        )
    return total
