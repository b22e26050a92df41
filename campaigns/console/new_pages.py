"""A new campaign from an uploaded article: choose the split, see the sequence, create it.

Routes: GET /campaigns/new (the upload form), POST /campaigns/new (multipart: the article
file and the split's options; shows the sequence it would make, nothing in the
workspace yet), POST /campaigns/new/create (writes the folder, as `dripmail split` would,
with the clinic details kept in the console's settings). The same library calls as
`dripmail split`: readers.read_article, split.split_article, folder.write_campaign.
Between the two steps the uploaded article waits in the workspace's `.uploads` folder,
under its own file name (in a folder of its own), so its title and the campaign's folder
name come out as `dripmail split` makes them from the same file. The folder is named by
the slug of the title, with `-2`, `-3`... when a folder or a published campaign already
has that name: an existing folder is never written over.
"""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import select
from starlette.responses import Response
from starlette.routing import Route

from campaigns.authoring.bounded import ARTICLE_LIMIT
from campaigns.authoring.folder import campaign_files, parse_cadence, write_campaign
from campaigns.authoring.readers import read_article
from campaigns.authoring.spec import load_files, load_folder
from campaigns.authoring.split import MAX_EMAILS, split_article
from campaigns.console.console_settings import clinic_details
from campaigns.console.guard import Call, requires
from campaigns.console.permissions import Permission
from campaigns.console.workspace import claim_folder, free_name, workspace_root
from campaigns.errors import DripmailError, InputError
from campaigns.storage import audit
from campaigns.storage.tables import campaigns
from campaigns.studio.views import describe_delay

__all__ = ["ROUTES"]

SUFFIXES = (".txt", ".md", ".html", ".htm")
# An upload: a random folder, and the file's own name made safe (no path, no dot first).
_TOKEN = re.compile(r"[0-9a-f]{32}/\w[\w.-]{0,99}(\.txt|\.md|\.html|\.htm)")
_UNSAFE = re.compile(r"[^\w.-]+")
_DEFAULT_CADENCE = "0,2,4,7,10,14"


def _uploads(call: Call) -> Path:
    folder = workspace_root(call.console.settings) / ".uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _upload_name(filename: str, suffix: str) -> str:
    """The uploaded file's own name, kept for its title: letters, digits, `_.-` only."""
    stem = _UNSAFE.sub("-", Path(filename.replace("\\", "/")).name[: -len(suffix)])
    return (stem.strip(".-")[:100].rstrip(".-") or "article") + suffix


def _published_names(call: Call) -> set[str]:
    with call.store.connect() as conn:
        return set(conn.scalars(select(campaigns.c.name)))


def _options(form: dict[str, str]) -> dict[str, str]:
    return {
        "emails": form.get("emails", "").strip(),
        "minutes": form.get("minutes", "").strip(),
        "cadence": form.get("cadence", "").strip() or _DEFAULT_CADENCE,
        "title": form.get("title", "").strip(),
    }


def _sequence(call: Call, article_path: Path, options: dict[str, str]):
    """(files, campaign) the split would write for this article and these options."""
    emails = int(options["emails"]) if options["emails"] else None
    minutes = float(options["minutes"]) if options["minutes"] else None
    if emails is not None and minutes is not None:
        raise InputError("choose a number of emails or minutes of reading, not both")
    cadence = parse_cadence(options["cadence"])
    article = read_article(article_path, title=options["title"] or None)
    drafts = split_article(article, emails=emails, minutes=minutes, max_emails=MAX_EMAILS)
    defaults = clinic_details(call.store)
    files = campaign_files(article, drafts, cadence=cadence, defaults=defaults)
    return article, drafts, cadence, defaults, load_files(files)


def _form(call: Call, *, status: int = 200, problem: str | None = None) -> Response:
    return call.render(
        "new_campaign.html.j2",
        status,
        active="dashboard",
        options=_options(call.form),
        problem=problem,
        limit_mb=ARTICLE_LIMIT // (1024 * 1024),
        clinic=clinic_details(call.store),
    )


@requires(Permission.EDIT_CAMPAIGNS)
def new_campaign(call: Call) -> Response:
    return _form(call)


@requires(Permission.EDIT_CAMPAIGNS)
def split_preview(call: Call) -> Response:
    """The sequence an uploaded article makes with these options (nothing created yet)."""
    options = _options(call.form)
    token = call.form.get("upload", "")
    upload = call.files.get("article")
    if upload is not None and upload.filename:
        suffix = Path(upload.filename).suffix.lower()
        if suffix not in SUFFIXES:
            return _form(call, status=400, problem="Upload a .txt, .md or .html article.")
        if len(upload.content) > ARTICLE_LIMIT:
            return _form(call, status=400, problem="The article is larger than the limit.")
        token = f"{secrets.token_hex(16)}/{_upload_name(upload.filename, suffix)}"
        (_uploads(call) / token).parent.mkdir()
        (_uploads(call) / token).write_bytes(upload.content)
    if not _TOKEN.fullmatch(token) or not (_uploads(call) / token).is_file():
        return _form(call, status=400, problem="Choose the article file to upload.")
    try:
        _article, drafts, cadence, _defaults, campaign = _sequence(
            call, _uploads(call) / token, options
        )
    except (DripmailError, ValueError) as exc:
        return _form(call, status=400, problem=f"Cannot split this article: {exc}")
    folder = free_name(workspace_root(call.console.settings), campaign.name, _published_names(call))
    return call.render(
        "new_preview.html.j2",
        active="dashboard",
        options=options,
        upload=token,
        campaign=campaign,
        folder=folder,
        words=[sum(len(p.split()) for p in draft.paragraphs) for draft in drafts],
        cadence=cadence,
        describe_delay=describe_delay,
        placeholders=campaign.placeholders(),
    )


@requires(Permission.EDIT_CAMPAIGNS)
def create(call: Call) -> Response:
    token = call.form.get("upload", "")
    if not _TOKEN.fullmatch(token) or not (_uploads(call) / token).is_file():
        return _form(call, status=400, problem="The uploaded article is gone: upload it again.")
    article_path = _uploads(call) / token
    try:
        article, drafts, cadence, defaults, campaign = _sequence(
            call, article_path, _options(call.form)
        )
    except (DripmailError, ValueError) as exc:
        return _form(call, status=400, problem=f"Not created: {exc}")
    root = workspace_root(call.console.settings)
    out = claim_folder(root, campaign.name, _published_names(call))
    try:
        write_campaign(article, drafts, out, cadence=cadence, defaults=defaults, name=out.name)
    except (DripmailError, ValueError) as exc:
        shutil.rmtree(out, ignore_errors=True)  # the folder claimed above, still ours
        return _form(call, status=400, problem=f"Not created: {exc}")
    shutil.rmtree(article_path.parent, ignore_errors=True)
    campaign = load_folder(out)
    with call.store.begin() as conn:
        audit.record(
            conn,
            call.user.id,
            "campaign.create",
            "campaign",
            campaign.name,
            campaign.version,
            detail=f"{len(drafts)} emails",
            at=call.now,
        )
    return call.redirect(f"/campaigns/{quote(campaign.name)}?done=Created.")


ROUTES = [
    Route("/campaigns/new", new_campaign, methods=["GET"]),
    Route("/campaigns/new", split_preview, methods=["POST"]),
    Route("/campaigns/new/create", create, methods=["POST"]),
]
