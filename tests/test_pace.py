"""A patient's own pace, honoured by the engine (issue 18, point 2): "fewer emails" keeps
a week between their emails across campaigns, and a pause holds everything until it ends,
after which nothing is flooded. Real store (a SQLite file, and PostgreSQL), real
enrollment, the dispatcher walked forward with `now=`; what is checked is each email's
`sent_at`, as the patient's inbox would show it."""

from __future__ import annotations

import itertools
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

import cli
from campaigns.authoring.spec import Campaign, load_folder
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.planning import schedule
from campaigns.planning.edits import apply_edit
from campaigns.planning.enroll import enroll
from campaigns.planning.pause import pause, resume
from campaigns.planning.plans import plan
from campaigns.planning.signups import Signup
from campaigns.storage.tables import contacts, deliveries, enrollments
from senders.file import NullSender
from tests.conftest import write_clinic_campaign
from tests.helpers import utc

ZONE = "Europe/London"
START = utc("2026-03-02T10:00")  # Monday, inside the 09:00-17:00 window in London
TICK = timedelta(hours=4)  # a worker's tick: every window opening sees two or more
NAMES = ("ketamine-and-sleep", "sleep-tips", "rest-and-recovery")


@pytest.fixture
def three(tmp_path: Path) -> list[Campaign]:
    """Three six-step drip campaigns (0d, 2d, 4d, 7d, 10d, 14d), each min_gap 0."""
    first = write_clinic_campaign(tmp_path / NAMES[0])
    found = [load_folder(first)]
    for name in NAMES[1:]:
        folder = tmp_path / name
        shutil.copytree(first, folder)
        spec = folder / "campaign.yaml"
        spec.write_text(spec.read_text().replace(f"name: {NAMES[0]}", f"name: {name}", 1))
        found.append(load_folder(folder))
    return found


def sign_up(store, campaign: Campaign, address: str, at: datetime) -> None:
    report = enroll(store, campaign, Signup(address, "Pat", ZONE, at, "clinic form"), now=at)
    assert report.enrolled == 1


def choose(store, address: str, **pace) -> None:
    """What the preference centre writes when the patient chooses (prefs' pages)."""
    with store.begin() as conn:
        conn.execute(update(contacts).where(contacts.c.email == address).values(**pace))


def walk(store, start: datetime, end: datetime) -> None:
    """A worker ticking every TICK of engine time from `start` to `end`."""
    dispatcher = Dispatcher(store, lambda _c: NullSender())
    at = start
    while at <= end:
        dispatcher.run(now=at)
        at += TICK


def emails_of(store, address: str) -> list:
    """Every delivery of the contact, across campaigns: (campaign, step, status, due, sent)."""
    with store.connect() as conn:
        return conn.execute(
            select(
                enrollments.c.campaign,
                deliveries.c.step_key,
                deliveries.c.status,
                deliveries.c.due_at,
                deliveries.c.sent_at,
            )
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .join(contacts, contacts.c.id == enrollments.c.contact_id)
            .where(contacts.c.email == address)
            .order_by(deliveries.c.sent_at, deliveries.c.due_at)
        ).all()


def sent_times(rows) -> list[datetime]:
    return sorted(r.sent_at for r in rows if r.status == "sent")


def test_fewer_emails_keeps_a_week_between_emails_across_campaigns(store, three):
    """Two patients in the same three campaigns; one chose "fewer emails" after the first
    two sign-ups. Over two simulated months hers are a week apart or more, none is
    dropped or sent early; the other patient gets the campaigns' own timing."""
    sleep, tips, rest = three
    for address in ("fewer@example.com", "usual@example.com"):
        sign_up(store, sleep, address, START)
        sign_up(store, tips, address, START + timedelta(days=1))
    chosen_at = START + timedelta(days=2)
    walk(store, START, chosen_at)
    choose(store, "fewer@example.com", min_gap_days=7)
    third = START + timedelta(days=3)
    for address in ("fewer@example.com", "usual@example.com"):
        sign_up(store, rest, address, third)  # planned with her gap already
    end = START + timedelta(days=61)
    walk(store, chosen_at + TICK, end)

    fewer = emails_of(store, "fewer@example.com")
    sent = sent_times(fewer)
    # Before she chose: the campaigns' timing (three emails in three days); from then
    # on, each email a week or more after the one before, whatever its campaign.
    since = [at for at in sent if at > chosen_at]
    assert len(sent) - len(since) == 3
    assert len(since) >= 7  # about one a week for the rest of two months
    gaps = [b - a for a, b in itertools.pairwise(sent[len(sent) - len(since) - 1 :])]
    assert min(gaps) >= timedelta(days=7)
    assert max(gaps) < timedelta(days=8)  # held by the gap, not by more than a day
    # Nothing dropped, nothing skipped: what has not gone yet waits, a week after the last.
    assert {r.status for r in fewer} <= {"sent", "scheduled"}
    waiting = sorted(r.due_at for r in fewer if r.status == "scheduled")
    assert len(sent) + len(waiting) == 18
    assert waiting[0] >= sent[-1] + timedelta(days=7)
    for name in NAMES:  # a campaign's own pending steps are planned a week apart too
        due = sorted(r.due_at for r in fewer if r.campaign == name and r.status == "scheduled")
        assert all(b - a >= timedelta(days=7) for a, b in itertools.pairwise(due))
    # Each campaign's own steps keep their order.
    for name in NAMES:
        keys = [r.step_key for r in fewer if r.campaign == name and r.status == "sent"]
        assert keys == [s.key for s in sleep.steps][: len(keys)]

    # The other patient: every email, at each campaign's own planned time (the first
    # tick at or after it), several in one week.
    usual = emails_of(store, "usual@example.com")
    assert [r.status for r in usual] == ["sent"] * 18
    for campaign, signed_up in ((sleep, START), (tips, START + timedelta(days=1)), (rest, third)):
        planned = plan(campaign, signed_up, ZONE)
        went = sorted(r.sent_at for r in usual if r.campaign == campaign.name)
        assert all(timedelta(0) <= s - p < TICK for s, p in zip(went, planned, strict=True)), (
            campaign.name
        )
    assert min(b - a for a, b in itertools.pairwise(sent_times(usual))) < timedelta(days=7)


def test_a_pause_holds_everything_until_it_ends_then_one_email_per_opening(store, three):
    """A patient in two campaigns pauses for a month after her first emails; she also
    signs up to a third while paused. Nothing reaches her during the pause; after it,
    the backlog of all three comes one email per window opening, and all of it comes."""
    sleep, tips, rest = three
    address = "paused@example.com"
    sign_up(store, sleep, address, START)
    sign_up(store, tips, address, START)
    walk(store, START, START + timedelta(hours=20))
    paused_at = START + timedelta(days=1)
    until = paused_at + timedelta(days=30)
    choose(store, address, paused_until=until)
    sign_up(store, rest, address, START + timedelta(days=5))  # planned from the pause's end
    walk(store, paused_at, START + timedelta(days=61))

    rows = emails_of(store, address)
    sent = sent_times(rows)
    assert [r.status for r in rows] == ["sent"] * 18  # nothing lost
    before = [at for at in sent if at < paused_at]
    assert len(before) == 2  # both welcomes went before she paused
    assert not [at for at in sent if paused_at <= at < until]
    after = [at for at in sent if at >= until]
    assert len(after) == 16
    # One email per window opening across all three campaigns (they share the window).
    tz = schedule.zone(ZONE)
    openings = [schedule.opening_containing(at, sleep.window, tz) for at in after]
    assert None not in openings
    assert len(set(openings)) == len(openings)
    # And without delay: the backlog starts in the first opening at or after the pause.
    assert after[0] - until < TICK


def test_schedule_for_one_patient_says_why_her_emails_wait(store, three):
    """`dripmail schedule CAMPAIGN --email` names the patient's own choice in the note."""
    sleep = three[0]
    sign_up(store, sleep, "pat@example.com", START)
    walk(store, START, START)  # the welcome goes
    choose(store, "pat@example.com", paused_until=utc("2026-04-01T10:00"), min_gap_days=7)
    walk(store, START + TICK, START + timedelta(days=3))

    args = ["schedule", sleep.name, "--email", "pat@example.com", "--db", store.url]
    result = CliRunner().invoke(
        cli.app, [*args, "--now", "2026-03-05T10:00Z"], env={"COLUMNS": "250"}
    )

    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "scheduled" in line]
    assert len(lines) == 5  # the welcome went before she paused; the rest wait
    assert all("paused by the patient until 2026-04-01 10:00 UTC" in line for line in lines)
    assert all("fewer emails: 7 days between emails" in line for line in lines)
    sent = [line for line in result.output.splitlines() if " sent " in line]
    assert len(sent) == 1 and "paused" not in sent[0]


def test_a_campaign_resumed_during_a_patients_pause_keeps_hers_past_it(store, three):
    """Staff pause and resume the campaign while the patient's own pause runs: resuming
    moves her pending emails past her pause, a week apart (her choice), not to now."""
    sleep = three[0]
    sign_up(store, sleep, "pat@example.com", START)
    until = utc("2026-04-01T10:00")
    choose(store, "pat@example.com", paused_until=until, min_gap_days=7)
    pause(store, sleep.name, now=START + timedelta(hours=1))
    resume(store, sleep.name, now=START + timedelta(days=3))

    waiting = sorted(r.due_at for r in emails_of(store, "pat@example.com"))
    assert len(waiting) == 6 and waiting[0] == until
    assert all(b - a >= timedelta(days=7) for a, b in itertools.pairwise(waiting))


def test_a_live_edit_during_a_patients_pause_keeps_hers_past_it(store, three):
    """Staff change a step's delay (`plan --apply`) while the patient is paused: her
    re-planned emails stay past her pause and a week apart."""
    sleep = three[0]
    sign_up(store, sleep, "pat@example.com", START)
    until = utc("2026-04-01T10:00")
    choose(store, "pat@example.com", paused_until=until, min_gap_days=7)
    spec = Path(sleep.origin) / "campaign.yaml"
    spec.write_text(spec.read_text().replace("delay: 4d", "delay: 5d", 1))

    applied = apply_edit(store, sleep.origin, now=START + timedelta(days=1))

    assert applied.applied and sum(applied.replanned.values()) == 1
    due = {r.step_key: r.due_at for r in emails_of(store, "pat@example.com")}
    # From the edited step on (what the edit re-plans): past her pause, a week apart.
    # Earlier steps keep their rows; the dispatcher moves them past the pause when due.
    replanned = [due[step.key] for step in sleep.steps[2:]]
    assert replanned[0] >= until
    assert all(b - a >= timedelta(days=7) for a, b in itertools.pairwise(replanned))


def test_status_for_one_patient_lists_her_emails_in_every_campaign_and_why(store, three):
    """`dripmail status --email` crosses campaigns, where her own gap applies."""
    sleep, tips, _ = three
    sign_up(store, sleep, "pat@example.com", START)
    sign_up(store, tips, "pat@example.com", START)
    choose(store, "pat@example.com", min_gap_days=7)
    walk(store, START, START + timedelta(days=1))

    args = ["status", "--email", "Pat@Example.com", "--db", store.url]
    result = CliRunner().invoke(cli.app, [*args, "--now", "2026-03-03T10:00Z"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1:4] == [
        "pat@example.com: fewer emails: 7 days between emails",
        "  last email 2026-03-02 10:00 UTC",  # one welcome went; the other waits a week
        "  next email not before 2026-03-09 10:00 UTC",
    ]
    waiting = lines[4:]
    assert len(waiting) == 11
    assert f"  {tips.name} #1 scheduled, due 2026-03-09 10:00 UTC" in waiting
    assert {line.split()[0] for line in waiting} == {sleep.name, tips.name}

    unknown = CliRunner().invoke(cli.app, ["status", "--email", "nobody@example.com", *args[3:]])
    assert unknown.exit_code == 2 and "no contact has that address" in unknown.output
