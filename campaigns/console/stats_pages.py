"""The statistics pages (every role): per campaign a funnel per step and sends over time.

Routes: GET /statistics (the published campaigns), GET /statistics/{name} (a chart and
a table of the same numbers for each), GET /statistics/{name}.csv (the per-step counts,
through campaigns.csv_cells, which defuses cells a spreadsheet would run as formulas).
Only counts are shown: no page here carries a patient's address or name.

The counts of a campaign are computed from indexed queries (migration 0020) and kept as
a snapshot for SNAPSHOT_AGE of the console's clock, so a page opened again and again (or
by several people) reads the database once a minute, not once a request; the page says
what time its counts are from. One snapshot per campaign (with its drawn charts, ~100 KB
for a year of days): a newly published version replaces it, so live edits add none.
"""

from __future__ import annotations

import io
import threading
import weakref
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from markupsafe import Markup
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
from campaigns.storage.store import Store
from campaigns.storage.tables import campaigns

__all__ = ["FUNNEL", "ROUTES", "SNAPSHOT_AGE"]

FUNNEL = ("sent", "delivered", "opened", "clicked", "unsubscribed", "complaints")
SNAPSHOT_AGE = timedelta(seconds=60)


@dataclass(frozen=True)
class Snapshot:
    """A campaign's counts as read at `taken`, from its published `version`."""

    version: str
    stats: CampaignStats
    days: list[tuple[date, int]]
    taken: datetime
    funnel_chart: Markup  # drawn once per snapshot: a year of days is a few ms to draw
    days_chart: Markup


# Per store (one console app), per campaign name; dropped with the store.
_snapshots: weakref.WeakKeyDictionary[Store, dict[str, Snapshot]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _snapshot(call: Call) -> Snapshot | None:
    name = call.request.path_params["name"]
    if is_folder_ref(name):  # a published name only: never a path on this machine
        return None
    with call.store.connect() as conn:
        version = conn.scalar(select(campaigns.c.version).where(campaigns.c.name == name))
    if version is None:
        return None
    with _lock:
        held = _snapshots.setdefault(call.store, {}).get(name)
    if (
        held is not None
        and held.version == version
        and timedelta(0) <= call.now - held.taken < SNAPSHOT_AGE
    ):
        return held
    try:
        stats = campaign_stats(call.store, name)
    except NotFoundError:
        return None
    days = sends_per_day(call.store, stats.campaign)
    untracked = set(stats.untracked)
    funnel = [(c, getattr(stats.total, c)) for c in FUNNEL if c not in untracked]
    made = Snapshot(
        version,
        stats,
        days,
        call.now,
        bar_chart("funnel", f"{stats.campaign}: funnel, all steps", funnel),
        bar_chart(
            "sends", f"{stats.campaign}: emails sent per day (UTC)", [(str(d), n) for d, n in days]
        ),
    )
    with _lock:
        _snapshots.setdefault(call.store, {})[name] = made  # replaces another version's
    return made


@requires(Permission.VIEW_STATISTICS)
def statistics_home(call: Call) -> Response:
    with call.store.connect() as conn:
        names = [
            row.name for row in conn.execute(select(campaigns.c.name).order_by(campaigns.c.name))
        ]
    return call.render("statistics.html.j2", active="statistics", names=names)


@requires(Permission.VIEW_STATISTICS)
def campaign_statistics(call: Call) -> Response:
    snapshot = _snapshot(call)
    if snapshot is None:
        return call.render("not_found.html.j2", 404)
    stats, days = snapshot.stats, snapshot.days
    untracked = set(stats.untracked)
    return call.render(
        "campaign_statistics.html.j2",
        active="statistics",
        stats=stats,
        columns=[c for c in FUNNEL if c not in untracked],
        untracked=sorted(untracked),
        taken=snapshot.taken,
        funnel_chart=snapshot.funnel_chart,
        days=days,
        days_chart=snapshot.days_chart,
    )


@requires(Permission.VIEW_STATISTICS)
def campaign_csv(call: Call) -> Response:
    snapshot = _snapshot(call)
    if snapshot is None:
        return call.render("not_found.html.j2", 404)
    stats = snapshot.stats
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
