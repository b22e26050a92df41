"""The contacts pages (admins only): import a CSV, look one person up, export, erase.

Routes: GET /contacts (the forms; the import form posts to console.import_pages),
POST /contacts/find (look up one person by exact address: no
list of patients is ever shown), POST /contacts/export (the JSON of `dripmail contacts
export`, as a download), POST /contacts/erase (`dripmail contacts forget`, only when the
address is typed twice and both match). Addresses travel in POST bodies, never in a
URL (URLs end up in access logs and browser history). Every action is audited by
contact id, never by address.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import select
from starlette.responses import Response
from starlette.routing import Route

from campaigns.compliance.privacy import export_contact, forget_contact
from campaigns.console.guard import Call, requires
from campaigns.console.permissions import Permission
from campaigns.planning.contacts import normalise_email
from campaigns.storage import audit
from campaigns.storage.tables import campaigns

__all__ = ["ROUTES", "contacts_page", "published_campaigns"]

log = logging.getLogger("dripmail.console")


def published_campaigns(call: Call, kind: str | None = None) -> list[str]:
    """Names of published campaigns (drip campaigns by default: what an import enrolls into)."""
    with call.store.connect() as conn:
        rows = conn.execute(select(campaigns.c.name, campaigns.c.kind).order_by(campaigns.c.name))
        return [name for name, k in rows if (k or "drip") == (kind or "drip")]


def contacts_page(call: Call, status: int = 200, **context: Any) -> Response:
    for key in ("problem", "notice", "found", "typed"):
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
    return contacts_page(call)


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
        return contacts_page(call, 422, problem="Type the full address of one person.")
    found = export_contact(call.store, address)
    if found["contact"] is None:
        return contacts_page(
            call, 404, problem="Nobody with that address is held.", typed=call.form
        )
    with call.store.begin() as conn:
        audit.record(
            conn, call.user.id, "contact.view", "contact", str(found["contact"]["id"]), at=call.now
        )
    return contacts_page(call, found=found, typed=call.form)


@requires(Permission.MANAGE_CONTACTS)
def export(call: Call) -> Response:
    """Everything held on the person, as `dripmail contacts export` prints it."""
    assert call.user is not None
    address = _typed_address(call)
    if address is None:
        return contacts_page(call, 422, problem="Type the full address of one person.")
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
        return contacts_page(
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
    return contacts_page(
        call,
        notice=f"Erased: {held}; the address is suppressed and "
        f"{report.cancelled} pending emails were cancelled.",
    )


ROUTES = [
    Route("/contacts", contacts_home, methods=["GET"]),
    Route("/contacts/find", find_contact, methods=["POST"]),
    Route("/contacts/export", export, methods=["POST"]),
    Route("/contacts/erase", erase, methods=["POST"]),
]
