"""The dashboard (every campaign's state and counts) and the audit trail page (admins).

Routes: GET / (the campaigns, read-only), GET /audit (the newest 500 entries, newest first).
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from campaigns.console.campaign_list import campaign_rows
from campaigns.console.guard import Call, requires
from campaigns.console.permissions import Permission
from campaigns.console.workspace import workspace_root
from campaigns.storage import audit

__all__ = ["ROUTES"]

AUDIT_SHOWN = 500


@requires(Permission.VIEW_DASHBOARD)
def dashboard(call: Call) -> Response:
    # Every campaign: workspace drafts, reviews, published ones, alerts (campaign_list).
    rows = campaign_rows(call.store, workspace_root(call.console.settings), now=call.now)
    return call.render("campaigns.html.j2", active="dashboard", campaigns=rows)


@requires(Permission.VIEW_AUDIT)
def audit_trail(call: Call) -> Response:
    shown = audit.entries(call.store, limit=AUDIT_SHOWN)
    shown.reverse()
    return call.render("audit.html.j2", active="audit", entries=shown, limit=AUDIT_SHOWN)


ROUTES = [
    Route("/", dashboard, methods=["GET"]),
    Route("/audit", audit_trail, methods=["GET"]),
]
