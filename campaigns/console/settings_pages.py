"""The console's settings page (admins): clinic details kept once, and the approval rule.

Routes: GET /settings, POST /settings (organisation, sender, postal address, links,
disclaimer, time zone: what `dripmail split --defaults` reads from a file), POST
/settings/approval ("required" or "none"). Each change is written to the audit trail.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from campaigns.authoring.defaults import CampaignDefaults
from campaigns.console.console_settings import (
    APPROVAL_NONE,
    APPROVAL_REQUIRED,
    CLINIC_FIELDS,
    approval,
    clinic_details,
    save_approval,
    save_clinic_details,
)
from campaigns.console.guard import Call, requires
from campaigns.console.permissions import Permission
from campaigns.errors import DripmailError
from campaigns.storage import audit

__all__ = ["ROUTES"]

LABELS = {
    "organisation": "Organisation",
    "from_name": "Sender name",
    "from_address": "Sender address",
    "reply_to": "Reply-to address",
    "postal_address": "Postal address (the law wants it in every email)",
    "website": "Website",
    "cta_url": "Where the last email's button leads",
    "logo_url": "Logo (https address)",
    "disclaimer": "Disclaimer",
    "timezone": "Time zone for contacts whose own is unknown (like America/New_York)",
}


def _page(
    call: Call,
    details: CampaignDefaults | dict,
    *,
    status: int = 200,
    problem: str | None = None,
    notice: str | None = None,
) -> Response:
    values = (
        details if isinstance(details, dict) else {k: getattr(details, k) for k in CLINIC_FIELDS}
    )
    return call.render(
        "settings.html.j2",
        status,
        active="settings",
        fields=[(key, LABELS[key], values.get(key) or "") for key in CLINIC_FIELDS],
        approval=approval(call.store),
        choices=(APPROVAL_REQUIRED, APPROVAL_NONE),
        problem=problem,
        notice=notice,
    )


@requires(Permission.MANAGE_SETTINGS)
def settings_page(call: Call) -> Response:
    return _page(call, clinic_details(call.store))


@requires(Permission.MANAGE_SETTINGS)
def save_details(call: Call) -> Response:
    typed = {key: call.form.get(key, "") for key in CLINIC_FIELDS}
    try:
        with call.store.begin() as conn:
            save_clinic_details(conn, typed, now=call.now)
            audit.record(conn, call.user.id, "settings.clinic", "settings", "clinic", at=call.now)
    except DripmailError as exc:
        return _page(call, typed, status=400, problem=f"Not saved: {exc}")
    return _page(call, clinic_details(call.store), notice="Clinic details saved.")


@requires(Permission.MANAGE_SETTINGS)
def save_approval_page(call: Call) -> Response:
    value = call.form.get("approval", "")
    try:
        with call.store.begin() as conn:
            save_approval(conn, value, now=call.now)
            audit.record(
                conn, call.user.id, "settings.approval", "settings", "approval",
                detail=value, at=call.now,
            )  # fmt: skip
    except DripmailError as exc:
        return _page(call, clinic_details(call.store), status=400, problem=str(exc))
    return _page(call, clinic_details(call.store), notice=f"Approval: {value}.")


ROUTES = [
    Route("/settings", settings_page, methods=["GET"]),
    Route("/settings", save_details, methods=["POST"]),
    Route("/settings/approval", save_approval_page, methods=["POST"]),
]
