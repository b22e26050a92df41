"""`dripmail demo`: the whole main job in simulated time, offline, in a folder of its own."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select

from campaigns.authoring.defaults import load_defaults
from campaigns.authoring.folder import write_campaign
from campaigns.authoring.readers import read_article
from campaigns.authoring.spec import load_folder
from campaigns.authoring.split import split_article
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.delivery.report import RunReport
from campaigns.planning import schedule
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.reporting.export import export_campaign
from campaigns.reporting.reports import CalendarEntry, calendar
from campaigns.storage.statuses import DeliveryStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import deliveries
from examples import ARTICLE, DEFAULTS
from senders.file import FileSender

# Three made-up patients, signed up at different local times around the US DST change.
PATIENTS = (
    Signup("ana.demo@example.com", "Ana", "America/New_York", "2026-03-06T20:15"),
    Signup("ben.demo@example.com", "Ben", "Europe/London", "2026-03-07T08:40"),
    Signup("chloe.demo@example.com", "Chloe", "Australia/Sydney", "2026-03-09T13:05"),
)
CONSENT = "demo: made-up patient"


@dataclass(frozen=True)
class DemoResult:
    folder: Path
    campaign_folder: Path
    outbox: Path
    previews: Path
    database: Path
    timeline: list[CalendarEntry]
    runs: int
    report: RunReport


def run_demo(folder: Path, *, on_tick: Callable[[datetime], None] | None = None) -> DemoResult:
    """Split the bundled article, enroll three patients, run time forward, return the timeline."""
    folder = Path(folder)
    campaign_folder, outbox = folder / "campaign", folder / "outbox"
    previews, database = folder / "previews", folder / "demo.db"
    for stale in (outbox, previews):
        shutil.rmtree(stale, ignore_errors=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)

    article = read_article(ARTICLE)
    write_campaign(
        article,
        split_article(article),
        campaign_folder,
        defaults=load_defaults(DEFAULTS),
        force=True,
    )
    campaign = load_folder(campaign_folder)
    export_campaign(campaign, previews)

    store = Store(f"sqlite:///{database}")
    tz = schedule.zone(campaign.spec.timezone)
    start = min(
        schedule.parse_instant(str(p.signed_up_at), schedule.zone(p.timezone or "UTC"))
        for p in PATIENTS
    )
    for patient in PATIENTS:
        enroll(store, campaign, patient_with_consent(patient), now=start)

    dispatcher = Dispatcher(store, _outbox_sender(outbox), batch_size=50)
    total = RunReport()
    runs = 0
    while (now := _next_due(store)) is not None:
        if on_tick:
            on_tick(now.astimezone(tz))
        report = dispatcher.run(now=now)
        runs += 1
        total.add(report)
    timeline = sorted(calendar(store, campaign), key=lambda e: e.sent_at or e.due_at)
    store.close()
    return DemoResult(folder, campaign_folder, outbox, previews, database, timeline, runs, total)


def patient_with_consent(patient: Signup) -> Signup:
    return Signup(
        patient.email, patient.first_name, patient.timezone, patient.signed_up_at, CONSENT
    )


def _outbox_sender(outbox: Path):
    sender = FileSender(outbox)
    return lambda _campaign: sender


def _next_due(store: Store) -> datetime | None:
    with store.connect() as conn:
        return conn.scalar(
            select(func.min(deliveries.c.due_at)).where(
                deliveries.c.status == DeliveryStatus.SCHEDULED
            )
        )
