"""Review before publishing: a submitted version, its verdict, and the plan approved.

An editor submits the version a folder holds now (its content hash); a reviewer who is
not the submitter approves or rejects it with a comment. At approval the plan's counts
(`dripmail plan`: who gets what, what is cancelled or moved) are kept, so a publish
applies exactly what was approved, or, when enrollments changed since, shows the
recomputed plan to confirm first. A newer submission withdraws an open one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, func, insert, select, update

from campaigns.authoring.spec import Campaign
from campaigns.errors import DripmailError, InputError
from campaigns.planning.edits import plan_edit
from campaigns.storage.statuses import ReviewState
from campaigns.storage.store import Store
from campaigns.storage.tables import campaigns, console_reviews

__all__ = [
    "OwnSubmission",
    "Review",
    "decide",
    "latest",
    "latest_by_campaign",
    "mark_published",
    "plan_fingerprint",
    "plan_summary",
    "submit",
]

OPEN = (ReviewState.SUBMITTED, ReviewState.APPROVED)


class OwnSubmission(DripmailError):
    """A reviewer tried to approve or reject their own submission."""


@dataclass(frozen=True)
class Review:
    id: int
    campaign: str
    version: str
    state: str
    submitted_by: int
    submitted_at: datetime
    reviewed_by: int | None
    reviewed_at: datetime | None
    comment: str | None
    plan: dict | None  # the plan's counts at approval

    @classmethod
    def of(cls, row) -> Review:
        plan = json.loads(row.plan) if row.plan else None
        return cls(
            row.id,
            row.campaign,
            row.version,
            row.state,
            row.submitted_by,
            row.submitted_at,
            row.reviewed_by,
            row.reviewed_at,
            row.comment,
            plan,
        )


def plan_summary(store: Store, campaign: Campaign, folder: Path, *, now: datetime) -> dict:
    """The plan's counts for publishing `folder` now (a first publish plans nobody)."""
    with store.connect() as conn:
        published = conn.scalar(
            select(campaigns.c.version).where(campaigns.c.name == campaign.name)
        )
    if published is None:
        return {"first_publish": True, "new_version": campaign.version, "enrolled": 0}
    plan = plan_edit(store, str(folder), now=now)
    return {
        "first_publish": False,
        "old_version": plan.diff.old_version,
        "new_version": plan.diff.new_version,
        "enrolled": plan.enrolled,
        "copy": plan.copy,
        "added": plan.added,
        "passed": plan.passed,
        "removed": plan.removed,
        "replanned": plan.replanned,
        "moved": plan.moved,
        "refusals": plan.refusals,
    }


def plan_fingerprint(plan: dict) -> str:
    """A short hash of a plan's counts: what a reviewer approved, or a publisher confirms."""
    blob = json.dumps(plan, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def submit(conn: Connection, campaign: str, version: str, user_id: int, *, now: datetime) -> int:
    """Open a review of `version`; an open one of the same campaign is withdrawn."""
    conn.execute(
        update(console_reviews)
        .where(console_reviews.c.campaign == campaign, console_reviews.c.state.in_(OPEN))
        .values(state=ReviewState.WITHDRAWN)
    )
    return int(
        conn.execute(
            insert(console_reviews).values(
                campaign=campaign,
                version=version,
                state=ReviewState.SUBMITTED,
                submitted_by=user_id,
                submitted_at=now,
            )
        ).inserted_primary_key[0]
    )


def decide(
    conn: Connection,
    review: Review,
    reviewer_id: int,
    *,
    approve: bool,
    comment: str,
    plan: dict | None,
    now: datetime,
) -> None:
    """Approve (keeping `plan`) or reject an open submission; never the submitter's own."""
    if review.submitted_by == reviewer_id:
        raise OwnSubmission("a reviewer cannot approve or reject their own submission")
    if review.state != ReviewState.SUBMITTED:
        raise InputError(f"this submission is {review.state}, not waiting for review")
    if not approve and not comment.strip():
        raise InputError("say why it is rejected", field="comment")
    conn.execute(
        update(console_reviews)
        .where(console_reviews.c.id == review.id)
        .values(
            state=ReviewState.APPROVED if approve else ReviewState.REJECTED,
            reviewed_by=reviewer_id,
            reviewed_at=now,
            comment=comment.strip() or None,
            plan=json.dumps(plan, sort_keys=True) if approve and plan is not None else None,
        )
    )


def mark_published(conn: Connection, review_id: int, *, now: datetime) -> None:
    conn.execute(
        update(console_reviews)
        .where(console_reviews.c.id == review_id)
        .values(state=ReviewState.PUBLISHED, published_at=now)
    )


def latest(store: Store, campaign: str) -> Review | None:
    """The newest submission of `campaign` (None: never submitted)."""
    with store.connect() as conn:
        row = conn.execute(
            select(console_reviews)
            .where(console_reviews.c.campaign == campaign)
            .order_by(console_reviews.c.id.desc())
            .limit(1)
        ).first()
    return None if row is None else Review.of(row)


def latest_by_campaign(store: Store) -> dict[str, Review]:
    """The newest submission of every campaign that has one, in one query."""
    newest = select(func.max(console_reviews.c.id)).group_by(console_reviews.c.campaign)
    with store.connect() as conn:
        rows = conn.execute(select(console_reviews).where(console_reviews.c.id.in_(newest))).all()
    return {row.campaign: Review.of(row) for row in rows}
