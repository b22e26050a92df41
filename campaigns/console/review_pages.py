"""Review and publish: submit a version, the reviewer's page, approve, reject, publish.

Routes: POST /campaigns/{name}/submit (SUBMIT), GET /campaigns/{name}/review (the
rendered emails, the diff against the published version, the plan's counts),
POST /campaigns/{name}/approve and /reject (REVIEW; never one's own submission: 403),
POST /campaigns/{name}/publish (PUBLISH). With `approval: required` (the default) only
the approved version is published, and only with the plan the publisher was shown: the
form carries that plan's fingerprint, and a plan that changed since (enrollments moved
on) is shown again to confirm instead of being applied. The command line publishes as
before; this gate is the console's.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from starlette.responses import Response
from starlette.routing import Route

from campaigns.authoring.spec import Campaign
from campaigns.console.campaign_pages import load_for, not_found
from campaigns.console.console_settings import APPROVAL_NONE, approval
from campaigns.console.guard import Call, requires
from campaigns.console.permissions import Permission
from campaigns.console.reviews import (
    OwnSubmission,
    Review,
    decide,
    latest,
    mark_published,
    plan_fingerprint,
    plan_summary,
    submit,
)
from campaigns.errors import DripmailError, NotFoundError
from campaigns.planning.edits import CampaignDiff, apply_edit, diff_campaigns
from campaigns.storage import audit
from campaigns.storage.publish import load_version, publish
from campaigns.storage.statuses import ReviewState
from campaigns.studio.views import describe_delay

__all__ = ["ROUTES"]


@dataclass(frozen=True)
class FileDiff:
    path: str
    lines: tuple[tuple[str, str], ...]  # (kind: add, del, same, hunk; text)


def _file_diffs(old: Campaign | None, new: Campaign) -> list[FileDiff]:
    before = dict(old.files) if old else {}
    found = []
    for path in sorted(before.keys() | new.files.keys()):
        a, b = before.get(path, ""), new.files.get(path, "")
        if a == b:
            continue
        lines = []
        for line in list(difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm=""))[2:]:
            kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "same")
            lines.append((kind, line))
        found.append(FileDiff(path, tuple(lines)))
    return found


def _published(call: Call, name: str) -> Campaign | None:
    try:
        with call.store.connect() as conn:
            return load_version(conn, name)
    except NotFoundError:
        return None


def _review_page(
    call: Call,
    path: Path,
    campaign: Campaign,
    *,
    status: int = 200,
    problem: str | None = None,
    changed_plan: bool = False,
) -> Response:
    review = latest(call.store, campaign.name)
    old = _published(call, campaign.name)
    diff: CampaignDiff | None = diff_campaigns(old, campaign) if old else None
    plan = plan_summary(call.store, campaign, path, now=call.now)
    approved_plan = review.plan if review and review.state == ReviewState.APPROVED else None
    return call.render(
        "review.html.j2",
        status,
        active="dashboard",
        name=path.name,
        campaign=campaign,
        review=review,
        current=review is not None and review.version == campaign.version,
        diff=diff,
        files=_file_diffs(old, campaign),
        plan=plan,
        fingerprint=plan_fingerprint(plan),
        approved_plan=approved_plan,
        plan_moved=changed_plan
        or (
            approved_plan is not None and plan_fingerprint(approved_plan) != plan_fingerprint(plan)
        ),
        approval=approval(call.store),
        problem=problem,
        describe_delay=describe_delay,
        own=review is not None and review.submitted_by == call.user.id,
    )


def _load(call: Call) -> tuple[Path, Campaign] | Response:
    try:
        return load_for(call)
    except NotFoundError as exc:
        return not_found(call, str(exc))
    except DripmailError as exc:
        return call.render("problem.html.j2", 400, message=str(exc))


@requires(Permission.SUBMIT)
def submit_page(call: Call) -> Response:
    loaded = _load(call)
    if isinstance(loaded, Response):
        return loaded
    path, campaign = loaded
    with call.store.begin() as conn:
        submit(conn, campaign.name, campaign.version, call.user.id, now=call.now)
        audit.record(
            conn, call.user.id, "review.submit", "campaign", campaign.name, campaign.version,
            at=call.now,
        )  # fmt: skip
    return call.redirect(f"/campaigns/{quote(path.name)}?done=Submitted%20for%20review.")


@requires(Permission.VIEW_CAMPAIGNS)
def review_page(call: Call) -> Response:
    loaded = _load(call)
    if isinstance(loaded, Response):
        return loaded
    return _review_page(call, *loaded)


def _decide(call: Call, *, approve: bool) -> Response:
    loaded = _load(call)
    if isinstance(loaded, Response):
        return loaded
    path, campaign = loaded
    review = latest(call.store, campaign.name)
    if review is None or review.state != ReviewState.SUBMITTED:
        return _review_page(
            call, path, campaign, status=409, problem="There is no submission waiting for review."
        )
    if review.version != campaign.version:
        return _review_page(
            call,
            path,
            campaign,
            status=409,
            problem="The folder changed since it was submitted: it must be submitted again.",
        )
    plan = plan_summary(call.store, campaign, path, now=call.now) if approve else None
    comment = call.form.get("comment", "")
    try:
        with call.store.begin() as conn:
            decide(
                conn, review, call.user.id, approve=approve, comment=comment, plan=plan,
                now=call.now,
            )  # fmt: skip
            audit.record(
                conn,
                call.user.id,
                "review.approve" if approve else "review.reject",
                "campaign",
                campaign.name,
                review.version,
                at=call.now,
            )
    except OwnSubmission as exc:
        return call.render("problem.html.j2", 403, message=str(exc))
    except DripmailError as exc:
        return _review_page(call, path, campaign, status=400, problem=str(exc))
    word = "Approved" if approve else "Rejected"
    return call.redirect(f"/campaigns/{quote(path.name)}?done={word}.")


@requires(Permission.REVIEW)
def approve(call: Call) -> Response:
    return _decide(call, approve=True)


@requires(Permission.REVIEW)
def reject(call: Call) -> Response:
    return _decide(call, approve=False)


def _approved(review: Review | None, campaign: Campaign) -> bool:
    return (
        review is not None
        and review.state == ReviewState.APPROVED
        and review.version == campaign.version
    )


@requires(Permission.PUBLISH)
def publish_page(call: Call) -> Response:
    loaded = _load(call)
    if isinstance(loaded, Response):
        return loaded
    path, campaign = loaded
    review = latest(call.store, campaign.name)
    required = approval(call.store) != APPROVAL_NONE
    if required and not _approved(review, campaign):
        return _review_page(
            call,
            path,
            campaign,
            status=409,
            problem="Only an approved version is published: this version is not approved.",
        )
    plan = plan_summary(call.store, campaign, path, now=call.now)
    if call.form.get("confirm", "") != plan_fingerprint(plan):
        # The plan is no longer the one shown (enrollments moved on): show it again.
        return _review_page(
            call,
            path,
            campaign,
            status=409,
            problem="The plan changed since it was shown: check the new counts and confirm.",
            changed_plan=True,
        )
    try:
        if plan["first_publish"]:
            with call.store.begin() as conn:
                publish(conn, campaign, now=call.now, actor=call.user.id, audited_at=call.now)
        else:
            apply_edit(call.store, str(path), now=call.now, actor=call.user.id, audited_at=call.now)
    except DripmailError as exc:
        return _review_page(call, path, campaign, status=400, problem=f"Not published: {exc}")
    if review is not None and _approved(review, campaign):
        with call.store.begin() as conn:
            mark_published(conn, review.id, now=call.now)
    return call.redirect(f"/campaigns/{quote(path.name)}?done=Published.")


ROUTES = [
    Route("/campaigns/{name}/submit", submit_page, methods=["POST"]),
    Route("/campaigns/{name}/review", review_page, methods=["GET"]),
    Route("/campaigns/{name}/approve", approve, methods=["POST"]),
    Route("/campaigns/{name}/reject", reject, methods=["POST"]),
    Route("/campaigns/{name}/publish", publish_page, methods=["POST"]),
]
