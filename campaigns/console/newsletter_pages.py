"""The newsletter pages: create one from articles, schedule it after a dry run, cancel it.

Routes: GET /newsletters (the newsletter folders of the workspace), POST /newsletters
(create from one or several uploaded articles: `dripmail newsletter create`),
GET /newsletters/{name}, POST /newsletters/{name}/preview (the dry run: a chart per
hour and a table per zone, and a button confirming exactly those settings),
POST /newsletters/{name}/schedule and POST /newsletters/{name}/cancel (`newsletter
schedule` and `newsletter cancel`). Creating needs EDIT_NEWSLETTERS; the dry run,
scheduling and cancelling need SCHEDULE_NEWSLETTERS. Newsletters are folders in the
workspace (DRIPMAIL_WORKSPACE, default ./campaigns), the same folders the CLI works on.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from campaigns.authoring import spec
from campaigns.console.charts import bar_chart
from campaigns.console.guard import Call, requires
from campaigns.console.permissions import Permission
from campaigns.errors import DripmailError, InputError
from campaigns.planning.newsletter import (
    KIND,
    SchedulePlan,
    cancel_newsletter,
    create_newsletter,
    schedule_newsletter,
)
from campaigns.planning.schedule import parse_date, parse_instant, zone
from campaigns.storage import audit

__all__ = ["ARTICLE_FIELDS", "DEFAULT_WORKSPACE", "ROUTES", "workspace"]

DEFAULT_WORKSPACE = "campaigns"
ARTICLE_FIELDS = 3  # a digest of up to three uploaded articles
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # a folder name: never a path
_ARTICLE_SUFFIXES = (".md", ".txt", ".html", ".htm", ".markdown")


def workspace(call: Call) -> Path:
    """The folder holding campaign and newsletter folders."""
    return Path(call.console.settings.workspace or DEFAULT_WORKSPACE)


def _newsletters(call: Call) -> list[spec.Campaign]:
    root = workspace(call)
    found = []
    for folder in sorted(root.iterdir()) if root.is_dir() else ():
        yaml = folder / spec.CAMPAIGN_FILE
        if not yaml.is_file() or f"kind: {KIND}" not in yaml.read_text("utf-8", "replace"):
            continue
        try:
            found.append(spec.load_folder(folder))
        except DripmailError:
            continue  # a folder being edited on disk: `dripmail check` says what is wrong
    return found


def _folder(call: Call) -> Path | None:
    name = call.request.path_params["name"]
    folder = workspace(call) / name
    if not _NAME.fullmatch(name) or not (folder / spec.CAMPAIGN_FILE).is_file():
        return None
    return folder


def _said(exc: DripmailError) -> str:
    if isinstance(exc, InputError):
        field = f"{exc.field}: " if exc.field else ""
        return f"{field}{exc.message}"
    return str(exc)


def _list(call: Call, status: int = 200, **context: Any) -> Response:
    context.setdefault("problem", None)
    context.setdefault("typed", {})
    return call.render(
        "newsletters.html.j2", status, active="newsletters", letters=_newsletters(call), **context
    )


@requires(Permission.VIEW_CAMPAIGNS)
def newsletters(call: Call) -> Response:
    return _list(call)


@requires(Permission.EDIT_NEWSLETTERS)
def create(call: Call) -> Response:
    """Write a newsletter folder from the uploaded articles, as `newsletter create` does."""
    assert call.user is not None
    # One file input per article (the guard keeps one file per field).
    uploads = [call.files[f"article{n}"] for n in range(1, ARTICLE_FIELDS + 1)
               if f"article{n}" in call.files and call.files[f"article{n}"].content]  # fmt: skip
    if not uploads:
        return _list(call, 422, problem="Choose one article, or several for a digest.")
    root = workspace(call)
    root.mkdir(parents=True, exist_ok=True)
    form = call.form
    with tempfile.TemporaryDirectory(prefix="dripmail-articles-") as tmp:
        paths = []
        for index, upload in enumerate(uploads):
            suffix = Path(upload.filename).suffix.lower()
            if suffix not in _ARTICLE_SUFFIXES:
                return _list(
                    call, 422, problem=f"{upload.filename}: an article is .md, .txt or .html"
                )
            path = Path(tmp) / f"{index:02d}-{Path(upload.filename).stem[:40]}{suffix}"
            path.write_bytes(upload.content)
            paths.append(path)
        staging = Path(tmp) / "newsletter"
        try:
            made = create_newsletter(
                paths,
                staging,
                title=form.get("title") or None,
                url=form.get("url") or None,
                organisation=form.get("organisation") or None,
                sender=form.get("sender") or None,
                postal_address=form.get("postal_address") or None,
                now=call.now,
            )
        except DripmailError as exc:
            return _list(call, 422, problem=_said(exc), typed=form)
        target = root / made.name
        if target.exists():
            return _list(call, 409, problem=f"A folder {made.name} already exists.", typed=form)
        shutil.copytree(staging, target)
    with call.store.begin() as conn:
        audit.record(
            conn, call.user.id, "newsletter.create", "newsletter", made.name, made.version,
            at=call.now,
        )  # fmt: skip
    return call.redirect(f"/newsletters/{made.name}")


def _detail(call: Call, folder: Path, status: int = 200, **context: Any) -> Response:
    for key in ("problem", "notice", "plan", "hours_chart"):
        context.setdefault(key, None)
    context.setdefault("typed", {"mode": "local", "max_per_hour": ""})
    return call.render(
        "newsletter.html.j2",
        status,
        active="newsletters",
        letter=spec.load_folder(folder),
        **context,
    )


@requires(Permission.VIEW_CAMPAIGNS)
def newsletter(call: Call) -> Response:
    folder = _folder(call)
    if folder is None:
        return call.render("not_found.html.j2", 404)
    try:
        return _detail(call, folder)
    except DripmailError as exc:
        return _list(call, 422, problem=f"{folder.name}: {_said(exc)}")


def _schedule(call: Call, folder: Path, *, dry_run: bool) -> SchedulePlan:
    form = call.form
    tags = [t.strip() for t in re.split(r"[,;\s]+", form.get("tags", "")) if t.strip()]
    at = local_time = on_date = None
    if form.get("mode") == "at":
        try:
            at = parse_instant(form.get("at", ""), zone(form.get("zone") or "UTC"))
        except ValueError as exc:
            raise InputError(str(exc), field="at") from None
    else:
        local_time = form.get("local_time", "")
        try:
            on_date = parse_date(form.get("date", ""))
        except ValueError as exc:
            raise InputError(str(exc), field="date") from None
    limit = form.get("max_per_hour", "").strip()
    if limit and not limit.isdigit():
        raise InputError("a whole number of emails", field="max per hour")
    return schedule_newsletter(
        call.store,
        folder,
        tags,
        now=call.now,
        at=at,
        local_time=local_time,
        on_date=on_date,
        max_per_hour=int(limit) if limit else None,
        dry_run=dry_run,
        actor=call.user.id if call.user is not None else audit.CLI,
        audited_at=call.now,
    )


def _hours(plan: SchedulePlan) -> list[tuple[str, int]]:
    return [(f"{hour:%m-%d %H:00}", count) for hour, count in plan.per_hour]


@requires(Permission.SCHEDULE_NEWSLETTERS)
def preview(call: Call) -> Response:
    """The dry run: who would get it when, nothing written; then a button to confirm."""
    folder = _folder(call)
    if folder is None:
        return call.render("not_found.html.j2", 404)
    try:
        plan = _schedule(call, folder, dry_run=True)
    except DripmailError as exc:
        return _detail(call, folder, 422, problem=_said(exc), typed=call.form)
    chart = bar_chart("per-hour", "Emails per hour (UTC)", _hours(plan))
    return _detail(
        call, folder, plan=plan, hours_chart=chart, typed=call.form, why=plan.why_nobody()
    )


@requires(Permission.SCHEDULE_NEWSLETTERS)
def schedule(call: Call) -> Response:
    assert call.user is not None
    folder = _folder(call)
    if folder is None:
        return call.render("not_found.html.j2", 404)
    try:
        plan = _schedule(call, folder, dry_run=False)
    except DripmailError as exc:
        return _detail(call, folder, 422, problem=_said(exc), typed=call.form)
    first = min(plan.due.values(), default=None)
    with call.store.begin() as conn:
        audit.record(
            conn,
            call.user.id,
            "newsletter.schedule",
            "newsletter",
            plan.campaign,
            spec.load_folder(folder).version,
            detail=f"{len(plan.due)} planned"
            + (f", first {first:%Y-%m-%d %H:%M}Z" if first else ""),
            at=call.now,
        )
    return _detail(
        call, folder, notice=f"Planned {len(plan.due)} emails; `dripmail run` sends them."
    )


@requires(Permission.SCHEDULE_NEWSLETTERS)
def cancel(call: Call) -> Response:
    assert call.user is not None
    folder = _folder(call)
    if folder is None:
        return call.render("not_found.html.j2", 404)
    count = cancel_newsletter(call.store, folder, now=call.now)
    name = folder.name
    with call.store.begin() as conn:
        audit.record(
            conn, call.user.id, "newsletter.cancel", "newsletter", name,
            detail=f"{count} cancelled", at=call.now,
        )  # fmt: skip
    return _detail(call, folder, notice=f"Cancelled {count} emails not yet sent.")


ROUTES = [
    Route("/newsletters", newsletters, methods=["GET"]),
    Route("/newsletters", create, methods=["POST"]),
    Route("/newsletters/{name}", newsletter, methods=["GET"]),
    Route("/newsletters/{name}/preview", preview, methods=["POST"]),
    Route("/newsletters/{name}/schedule", schedule, methods=["POST"]),
    Route("/newsletters/{name}/cancel", cancel, methods=["POST"]),
]
