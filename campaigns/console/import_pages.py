"""Importing contacts from the console (admins only), with a progress bar.

Routes: POST /contacts/import (a CSV upload, multipart, up to the guard's 5 MiB: starts
the import in the background, console.import_jobs, and answers with its page at once),
GET /contacts/import/{job} (the progress: a labelled `<progress>` and a status line read
out as it changes; at the end the per-line report of `dripmail import`), and
GET /contacts/import/{job}/status (JSON: state, rows done, total; what the page's small
script polls). Without JavaScript the page has a link that shows the progress again.
Every route is MANAGE_CONTACTS: anyone else gets 403.
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from campaigns.console.contact_pages import contacts_page, published_campaigns
from campaigns.console.guard import Call, requires
from campaigns.console.import_jobs import ImportJob
from campaigns.console.permissions import Permission
from campaigns.errors import InputError

__all__ = ["ROUTES"]


@requires(Permission.MANAGE_CONTACTS)
def start_import(call: Call) -> Response:
    """Start the import as `dripmail import` runs it; its page follows the progress."""
    assert call.user is not None
    campaign = call.form.get("campaign", "")
    upload = call.files.get("csv")
    if campaign not in published_campaigns(call):
        return contacts_page(call, 422, problem="Choose a published campaign to import into.")
    if upload is None or not upload.content:
        return contacts_page(call, 422, problem="Choose a CSV file to import.")
    try:
        job = call.console.imports.start(
            call.store,
            campaign,
            upload.filename or "contacts.csv",
            upload.content,
            user_id=call.user.id,
            now=call.now,
            clock=call.console.clock,
            consent=call.form.get("consent", "").strip() or None,
        )
    except InputError as exc:
        return contacts_page(call, 409, problem=f"Not started: {exc.message}")
    return call.redirect(f"/contacts/import/{job.id}")


def _job(call: Call) -> ImportJob | None:
    return call.console.imports.get(call.request.path_params["job"])


@requires(Permission.MANAGE_CONTACTS)
def import_page(call: Call) -> Response:
    """How far the import is; when it has ended, its report (or why nothing went in)."""
    job = _job(call)
    if job is None:  # jobs live in the console's memory: a restart forgets them
        return call.render("import_gone.html.j2", 404, active="contacts")
    return call.render("import.html.j2", active="contacts", job=job)


@requires(Permission.MANAGE_CONTACTS)
def import_status(call: Call) -> Response:
    """The progress as JSON, for the page's script (counts only: no address, no name)."""
    job = _job(call)
    if job is None:
        return call.finish(JSONResponse({"state": "unknown"}, 404))
    return call.finish(JSONResponse(job.status()))


ROUTES = [
    Route("/contacts/import", start_import, methods=["POST"]),
    Route("/contacts/import/{job}", import_page, methods=["GET"]),
    Route("/contacts/import/{job}/status", import_status, methods=["GET"]),
]
