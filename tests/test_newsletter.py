"""Newsletters: tags, create (article and digest), schedule, send with `run`, cancel, leave."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select
from typer.testing import CliRunner

from campaigns.authoring.spec import load_folder
from campaigns.compliance.suppressions import add_suppression, leave_newsletter
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.errors import InputError
from campaigns.planning.confirmations import claim_of, confirm
from campaigns.planning.contacts import retag
from campaigns.planning.enroll import enroll, import_csv
from campaigns.planning.newsletter import cancel_newsletter, schedule_newsletter
from campaigns.planning.signups import Signup
from campaigns.reporting.stats import campaign_stats
from campaigns.storage.tables import confirmations, contacts, deliveries, enrollments
from cli import app
from senders.file import NullSender
from tests.helpers import utc

ZONES = (
    "America/Los_Angeles",
    "America/New_York",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Australia/Sydney",
)
DAY = date(2026, 6, 2)
NOW = utc("2026-06-01T00:00")


def add_members(store, count: int, tags: str | None = ";patients;") -> None:
    """Bulk contacts spread over ZONES (no CSV: the point is the newsletter, not import)."""
    with store.begin() as conn:
        conn.execute(
            insert(contacts),
            [
                {"email": f"p{i}@example.com", "first_name": f"P{i}",
                 "timezone": ZONES[i % len(ZONES)], "consent_source": "form",
                 "consent_at": NOW, "created_at": NOW, "tags": tags}
                for i in range(count)
            ],
        )  # fmt: skip


def newsletter_rows(store, name: str):
    with store.connect() as conn:
        return conn.execute(
            select(deliveries, contacts.c.email, contacts.c.timezone)
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .join(contacts, contacts.c.id == enrollments.c.contact_id)
            .where(enrollments.c.campaign == name)
        ).all()


def run_at(store, instants) -> int:
    dispatcher = Dispatcher(store, lambda _c: NullSender())
    return sum(dispatcher.run(now=at).sent for at in instants)


def test_local_time_gives_every_reader_one_email_at_nine_in_their_zone(store, issue, clinic):
    add_members(store, 10_000)
    with store.begin() as conn:  # one suppressed, one who left the newsletter
        add_suppression(conn, store.address_hash("p1@example.com"), "bounce", now=NOW)
        gone = conn.scalar(select(contacts.c.id).where(contacts.c.email == "p2@example.com"))
        leave_newsletter(conn, gone, now=NOW)
    # p2 is also in a drip campaign: leaving the newsletter leaves that alone.
    enroll(store, clinic, Signup("p2@example.com", "P2", ZONES[2], "2026-06-01T10:00", "form"),
           now=NOW)  # fmt: skip
    plan = schedule_newsletter(store, issue, ["patients"], now=NOW, local_time="09:00", on_date=DAY)
    assert len(plan.due) == 9_998
    assert (plan.skipped_suppressed, plan.skipped_unsubscribed) == (1, 1)
    assert sorted(Counter(plan.zones.values()).keys()) == sorted(ZONES)
    name = load_folder(issue).name
    rows = newsletter_rows(store, name)
    assert len(rows) == 9_998
    assert {r.email for r in rows}.isdisjoint({"p1@example.com", "p2@example.com"})
    # Run at every planned instant (and once more a day later): each goes at its own 09:00.
    instants = sorted({r.due_at for r in rows})
    assert len(instants) >= 8
    sent = run_at(store, [*instants, instants[-1] + timedelta(days=1)])
    rows = newsletter_rows(store, name)
    assert {r.status for r in rows} == {"sent"}
    assert Counter(r.email for r in rows).most_common(1)[0][1] == 1
    for row in rows:
        local = row.sent_at.astimezone(ZoneInfo(row.timezone))
        assert (local.date(), local.time()) == (DAY, time(9, 0))
    assert sent >= 9_998
    # The drip campaign still reaches p2.
    with store.connect() as conn:
        drip = conn.execute(
            select(deliveries.c.status)
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .where(enrollments.c.campaign == clinic.name)
        ).all()
    assert "sent" in {r.status for r in drip}
    stats = campaign_stats(store, name)
    assert stats.as_dict()["total"]["sent"] == 9_998


def test_a_reader_whose_time_has_passed_gets_it_now_not_a_day_late(store, issue):
    add_members(store, 8)
    now = datetime.combine(DAY, time(2, 0), ZoneInfo("UTC"))  # Tokyo 11:00, Sydney 12:00
    plan = schedule_newsletter(store, issue, ["patients"], now=now, local_time="09:00",
                               on_date=DAY)  # fmt: skip
    for contact_id, due in plan.due.items():
        zone = ZoneInfo(plan.zones[contact_id])
        target = datetime.combine(DAY, time(9, 0), zone)
        assert due == max(target, now)
        assert due - target < timedelta(hours=12)


def test_max_per_hour_is_never_exceeded_in_any_clock_hour(store, issue):
    add_members(store, 5_000)
    at = utc("2026-06-02T14:20")
    plan = schedule_newsletter(store, issue, ["patients"], now=NOW, at=at, max_per_hour=2_000)
    assert len(plan.due) == 5_000
    name = load_folder(issue).name
    steps = [at + timedelta(minutes=10 * i) for i in range(30)]
    run_at(store, steps)
    rows = newsletter_rows(store, name)
    assert {r.status for r in rows} == {"sent"}
    per_hour = Counter(r.sent_at.replace(minute=0) for r in rows)
    assert max(per_hour.values()) <= 2_000
    assert sum(per_hour.values()) == 5_000


def test_joining_after_scheduling_or_unsubscribing_before_sending(store, issue):
    add_members(store, 4)
    schedule_newsletter(store, issue, ["patients"], now=NOW, at=utc("2026-06-02T12:00"))
    add_members_late = [{"email": "late@example.com", "timezone": "UTC", "created_at": NOW,
                         "tags": ";patients;"}]  # fmt: skip
    with store.begin() as conn:
        conn.execute(insert(contacts), add_members_late)
        leaver = conn.scalar(select(contacts.c.id).where(contacts.c.email == "p0@example.com"))
        changed, cancelled = leave_newsletter(conn, leaver, now=NOW)
    assert (changed, cancelled) == (True, 1)
    run_at(store, [utc("2026-06-02T12:00")])
    rows = newsletter_rows(store, load_folder(issue).name)
    assert {r.email: r.status for r in rows} == {
        "p0@example.com": "cancelled",
        "p1@example.com": "sent",
        "p2@example.com": "sent",
        "p3@example.com": "sent",
    }
    # Scheduling again plans nobody twice (and the late joiner only now, if asked).
    again = schedule_newsletter(store, issue, ["patients"], now=NOW, at=utc("2026-06-02T12:00"))
    assert again.already == 3 and list(again.due) != []


def test_cancel_stops_what_has_not_gone_out(store, issue):
    add_members(store, 3)
    schedule_newsletter(store, issue, ["patients"], now=NOW, at=utc("2026-06-02T12:00"))
    assert cancel_newsletter(store, issue, now=NOW) == 3
    assert run_at(store, [utc("2026-06-03T12:00")]) == 0


def test_tags_from_import_and_tag_untag(store, clinic, tmp_path):
    csv = tmp_path / "c.csv"
    csv.write_text(
        "email,timezone,consent,tags\na@example.com,UTC,form,Patients; staff\n"
        "b@example.com,UTC,form,bad tag!\n",
        encoding="utf-8",
    )
    report = import_csv(store, clinic, csv, now=NOW)
    assert report.enrolled == 1 and report.rejected == [(3, report.rejected[0][1])]
    assert report.rejected[0][1].startswith("tags:")
    assert retag(store, "a@example.com", add=["vip"], remove=["staff"]) == ["patients", "vip"]
    with pytest.raises(InputError):
        retag(store, "a@example.com", add=["no good"])


@pytest.mark.sqlite_only
def test_dry_run_leaves_the_database_file_byte_identical(store, issue):
    add_members(store, 50)
    path = store.path
    assert path is not None
    store.close()
    before = path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    wal_before = wal.read_bytes() if wal.exists() else None
    result = CliRunner().invoke(
        app,
        ["newsletter", "schedule", str(issue), "--to", "patients", "--local-time", "09:00",
         "--date", DAY.isoformat(), "--dry-run", "--now", "2026-06-01T00:00", "--db", str(path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "would plan 50 emails" in result.output
    assert "Asia/Tokyo" in result.output and "per hour" in result.output
    assert path.read_bytes() == before
    # A reader of a WAL-mode file may leave SQLite's side files, but never a page in them.
    assert (wal.read_bytes() if wal.exists() else b"") == (wal_before or b"")


def test_bad_input_is_one_line_and_exit_2(store, issue, tmp_path):
    db = str(store.path or store.url)
    runner = CliRunner()
    for args in (
        ["--to", "patients", "--local-time", "9am", "--date", "2026-06-02"],
        ["--to", "patients", "--local-time", "09:00", "--date", "June"],
        ["--to", "patients"],
        ["--to", "bad tag!", "--at", "2026-06-02T09:00"],
    ):
        result = runner.invoke(app, ["newsletter", "schedule", str(issue), *args, "--db", db])
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
    assert newsletter_rows(store, load_folder(issue).name) == []


def test_a_digest_fits_a_375px_phone(issue, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.test_studio import CHROMIUM, CHROMIUM_ARGS

    out = tmp_path / "preview"
    assert (
        CliRunner().invoke(app, ["render", str(issue), "--out", str(out), "--sample"]).exit_code
        == 0
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 375, "height": 800})
        page.goto((out / "01-issue.html").as_uri())
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        browser.close()


def test_the_newsletter_only_choice_leaves_newsletters_and_keeps_the_drip(store, clinic, issue):
    from starlette.testclient import TestClient

    from campaigns.rendering.tokens import Signer, UnsubscribeClaim
    from campaigns.web.app import create_app

    report = enroll(
        store, clinic, Signup("p0@example.com", "P", "UTC", "2026-06-01T10:00", "form"), now=NOW
    )
    retag(store, "p0@example.com", add=["patients"])
    schedule_newsletter(store, issue, ["patients"], now=NOW, at=utc("2026-06-05T12:00"))
    with store.connect() as conn:
        contact_id = conn.scalar(select(contacts.c.id))
    name = load_folder(issue).name
    token = Signer(store.secret_key()).token(UnsubscribeClaim(contact_id, name, None))
    with TestClient(create_app(store, environ={}), base_url="https://mail.clinic.test") as client:
        page = client.get(f"/u/{token}")
        # Offered once an issue has gone out (tests/test_unsubscribe_pages.py); a link
        # that asks for it (an older page) still works.
        assert "Stop only the newsletter" not in page.text
        done = client.post(f"/u/{token}", data={"choice": "newsletter"})
        assert done.status_code == 200 and "no more newsletters" in done.text
        assert "You no longer receive the newsletter" in client.get(f"/u/{token}").text
    assert {r.status for r in newsletter_rows(store, name)} == {"cancelled"}
    with store.connect() as conn:
        drip = set(
            conn.scalars(
                select(deliveries.c.status).where(
                    deliveries.c.enrollment_id == report.enrollment_ids[0]
                )
            )
        )
    assert drip == {"scheduled"}


def test_a_sign_up_waiting_for_its_confirmation_gets_no_newsletter(store, issue, clinic, tmp_path):
    # A double opt-in address may be a stranger's, mistyped: until it is confirmed only the
    # confirmation goes to it, not the clinic's newsletter.
    add_members(store, 3)
    csv = tmp_path / "signups.csv"
    csv.write_text(
        "email,timezone,consent,tags\r\nnew1@example.com,UTC,form,patients\r\n"
        "new2@example.com,UTC,form,patients\r\n",
        encoding="utf-8",
    )
    assert import_csv(store, clinic, csv, now=NOW, double=True).pending == 2
    plan = schedule_newsletter(store, issue, ["patients"], now=NOW, at=utc("2026-06-02T12:00"))
    assert len(plan.due) == 3 and plan.skipped_unconfirmed == 2

    with store.connect() as conn:
        first = conn.execute(
            select(confirmations)
            .join(contacts, contacts.c.id == confirmations.c.contact_id)
            .where(contacts.c.email == "new1@example.com")
        ).one()
    confirm(store, claim_of(first), now=NOW)
    again = schedule_newsletter(store, issue, ["patients"], now=NOW, at=utc("2026-06-02T12:00"))
    assert len(again.due) == 1 and again.skipped_unconfirmed == 1 and again.already == 3
