"""The campaign list, one campaign's page, and pause / resume.

Routes: GET /campaigns (every campaign: state, counts, next sends, alerts),
GET /campaigns/{name} (its steps, checks, review and the actions the role allows),
POST /campaigns/{name}/pause and /resume (campaigns.planning.pause; resume also ends a
pause dripmail made by itself). `{name}` is the workspace folder's name; a campaign
published from elsewhere is shown by its published name.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from starlette.responses import Response
from starlette.routing import Route

from campaigns.authoring.checks import check_campaign
from campaigns.authoring.spec import Campaign
from campaigns.console.campaign_list import campaign_rows, state_of
from campaigns.console.console_settings import approval
from campaigns.console.guard import Call, requires
from campaigns.console.permissions import Permission
from campaigns.console.reviews import latest
from campaigns.console.workspace import folder_path, read, workspace_root
from campaigns.errors import DripmailError, NotFoundError
from campaigns.planning.pause import pause as pause_campaign
from campaigns.planning.pause import resume as resume_campaign
from campaigns.reporting.overview import campaign_overview
from campaigns.storage import audit
from campaigns.studio.views import describe_delay

__all__ = ["ROUTES", "campaign_list", "load_for", "not_found", "published_state"]


def not_found(call: Call, message: str) -> Response:
    return call.render("not_found.html.j2", 404, message=message)


def load_for(call: Call) -> tuple[Path, Campaign]:
    """The folder named in the path and its campaign read now (NotFoundError, InputError)."""
    path = folder_path(workspace_root(call.console.settings), call.request.path_params["name"])
    folder = read(path)
    if folder.campaign is None:
        raise DripmailError(folder.error or "the folder does not load")
    return path, folder.campaign


def published_state(call: Call, name: str) -> str | None:
    """ "published" or "paused", None when never published."""
    row = next((r for r in campaign_overview(call.store, now=call.now) if r.name == name), None)
    return None if row is None else row.state


@requires(Permission.VIEW_CAMPAIGNS)
def campaign_list(call: Call) -> Response:
    rows = campaign_rows(call.store, workspace_root(call.console.settings), now=call.now)
    return call.render("campaigns.html.j2", active="dashboard", campaigns=rows)


@requires(Permission.VIEW_CAMPAIGNS)
def campaign_page(call: Call) -> Response:
    name = call.request.path_params["name"]
    try:
        path = folder_path(workspace_root(call.console.settings), name)
    except NotFoundError as exc:
        return not_found(call, str(exc))
    folder = read(path)
    campaign = folder.campaign
    findings = check_campaign(campaign, settings=call.console.settings).findings if campaign else []
    review = latest(call.store, campaign.name) if campaign else None
    published = published_state(call, campaign.name) if campaign else None
    return call.render(
        "campaign.html.j2",
        active="dashboard",
        folder=folder,
        campaign=campaign,
        findings=findings,
        review=review,
        state=state_of(published, review),
        published=published,
        approval=approval(call.store),
        describe_delay=describe_delay,
        notice=call.request.query_params.get("done"),
    )


def _pause_or_resume(call: Call, *, resume: bool) -> Response:
    try:
        _path, campaign = load_for(call)
        act = resume_campaign if resume else pause_campaign
        report = act(call.store, campaign.name, now=call.now)
    except NotFoundError as exc:
        return not_found(call, str(exc))
    except DripmailError as exc:
        return call.render("problem.html.j2", 400, message=str(exc))
    if report.changed:
        with call.store.begin() as conn:
            audit.record(
                conn,
                call.user.id,
                "campaign.resume" if resume else "campaign.pause",
                "campaign",
                campaign.name,
                campaign.version,
                detail=f"{report.held} pending emails",
                at=call.now,
            )
    word = "resumed" if resume else "paused"
    done = f"{word}: {report.held} pending emails" if report.changed else f"already {word}"
    return call.redirect(f"/campaigns/{call.request.path_params['name']}?done={quote(done)}")


@requires(Permission.PAUSE)
def pause(call: Call) -> Response:
    return _pause_or_resume(call, resume=False)


@requires(Permission.PAUSE)
def resume(call: Call) -> Response:
    return _pause_or_resume(call, resume=True)


ROUTES = [
    Route("/campaigns", campaign_list, methods=["GET"]),
    Route("/campaigns/{name}", campaign_page, methods=["GET"]),
    Route("/campaigns/{name}/pause", pause, methods=["POST"]),
    Route("/campaigns/{name}/resume", resume, methods=["POST"]),
]
