"""The editor: one step's subject, preheader, button and Markdown, with its preview and
checks; and the sequence's timing (order, delays, send window, closures, min_gap).

Routes: GET/POST /campaigns/{name}/steps/{key} (POST saves the step file),
GET/POST /campaigns/{name}/steps/{key}/preview?view=desktop|phone|dark|text (the email
rendered by the studio's own views, saved text on GET, the typed draft on POST; shown
only in a sandboxed iframe, with its own CSP that runs no script), GET/POST
/campaigns/{name}/timing. Each save is checked by loading the campaign with it first
and audited as "campaign.edit" with the folder's new version.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from campaigns.authoring.checks import Finding, check_step, compile_steps
from campaigns.authoring.spec import Campaign, Step
from campaigns.console.campaign_pages import load_for, not_found
from campaigns.console.guard import Call, requires
from campaigns.console.permissions import Permission
from campaigns.console.workspace import DAYS, StepDraft, Timing, save_step, save_timing, with_step
from campaigns.errors import DripmailError, NotFoundError
from campaigns.rendering.links import sample_links
from campaigns.rendering.personalise import SAMPLE
from campaigns.rendering.tokens import public_url
from campaigns.storage import audit
from campaigns.studio.views import DESKTOP_WIDTH, PHONE_WIDTH, preview_document

__all__ = ["ROUTES"]

VIEWS = ("desktop", "phone", "dark", "text")
TEXT_STYLE = "white-space:pre-wrap;font:14px/1.5 monospace;margin:1rem"
# The preview frame's own policy: the email's inline styles, images as data only, no
# script at all (CSP sandbox too), framed by console pages only.
PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; sandbox"
)


@dataclass(frozen=True)
class SourceLine:
    """One line of the step file with the check findings that name it."""

    number: int
    text: str
    findings: tuple[Finding, ...]


def _draft(call: Call) -> StepDraft:
    form = call.form
    return StepDraft(
        form.get("subject", ""),
        form.get("preheader", ""),
        form.get("cta", ""),
        form.get("body", ""),
    )


def _draft_of(campaign: Campaign, key: str) -> StepDraft:
    step = campaign.step(key)
    return StepDraft(step.subject, step.preheader or "", step.cta or "", step.body)


def _source_lines(text: str, findings: list[Finding], file: str) -> list[SourceLine]:
    mine = [f for f in findings if f.line and f.file.endswith(file)]
    return [
        SourceLine(number, line, tuple(f for f in mine if f.line == number))
        for number, line in enumerate(text.splitlines(), 1)
    ]


def _editor(
    call: Call,
    campaign: Campaign,
    key: str,
    draft: StepDraft,
    *,
    status: int = 200,
    problem: str | None = None,
    notice: str | None = None,
) -> Response:
    step = campaign.step(key)
    try:
        findings = check_step(campaign, key, settings=call.console.settings)
    except DripmailError as exc:
        findings = [Finding("error", "checks", str(exc), step.file)]
    unplaced = [f for f in findings if not (f.line and f.file.endswith(step.file))]
    name = call.request.path_params["name"]
    return call.render(
        "editor.html.j2",
        status,
        active="dashboard",
        name=name,
        campaign=campaign,
        step=step,
        draft=draft,
        lines=_source_lines(campaign.files[step.file], findings, step.file),
        unplaced=unplaced,
        problem=problem,
        notice=notice,
        preview=f"/campaigns/{quote(name)}/steps/{quote(key)}/preview",
        widths={"desktop": DESKTOP_WIDTH, "phone": PHONE_WIDTH},
    )


def _step_of(call: Call) -> tuple[Path, Campaign, Step] | Response:
    """The campaign folder and the step the path names, or the page saying why not."""
    try:
        path, campaign = load_for(call)
        return path, campaign, campaign.step(call.request.path_params["key"])
    except (NotFoundError, KeyError) as exc:
        return not_found(call, str(exc))
    except DripmailError as exc:
        return call.render("problem.html.j2", 400, message=str(exc))


@requires(Permission.VIEW_CAMPAIGNS)
def edit_step(call: Call) -> Response:
    key = call.request.path_params["key"]
    found = _step_of(call)
    if isinstance(found, Response):
        return found
    _path, campaign, _step = found
    return _editor(call, campaign, key, _draft_of(campaign, key))


@requires(Permission.EDIT_CAMPAIGNS)
def save(call: Call) -> Response:
    key = call.request.path_params["key"]
    draft = _draft(call)
    found = _step_of(call)
    if isinstance(found, Response):
        return found
    path, campaign, _step = found
    try:
        updated = save_step(path, key, draft)
    except DripmailError as exc:
        return _editor(call, campaign, key, draft, status=400, problem=f"Not saved: {exc}")
    with call.store.begin() as conn:
        audit.record(
            conn,
            call.user.id,
            "campaign.edit",
            "campaign",
            updated.name,
            updated.version,
            detail=f"step {key}",
            at=call.now,
        )
    return _editor(call, updated, key, _draft_of(updated, key), notice="Saved to the folder.")


def _preview(call: Call, campaign: Campaign, key: str) -> Response:
    view = call.request.query_params.get("view") or call.form.get("view") or "desktop"
    if view not in VIEWS:
        view = "desktop"
    compiled, findings = compile_steps(campaign)
    if key not in compiled:
        message = next((f.message for f in findings if f.step == key), "the email does not render")
        body = f"<p>This email does not render: {html.escape(message)}</p>"
    else:
        unsubscribe, preferences = sample_links(
            public_url(call.console.settings.public_url, campaign.spec.links.public_url)
        )
        rendered = compiled[key].personalise(
            SAMPLE, unsubscribe_url=unsubscribe, preferences_url=preferences
        )
        if view == "text":
            body = f"<pre style='{TEXT_STYLE}'>{html.escape(rendered.text)}</pre>"
        else:
            body = preview_document(rendered.html, dark=view == "dark")
    return HTMLResponse(
        body,
        headers={
            "Content-Security-Policy": PREVIEW_CSP,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )


@requires(Permission.VIEW_CAMPAIGNS)
def preview_saved(call: Call) -> Response:
    key = call.request.path_params["key"]
    found = _step_of(call)
    if isinstance(found, Response):
        return found
    _path, campaign, _step = found
    return _preview(call, campaign, key)


@requires(Permission.EDIT_CAMPAIGNS)
def preview_draft(call: Call) -> Response:
    """The typed draft rendered (nothing written): the editor's live preview."""
    key = call.request.path_params["key"]
    found = _step_of(call)
    if isinstance(found, Response):
        return found
    _path, campaign, step = found
    try:
        campaign = with_step(campaign, step.file, _draft(call))
    except DripmailError as exc:
        return HTMLResponse(
            f"<p>Not shown yet: {html.escape(str(exc))}</p>",
            headers={"Content-Security-Policy": PREVIEW_CSP, "Cache-Control": "no-store"},
        )
    return _preview(call, campaign, key)


def _timing_page(
    call: Call, campaign: Campaign, *, status: int = 200, problem: str | None = None
) -> Response:
    window = campaign.spec.send_window
    closed = window.closed if isinstance(window.closed, list) else []
    return call.render(
        "timing.html.j2",
        status,
        active="dashboard",
        name=call.request.path_params["name"],
        campaign=campaign,
        window=window,
        closed_file=window.closed if isinstance(window.closed, str) else None,
        closed="\n".join(str(day) for day in closed),
        days=DAYS,
        problem=problem,
        notice=call.request.query_params.get("done"),
    )


@requires(Permission.VIEW_CAMPAIGNS)
def timing(call: Call) -> Response:
    try:
        _path, campaign = load_for(call)
    except NotFoundError as exc:
        return not_found(call, str(exc))
    except DripmailError as exc:
        return call.render("problem.html.j2", 400, message=str(exc))
    return _timing_page(call, campaign)


@requires(Permission.EDIT_CAMPAIGNS)
def save_timing_page(call: Call) -> Response:
    try:
        path, campaign = load_for(call)
    except NotFoundError as exc:
        return not_found(call, str(exc))
    except DripmailError as exc:
        return call.render("problem.html.j2", 400, message=str(exc))
    form = call.form
    files = [step.file for step in campaign.steps]
    try:
        positions = {file: int(form.get(f"position-{i}", i + 1)) for i, file in enumerate(files)}
    except ValueError:
        return _timing_page(call, campaign, status=400, problem="Not saved: a position is a number")
    order = sorted(files, key=lambda file: (positions[file], files.index(file)))
    changes = Timing(
        order=order,
        delays={file: form.get(f"delay-{i}", "") for i, file in enumerate(files)},
        start=form.get("start", ""),
        end=form.get("end", ""),
        days=[day for day in DAYS if form.get(f"day-{day}")],
        closed=form.get("closed", "").split(),
        min_gap=form.get("min_gap", ""),
    )
    try:
        updated = save_timing(path, changes)
    except DripmailError as exc:
        return _timing_page(call, campaign, status=400, problem=f"Not saved: {exc}")
    with call.store.begin() as conn:
        audit.record(
            conn,
            call.user.id,
            "campaign.edit",
            "campaign",
            updated.name,
            updated.version,
            detail="timing",
            at=call.now,
        )
    return call.redirect(f"/campaigns/{quote(path.name)}/timing?done=Saved%20to%20the%20folder.")


ROUTES = [
    Route("/campaigns/{name}/steps/{key}", edit_step, methods=["GET"]),
    Route("/campaigns/{name}/steps/{key}", save, methods=["POST"]),
    Route("/campaigns/{name}/steps/{key}/preview", preview_saved, methods=["GET"]),
    Route("/campaigns/{name}/steps/{key}/preview", preview_draft, methods=["POST"]),
    Route("/campaigns/{name}/timing", timing, methods=["GET"]),
    Route("/campaigns/{name}/timing", save_timing_page, methods=["POST"]),
]
