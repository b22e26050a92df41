"""Enrollment, publishing and dispatch on a real SQLite file, with the file sender."""

from __future__ import annotations

import email
import email.policy
import itertools
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from campaigns.authoring.spec import load_folder
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.delivery.sender_pool import SenderPool
from campaigns.errors import InputError
from campaigns.planning import enroll as enrollment
from campaigns.planning import schedule
from campaigns.planning.enroll import enroll, import_csv
from campaigns.planning.plans import plan
from campaigns.planning.signups import Signup
from campaigns.reporting.reports import status_counts
from campaigns.storage.publish import open_campaign
from campaigns.storage.store import bulk_insert
from campaigns.storage.tables import contacts, deliveries, enrollments, suppressions
from senders.base import Message, Sender, SenderConfigurationError
from senders.file import FileSender
from tests.helpers import utc

CONSENT = "clinic sign-up form"


def signup(email_address="pat@example.com", zone="America/New_York", at="2026-03-02T10:00"):
    return Signup(email_address, "Pat", zone, at, CONSENT)


def outbox_dispatcher(store, outbox: Path) -> Dispatcher:
    sender = FileSender(outbox)
    return Dispatcher(store, lambda _campaign: sender)


def rows(store):
    with store.connect() as conn:
        return conn.execute(select(deliveries).order_by(deliveries.c.position)).all()


def drain(store, dispatcher, until) -> list:
    """Run at every due time up to `until`, as a worker ticking at each due row would."""
    reports = []
    while True:
        pending = [r.due_at for r in rows(store) if r.status == "scheduled"]
        if not pending or min(pending) > until:
            return reports
        reports.append(dispatcher.run(now=min(pending)))


def test_enroll_plans_every_step_inside_the_contacts_window(store, clinic):
    enroll(
        store,
        clinic,
        signup(zone="Australia/Sydney", at="2026-03-06T22:30"),
        now=utc("2026-03-06T12:00"),
    )
    planned = rows(store)
    assert [r.step_key for r in planned] == [s.key for s in clinic.steps]
    tz = schedule.zone("Australia/Sydney")
    for row in planned:
        assert schedule.opening_containing(row.due_at, clinic.window, tz) is not None
        assert row.status == "scheduled"
    assert planned[0].due_at.astimezone(tz).isoformat() == "2026-03-07T09:00:00+11:00"


def test_run_sends_once_at_the_same_now_and_needs_no_folder(store, clinic_folder, tmp_path):
    campaign = load_folder(clinic_folder)
    enroll(store, campaign, signup(), now=utc("2026-03-02T12:00"))
    shutil.move(clinic_folder, tmp_path / "moved-away")
    outbox = tmp_path / "outbox"
    dispatcher = outbox_dispatcher(store, outbox)
    first = dispatcher.run(now=utc("2026-03-02T15:00"))
    again = dispatcher.run(now=utc("2026-03-02T15:00"))
    assert (first.sent, again.sent) == (1, 0)
    assert len(list(outbox.glob("*.eml"))) == 1
    assert status_counts(store)["ketamine-and-sleep"]["sent"] == 1


def test_a_full_sequence_goes_out_in_order_one_per_opening(store, clinic, tmp_path):
    enroll(store, clinic, signup(), now=utc("2026-03-02T12:00"))
    drain(store, outbox_dispatcher(store, tmp_path / "outbox"), until=utc("2026-04-30T00:00"))
    sent = rows(store)
    assert all(r.status == "sent" for r in sent)
    assert [r.position for r in sorted(sent, key=lambda r: r.sent_at)] == list(range(1, 7))
    emls = sorted((tmp_path / "outbox").glob("*.eml"))
    parsed = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in emls]
    assert [m["Subject"] for m in parsed] == [s.subject for s in clinic.steps]


def test_a_back_dated_signup_catches_up_one_email_per_opening(store, clinic, tmp_path):
    # Signed up three weeks ago: every step is overdue at once.
    enroll(store, clinic, signup(at="2026-02-09T10:00"), now=utc("2026-03-02T12:00"))
    dispatcher = outbox_dispatcher(store, tmp_path / "outbox")
    report = dispatcher.run(now=utc("2026-03-02T15:00"))
    assert report.sent == 1
    drain(store, dispatcher, until=utc("2026-04-30T00:00"))
    tz = schedule.zone("America/New_York")
    sent = sorted(rows(store), key=lambda r: r.sent_at)
    assert [r.position for r in sent] == list(range(1, 7))
    days = [r.sent_at.astimezone(tz).date() for r in sent]
    assert len(set(days)) == 6, "two emails of one campaign went out in the same opening"


def test_a_late_run_outside_the_window_waits_for_the_next_opening(store, clinic, tmp_path):
    enroll(store, clinic, signup(), now=utc("2026-03-02T12:00"))
    dispatcher = outbox_dispatcher(store, tmp_path / "outbox")
    # 23:30 in New York: the first email is overdue but the window is shut.
    report = dispatcher.run(now=utc("2026-03-03T04:30"))
    assert report.sent == 0
    assert rows(store)[0].due_at == utc("2026-03-03T14:00")


def test_suppressed_contacts_get_nothing(store, clinic, tmp_path):
    enroll(store, clinic, signup(), now=utc("2026-03-02T12:00"))
    with store.begin() as conn:
        conn.execute(
            insert(suppressions).values(
                address_hash=store.address_hash("PAT@example.com"),
                reason="unsubscribe",
                created_at=utc("2026-03-02T12:30"),
            )
        )
    report = outbox_dispatcher(store, tmp_path / "outbox").run(now=utc("2026-03-02T15:00"))
    assert (report.sent, report.skipped) == (0, 1)
    assert not (tmp_path / "outbox").exists()


def test_placeholders_are_refused_at_publish_and_keep_only_their_campaign_back(
    store, clinic, tmp_path, monkeypatch
):
    from campaigns.authoring.folder import write_campaign
    from campaigns.authoring.readers import read_article
    from campaigns.authoring.split import split_article
    from campaigns.storage import publish
    from examples import ARTICLE

    article = read_article(ARTICLE)
    write_campaign(article, split_article(article), tmp_path / "draft", name="draft")
    draft = load_folder(tmp_path / "draft")
    with pytest.raises(InputError) as caught:
        enroll(store, draft, signup("bo@example.com"), now=utc("2026-03-02T12:00"))
    lines = str(caught.value).splitlines()
    assert len(lines) == 4 and all("still a placeholder" in line for line in lines)
    assert rows(store) == []
    # A database from before the refusal: the draft was published and enrolled into.
    with monkeypatch.context() as patched:
        patched.setattr(publish, "check_publishable", lambda _conn, _campaign: None, raising=False)
        enroll(store, draft, signup("bo@example.com"), now=utc("2026-03-02T12:00"))
    enroll(store, clinic, signup(), now=utc("2026-03-02T12:00"))
    report = outbox_dispatcher(store, tmp_path / "outbox").run(now=utc("2026-03-02T15:00"))
    assert report.sent == 1 and report.by_campaign == {clinic.name: 1}
    held = report.held["draft"]
    assert held.waiting == 1 and "from.address" in held.problem
    assert f"dripmail plan {(tmp_path / 'draft').resolve()} --apply" in held.line()
    with store.connect() as conn:
        waiting = conn.execute(
            select(deliveries.c.status, deliveries.c.attempts)
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .where(enrollments.c.campaign == "draft")
        ).all()
    assert set(waiting) == {("scheduled", 0)}


class RefusingSender(Sender):
    name = "refusing"
    batch_limit = 1

    def send(self, messages: list[Message]):
        raise SenderConfigurationError("the API key was refused")

    def close(self):
        pass


def test_a_refused_configuration_marks_nothing(store, clinic):
    enroll(store, clinic, signup(), now=utc("2026-03-02T12:00"))
    dispatcher = Dispatcher(store, lambda _c: RefusingSender())
    with pytest.raises(SenderConfigurationError):
        dispatcher.run(now=utc("2026-03-02T15:00"))
    assert [(r.status, r.attempts) for r in rows(store)] == [("scheduled", 0)] * 6


def test_unknown_sender_fails_before_anything_is_claimed(store, clinic):
    enroll(store, clinic, signup(), now=utc("2026-03-02T12:00"))
    with pytest.raises(SenderConfigurationError, match="unknown sender 'pigeon'"):
        SenderPool("pigeon").check(store)


def test_enroll_rejects_bad_fields_and_changes_nothing(store, clinic):
    for bad, field_name in (
        (Signup("not-an-address", consent=CONSENT), "email"),
        (Signup("pat@example.com", timezone="Mars/Base", consent=CONSENT), "timezone"),
        (Signup("pat@example.com", signed_up_at="last tuesday", consent=CONSENT), "signed_up_at"),
        (Signup("pat@example.com"), "consent"),
    ):
        with pytest.raises(InputError) as caught:
            enroll(store, clinic, bad, now=utc("2026-03-02T12:00"))
        assert caught.value.field == field_name
    assert rows(store) == []


def test_repeat_signup_is_ignored(store, clinic):
    enroll(store, clinic, signup(), now=utc("2026-03-02T12:00"))
    report = enroll(store, clinic, signup("Pat@Example.com"), now=utc("2026-03-03T12:00"))
    assert (report.enrolled, report.already) == (0, 1)
    assert len(rows(store)) == 6


def test_csv_import_leaves_out_only_bad_rows(store, clinic, tmp_path):
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text(
        "email,first_name,timezone,signed_up_at,consent\n"
        "ana@example.com,Ana,America/New_York,2026-03-02T10:00,web form\n"
        "not an address,Bob,Europe/London,,web form\n"
        "cy@example.com,Cy,Mars/Base,,web form\n"
        "di@example.com,Di,,,\n"
        "ed@example.com,Ed,Europe/London,,\n"
    )
    report = import_csv(store, clinic, csv_file, now=utc("2026-03-02T12:00"), consent=None)
    assert report.enrolled == 1
    assert [line for line, _ in report.rejected] == [3, 4, 5, 6]
    assert report.rejected[0][1].startswith("email:")
    assert report.rejected[1][1].startswith("timezone:")
    report = import_csv(store, clinic, csv_file, now=utc("2026-03-02T12:00"), consent="form")
    assert (report.enrolled, report.already) == (2, 1)


def test_a_chunked_import_plans_each_contact_as_the_rules_say(store, clinic, tmp_path, monkeypatch):
    # Several transactions, a known contact with tags, a duplicate across chunks: every
    # due time is the one the direct (unremembered) planner gives.
    monkeypatch.setattr(enrollment, "CHUNK", 3)
    enroll(
        store,
        clinic,
        Signup("p4@example.com", None, "UTC", None, "form", "old"),
        now=utc("2026-03-01T12:00"),
    )
    zones = ("America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata")
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text(
        "email,first_name,timezone,signed_up_at,consent,tags\n"
        + "".join(
            f"p{i}@example.com,P{i},{zones[i % 4]},2026-03-{7 + i % 3:02d}T0{i % 10}:30,form,new\n"
            for i in range(10)
        )
        + "P1@example.com,Again,UTC,,form,\n"
    )
    report = import_csv(store, clinic, csv_file, now=utc("2026-03-02T12:00"))
    assert (report.enrolled, report.already, report.rejected) == (
        9,
        1,
        [(12, "email: the same address as line 3")],
    )
    with store.connect() as conn:
        rows = conn.execute(
            select(
                contacts.c.email,
                contacts.c.timezone,
                contacts.c.tags,
                enrollments.c.signed_up_at,
                deliveries.c.step_key,
                deliveries.c.due_at,
            )
            .join(enrollments, enrollments.c.contact_id == contacts.c.id)
            .join(deliveries, deliveries.c.enrollment_id == enrollments.c.id)
            .where(contacts.c.email != "p4@example.com")
            .order_by(deliveries.c.id)
        ).all()
        tags = conn.scalar(select(contacts.c.tags).where(contacts.c.email == "p4@example.com"))
    assert tags == ";new;old;"
    assert len(rows) == 9 * len(clinic.steps)
    keys = [step.key for step in clinic.steps]
    for email_address, zone_name, row_tags, signed_up_at, step_key, due_at in rows:
        expected = plan(clinic, signed_up_at, zone_name)
        assert due_at == expected[keys.index(step_key)], email_address
        assert row_tags == ";new;"


def test_bulk_inserts_store_times_as_the_column_type_does(store):
    # The driver's executemany skips SQLAlchemy's types: driver_time must make what they make.
    times = [
        utc("2026-03-08T07:00"),
        utc("2026-03-08T02:30:15.000001"),
        datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=schedule.zone("America/New_York")),
    ]
    with store.begin() as conn:
        conn.execute(
            insert(suppressions),
            [
                {"address_hash": f"a{i}", "reason": "r", "created_at": t}
                for i, t in enumerate(times)
            ],
        )
        bulk_insert(
            conn,
            suppressions,
            ("address_hash", "reason", "created_at"),
            [(f"b{i}", "r", store.driver_time(t)) for i, t in enumerate(times)],
        )
    with store.connect() as conn:
        raw = conn.exec_driver_sql(
            "SELECT address_hash, created_at FROM suppressions ORDER BY address_hash"
        ).all()
        typed = (
            conn.execute(select(suppressions.c.created_at).order_by(suppressions.c.address_hash))
            .scalars()
            .all()
        )
    assert [value for _, value in raw[:3]] == [value for _, value in raw[3:]]
    assert typed == [t.astimezone(UTC) for t in times] * 2
    with pytest.raises(ValueError, match="naive"):
        store.driver_time(datetime(2026, 3, 8, 7, 0))


def test_open_campaign_finds_published_campaigns_by_name(store, clinic):
    enroll(store, clinic, signup(), now=utc("2026-03-02T12:00"))
    assert open_campaign(store, "ketamine-and-sleep").version == clinic.version


def test_min_gap_spans_campaigns_at_hand_off(store, clinic_folder, tmp_path):
    """Two first emails due together from two campaigns: one goes; the other and its
    later steps move to the first opening after the gap, in order."""
    from tests.schedule_helpers import with_window

    window = 'send_window:\n  start: "09:00"\n  end: "17:00"\n  min_gap: 20h\n'
    second_folder = tmp_path / "second"
    shutil.copytree(clinic_folder, second_folder)
    spec = second_folder / "campaign.yaml"
    spec.write_text(spec.read_text().replace("name: ketamine-and-sleep", "name: sleep-tips", 1))
    first, second = with_window(clinic_folder, window), with_window(second_folder, window)
    now = utc("2026-03-02T15:00")  # Monday 10:00 in New York
    for campaign in (first, second):
        enroll(store, campaign, signup(at="2026-03-02T10:00"), now=now)

    report = outbox_dispatcher(store, tmp_path / "outbox").run(now=now)

    assert (report.sent, report.deferred) == (1, 1)
    with store.connect() as conn:
        planned = conn.execute(
            select(
                deliveries.c.enrollment_id,
                deliveries.c.position,
                deliveries.c.status,
                deliveries.c.due_at,
            ).order_by(deliveries.c.enrollment_id, deliveries.c.position)
        ).all()
    by_enrollment: dict[int, list] = {}
    for row in planned:
        by_enrollment.setdefault(row.enrollment_id, []).append(row)
    went, waited = sorted(by_enrollment.values(), key=lambda rows: rows[0].status != "sent")
    assert went[0].status == "sent"
    assert {r.status for r in waited} == {"scheduled"}
    # 15:00 UTC + 20h = Tuesday 06:00 in New York: the window opens at 09:00 EST.
    assert waited[0].due_at == utc("2026-03-03T14:00")
    times = [r.due_at for r in waited]
    assert all(b - a >= timedelta(hours=20) for a, b in itertools.pairwise(times))
