"""The statistics pages (every role): per campaign a funnel per step and sends over time.

Routes: GET /statistics (the published campaigns), GET /statistics/{name} (a chart and
a table of the same numbers for each), GET /statistics/{name}.csv (the per-step counts,
through campaigns.csv_cells, which defuses cells a spreadsheet would run as formulas).
Only counts are shown: no page here carries a patient's address or name.
"""

from __future__ import annotations

import io

from sqlalchemy import select
from starlette.responses import Response
from starlette.routing import Route

from campaigns import csv_cells
from campaigns.console.charts import bar_chart
from campaigns.console.guard import Call, requires
from campaigns.console.permissions import Permission
from campaigns.errors import NotFoundError
from campaigns.reporting.sends_over_time import sends_per_day
from campaigns.reporting.stats import CampaignStats, campaign_stats
from campaigns.storage.publish import is_folder_ref
from campaigns.storage.tables import campaigns

__all__ = ["FUNNEL", "ROUTES"]

FUNNEL = ("sent", "delivered", "opened", "clicked", "unsubscribed", "complaints")


def _stats(call: Call) -> CampaignStats | None:
    name = call.request.path_params["name"]
    if is_folder_ref(name):  # a published name only: never a path on this machine
        return None
    try:
        return campaign_stats(call.store, name)
    except NotFoundError:
        return None


@requires(Permission.VIEW_STATISTICS)
def statistics_home(call: Call) -> Response:
    with call.store.connect() as conn:
        names = [
            row.name for row in conn.execute(select(campaigns.c.name).order_by(campaigns.c.name))
        ]
    return call.render("statistics.html.j2", active="statistics", names=names)


@requires(Permission.VIEW_STATISTICS)
def campaign_statistics(call: Call) -> Response:
    stats = _stats(call)
    if stats is None:
        return call.render("not_found.html.j2", 404)
    total = stats.total
    untracked = set(stats.untracked)
    funnel = [(column, getattr(total, column)) for column in FUNNEL if column not in untracked]
    days = sends_per_day(call.store, stats.campaign)
    return call.render(
        "campaign_statistics.html.j2",
        active="statistics",
        stats=stats,
        columns=[c for c in FUNNEL if c not in untracked],
        untracked=sorted(untracked),
        funnel_chart=bar_chart("funnel", f"{stats.campaign}: funnel, all steps", funnel),
        days=days,
        days_chart=bar_chart(
            "sends", f"{stats.campaign}: emails sent per day (UTC)", [(str(d), n) for d, n in days]
        ),
    )


@requires(Permission.VIEW_STATISTICS)
def campaign_csv(call: Call) -> Response:
    stats = _stats(call)
    if stats is None:
        return call.render("not_found.html.j2", 404)
    out = io.StringIO()
    writer = csv_cells.writer(out)
    untracked = set(stats.untracked)
    writer.writerow(["position", "step", "subject", *FUNNEL])
    for step in stats.steps:
        counts = ["" if column in untracked else getattr(step.counts, column) for column in FUNNEL]
        writer.writerow([step.position or "", step.key, step.subject, *counts])
    writer.writerow(
        ["", "total", "", *("" if c in untracked else getattr(stats.total, c) for c in FUNNEL)]
    )
    return call.finish(
        Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{stats.campaign}-statistics.csv"'
            },
        )
    )


ROUTES = [
    Route("/statistics", statistics_home, methods=["GET"]),
    Route("/statistics/{name}.csv", campaign_csv, methods=["GET"]),
    Route("/statistics/{name}", campaign_statistics, methods=["GET"]),
]
