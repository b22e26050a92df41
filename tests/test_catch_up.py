"""Late runs, back-dated and repeated sign-ups: one email per opening, in order, no burst."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import insert, select

from campaigns.planning import schedule
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.storage.statuses import EnrollmentStatus
from campaigns.storage.tables import deliveries, enrollments, suppressions
from tests.helpers import utc
from tests.schedule_helpers import bulk_signups, deliveries_by_contact, tick, with_window

NAME = "ketamine-and-sleep"
START = utc("2026-03-01T00:00")


def test_a_dispatcher_stopped_for_five_days_catches_up_one_per_opening(
    store, clinic_folder, tmp_path
):
    campaign = with_window(clinic_folder, 'send_window:\n  start: "09:00"\n  end: "17:00"\n')
    bulk_signups(store, campaign, tmp_path, 60, START, timedelta(minutes=37), now=START)
    tick(store, START, START + timedelta(days=1), step=timedelta(hours=2))
    # The worker is down for five days, then comes back and runs every two hours.
    back = START + timedelta(days=6)
    tick(store, back, back + timedelta(days=25), step=timedelta(hours=2))
    window = campaign.window
    for rows in deliveries_by_contact(store, NAME).values():
        assert [r.status for r in rows] == ["sent"] * 6, "an overdue step was lost"
        tz = schedule.zone(rows[0].timezone)
        in_time = sorted(rows, key=lambda r: r.sent_at)
        assert [r.position for r in in_time] == list(range(1, 7)), "out of order"
        openings = Counter(schedule.opening_containing(r.sent_at, window, tz) for r in rows)
        assert None not in openings and max(openings.values()) == 1


def test_a_back_dated_signup_catches_up_one_per_opening(store, clinic):
    now = utc("2026-03-20T15:00")  # 11:00 EDT in New York; every step is overdue
    signup = Signup("late@example.com", "Lee", "America/New_York", "2026-03-01T10:00", "form")
    enroll(store, clinic, signup, now=now)
    tick(store, now, now + timedelta(days=10), step=timedelta(hours=1))
    with store.connect() as conn:
        sent = list(conn.scalars(select(deliveries.c.sent_at).order_by(deliveries.c.position)))
    # Today at once, then one a day as the window opens at 09:00 EDT (13:00 UTC).
    assert sent == [now] + [utc(f"2026-03-{day}T13:00") for day in (21, 22, 23, 24, 25)]


def test_repeat_signup_is_ignored_restart_replans_and_force_lifts_suppression(store, clinic):
    now = utc("2026-03-02T12:00")
    first = Signup("pat@example.com", "Pat", "America/New_York", "2026-03-02T10:00", "form")
    assert enroll(store, clinic, first, now=now).enrolled == 1
    again = enroll(store, clinic, first, now=now)
    assert (again.enrolled, again.already) == (0, 1)

    later = Signup("pat@example.com", "Pat", "America/New_York", "2026-04-06T10:00", "form")
    restarted = enroll(store, clinic, later, now=utc("2026-04-06T15:00"), restart=True)
    assert restarted.restarted == 1
    with store.connect() as conn:
        rows = conn.execute(select(deliveries).order_by(deliveries.c.position)).all()
        signed = conn.scalar(select(enrollments.c.signed_up_at))
    assert len(rows) == 6 and all(r.status == "scheduled" for r in rows)
    assert signed == utc("2026-04-06T14:00")
    assert rows[0].due_at == utc("2026-04-06T14:00")  # 10:00 EDT, planned from the new sign-up

    with store.begin() as conn:
        conn.execute(enrollments.update().values(status=EnrollmentStatus.UNSUBSCRIBED))
    assert enroll(store, clinic, later, now=now, restart=True).unsubscribed == 1
    assert enroll(store, clinic, later, now=now, force=True).restarted == 1

    other = Signup("gone@example.com", "G", "Europe/London", None, "form")
    with store.begin() as conn:
        conn.execute(
            insert(suppressions).values(
                address_hash=store.address_hash("gone@example.com"), reason="bounce", created_at=now
            )
        )
    assert enroll(store, clinic, other, now=now).suppressed == 1
    assert enroll(store, clinic, other, now=now, force=True).enrolled == 1
    with store.connect() as conn:
        assert conn.scalar(select(suppressions.c.address_hash)) is None


def test_enroll_cli_restart_and_force_flags(store, clinic_folder):
    from typer.testing import CliRunner

    from cli import app

    args = [
        "enroll",
        str(clinic_folder),
        "--email",
        "pat@example.com",
        "--db",
        store.url,
        "--now",
        "2026-03-02T12:00",
    ]
    runner = CliRunner()
    assert "enrolled contact" in runner.invoke(app, args).output
    assert "already enrolled" in runner.invoke(app, args).output
    result = runner.invoke(app, [*args, "--restart", "--signed-up-at", "2026-03-09T10:00"])
    assert result.exit_code == 0 and "restarted the sequence" in result.output
