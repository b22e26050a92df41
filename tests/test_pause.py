"""Pause and resume: held emails wait, then go later by the pause, one per opening."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from typer.testing import CliRunner

from campaigns.delivery.dispatcher import Dispatcher
from campaigns.planning import schedule
from campaigns.planning.pause import pause, resume
from cli import app
from senders.file import NullSender
from tests.helpers import utc
from tests.schedule_helpers import GONE, bulk_signups, deliveries_by_contact, tick, with_window

NAME = "ketamine-and-sleep"
START = utc("2026-03-01T00:00")
PAUSED = utc("2026-03-05T00:00")
RESUMED = PAUSED + timedelta(days=10)


def test_pause_ten_days_then_resume_no_backlog(store, clinic_folder, tmp_path):
    campaign = with_window(clinic_folder, 'send_window:\n  start: "09:00"\n  end: "17:00"\n')
    bulk_signups(store, campaign, tmp_path, 120, START, timedelta(hours=1), now=START)
    tick(store, START, PAUSED - timedelta(hours=1), step=timedelta(hours=4))
    held_before = {
        r.id: r.due_at
        for rows in deliveries_by_contact(store, NAME).values()
        for r in rows
        if r.status == "scheduled"
    }
    report = pause(store, NAME, now=PAUSED)
    assert report.changed and report.held == len(held_before)
    # Ten days of a worker running: nothing goes.
    tick(store, PAUSED, RESUMED - timedelta(hours=1), step=timedelta(hours=6))
    during = deliveries_by_contact(store, NAME)
    assert not any(
        r.status in GONE and r.sent_at >= PAUSED for rows in during.values() for r in rows
    )

    report = resume(store, NAME, now=RESUMED)
    assert report.changed and report.paused_for == timedelta(days=10)
    assert report.held == len(held_before)
    after = deliveries_by_contact(store, NAME)
    for rows in after.values():
        pending = [r for r in rows if r.status == "scheduled"]
        for r in pending:
            # Later by the pause at least (keeping gaps), never before the resume.
            assert r.due_at >= held_before[r.id] + timedelta(days=10)
            assert r.due_at >= RESUMED
        assert [r.due_at for r in pending] == sorted(r.due_at for r in pending)

    tick(store, RESUMED, RESUMED + timedelta(days=20), step=timedelta(hours=2))
    final = deliveries_by_contact(store, NAME)
    window = campaign.window
    for rows in final.values():
        assert all(r.status == "sent" for r in rows)
        tz = schedule.zone(rows[0].timezone)
        openings = Counter(
            schedule.opening_containing(r.sent_at, window, tz) for r in rows if r.sent_at >= RESUMED
        )
        assert None not in openings
        assert max(openings.values(), default=1) == 1, "two emails in one window opening"


def test_pause_one_contact_from_the_command_line(store, clinic_folder, tmp_path):
    campaign = with_window(clinic_folder, 'send_window:\n  start: "09:00"\n  end: "17:00"\n')
    bulk_signups(store, campaign, tmp_path, 2, START, timedelta(hours=1), now=START)
    runner = CliRunner()
    paused = runner.invoke(
        app,
        [
            "pause",
            NAME,
            "--email",
            "p0@example.com",
            "--now",
            "2026-03-01T00:00",
            "--db",
            store.url,
        ],
    )
    assert paused.exit_code == 0 and "6 pending emails held" in paused.output
    again = runner.invoke(app, ["pause", NAME, "--email", "p0@example.com", "--db", store.url])
    assert "already paused; nothing changed" in again.output
    Dispatcher(store, lambda _c: NullSender()).run(now=utc("2026-03-01T12:00"))
    rows = deliveries_by_contact(store, NAME)
    statuses = sorted(tuple(x.status for x in contact_rows) for contact_rows in rows.values())
    assert statuses[0][0] == "scheduled" and statuses[1][0] == "sent"  # only p0 held
    resumed = runner.invoke(
        app,
        [
            "resume",
            NAME,
            "--email",
            "p0@example.com",
            "--now",
            "2026-03-03T00:00",
            "--db",
            store.url,
        ],
    )
    assert resumed.exit_code == 0 and "resumed the contact after 2 days" in resumed.output
    unknown = runner.invoke(app, ["pause", "no-such-campaign", "--db", store.url])
    assert unknown.exit_code == 2 and "no published campaign" in unknown.output
