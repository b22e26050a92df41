"""The contacts pages (admins only): import a CSV, look one person up, export, erase.

Routes: GET /contacts (the forms), POST /contacts/import (a CSV upload, multipart, up
to the guard's 5 MiB), POST /contacts/find (look up one person by exact address: no
list of patients is ever shown), POST /contacts/export (the JSON of `dripmail contacts
export`, as a download), POST /contacts/erase (`dripmail contacts forget`, only when the
address is typed twice and both match). Addresses travel in POST bodies, never in a
URL (URLs end up in access logs and browser history). Every action is audited by
contact id, never by address.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import select
from starlette.responses import Response
from starlette.routing import Route

from campaigns.compliance.privacy import export_contact, forget_contact
from campaigns.console.guard import Call, requires
from campaigns.console.permissions import Permission
from campaigns.errors import DripmailError, InputError
from campaigns.planning.contacts import normalise_email
from campaigns.planning.enroll import import_ref
from campaigns.storage import audit
from campaigns.storage.tables import campaigns

__all__ = ["ROUTES", "published_campaigns"]

log = logging.getLogger("dripmail.console")


def published_campaigns(call: Call, kind: str | None = None) -> list[str]:
    """Names of published campaigns (drip campaigns by default: what an import enrolls into)."""
    with call.store.connect() as conn:
        rows = conn.execute(select(campaigns.c.name, campaigns.c.kind).order_by(campaigns.c.name))
        return [name for name, k in rows if (k or "drip") == (kind or "drip")]


def _page(call: Call, status: int = 200, **context: Any) -> Response:
    for key in ("problem", "notice", "report", "found", "typed"):
        context.setdefault(key, None)
    return call.render(
        "contacts.html.j2",
        status,
        active="contacts",
        campaigns=published_campaigns(call),
        **context,
    )


@requires(Permission.MANAGE_CONTACTS)
def contacts_home(call: Call) -> Response:
    return _page(call)


@requires(Permission.MANAGE_CONTACTS)
def import_contacts(call: Call) -> Response:
    """Run the import as `dripmail import` does; the page shows counts and each bad line."""
    assert call.user is not None
    campaign = call.form.get("campaign", "")
    upload = call.files.get("csv")
    if campaign not in published_campaigns(call):
        return _page(call, 422, problem="Choose a published campaign to import into.")
    if upload is None or not upload.content:
        return _page(call, 422, problem="Choose a CSV file to import.")
    consent = call.form.get("consent", "").strip() or None
    with tempfile.TemporaryDirectory(prefix="dripmail-import-") as folder:
        path = Path(folder) / "contacts.csv"
        path.write_bytes(upload.content)
        try:
            report = import_ref(
                call.store,
                campaign,
                path,
                now=call.now,
                consent=consent,
                actor=call.user.id,
                audited_at=call.now,
            )
        except DripmailError as exc:
            return _page(call, 422, problem=f"{upload.filename}: {_said(exc)}")
    detail = (
        f"imported {report.enrolled}, already {report.already}, "
        f"suppressed {report.suppressed}, rejected {len(report.rejected)}"
    )
    with call.store.begin() as conn:
        audit.record(
            conn,
            call.user.id,
            "contacts.import",
            "campaign",
            campaign,
            hashlib.sha256(upload.content).hexdigest()[:16],
            detail=detail,
            at=call.now,
        )
    log.info("console import into %s by user %s: %s", campaign, call.user.id, detail)
    return _page(call, report=report, filename=upload.filename)


def _said(exc: DripmailError) -> str:
    """The error without the temporary file's path (the page names the upload)."""
    if isinstance(exc, InputError):
        return (f"line {exc.line}: " if exc.line else "") + exc.message
    return str(exc)


def _typed_address(call: Call, field: str = "email") -> str | None:
    try:
        return normalise_email(call.form.get(field, ""))
    except ValueError:
        return None


@requires(Permission.MANAGE_CONTACTS)
def find_contact(call: Call) -> Response:
    """One person, by the exact address typed: their enrollments and timeline."""
    assert call.user is not None
    address = _typed_address(call)
    if address is None:
        return _page(call, 422, problem="Type the full address of one person.")
    found = export_contact(call.store, address)
    if found["contact"] is None:
        return _page(call, 404, problem="Nobody with that address is held.", typed=call.form)
    with call.store.begin() as conn:
        audit.record(
            conn, call.user.id, "contact.view", "contact", str(found["contact"]["id"]), at=call.now
        )
    return _page(call, found=found, typed=call.form)


@requires(Permission.MANAGE_CONTACTS)
def export(call: Call) -> Response:
    """Everything held on the person, as `dripmail contacts export` prints it."""
    assert call.user is not None
    address = _typed_address(call)
    if address is None:
        return _page(call, 422, problem="Type the full address of one person.")
    held = export_contact(call.store, address)
    contact_id = held["contact"]["id"] if held["contact"] else None
    with call.store.begin() as conn:
        audit.record(
            conn,
            call.user.id,
            "contact.export",
            "contact",
            str(contact_id) if contact_id is not None else None,
            at=call.now,
            detail=None if contact_id is not None else "nothing held",
        )
    body = json.dumps(held, indent=2, ensure_ascii=False)
    name = f"contact-{contact_id}.json" if contact_id is not None else "contact-none.json"
    return call.finish(
        Response(
            body,
            media_type="application/json; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    )


@requires(Permission.MANAGE_CONTACTS)
def erase(call: Call) -> Response:
    """`contacts forget`, only when the address was typed again and both match."""
    assert call.user is not None
    address = _typed_address(call)
    again = _typed_address(call, "confirm")
    if address is None or again is None or address != again:
        return _page(
            call,
            422,
            problem="The two addresses differ: nothing was erased. Type the address again.",
            typed={"email": call.form.get("email", "")},
        )
    report = forget_contact(call.store, address, now=call.now)
    with call.store.begin() as conn:
        audit.record(
            conn,
            call.user.id,
            "contact.erase",
            "contact",
            str(report.contact_id) if report.contact_id is not None else None,
            detail=f"{report.cancelled} pending cancelled",
            at=call.now,
        )
    held = "their data was erased" if report.contact_id is not None else "nothing was held"
    return _page(
        call,
        notice=f"Erased: {held}; the address is suppressed and "
        f"{report.cancelled} pending emails were cancelled.",
    )


ROUTES = [
    Route("/contacts", contacts_home, methods=["GET"]),
    Route("/contacts/import", import_contacts, methods=["POST"]),
    Route("/contacts/find", find_contact, methods=["POST"]),
    Route("/contacts/export", export, methods=["POST"]),
    Route("/contacts/erase", erase, methods=["POST"]),
]
