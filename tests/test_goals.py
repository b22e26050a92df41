"""Goals: an event (booked) ends a patient's sequence, counted in stats, through every door.

The acceptance run: 1,000 patients enrolled in the clinic campaign with
`goal: {event: booked, within: 30d}`, 300 of them booking at random (seeded) times while
the worker sends over 30 simulated days; read back from the outbox.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import shutil
import tempfile
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient
from typer.testing import CliRunner

import cli
from campaigns.authoring.spec import Campaign, load_folder
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.delivery.report import RunReport
from campaigns.errors import InputError
from campaigns.planning.conversions import ContactEvent, record_event
from campaigns.planning.edits import apply_edit, plan_edit
from campaigns.planning.enroll import enroll, import_csv
from campaigns.planning.signups import Signup
from campaigns.reporting.stats import campaign_stats
from campaigns.storage.statuses import DeliveryStatus, EnrollmentStatus
from campaigns.storage.tables import contact_events, contacts, deliveries, enrollments
from campaigns.web.app import create_app
from senders.file import FileSender
from tests.helpers import utc

TOKEN = "events-token-for-tests"
START = utc("2026-03-02T12:00")
SIGNUP = "2026-03-02T06:00"  # in New York (the campaign's zone): 11:00 UTC
LATER = utc("2026-03-02T15:00")  # the welcome email is due at 09:00 New York, 14:00 UTC
GOAL = "goal: {event: booked, within: 30d}\n"
ZONES = ("America/New_York", "Europe/London", "Asia/Kolkata", "America/Los_Angeles")


def with_goal(folder: Path, goal: str = GOAL) -> Campaign:
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text(encoding="utf-8") + goal, encoding="utf-8")
    return load_folder(folder)


def write_contacts(path: Path, count: int, rng: random.Random) -> dict[str, datetime]:
    """A sign-up export: `count` patients signed up over the two days before START."""
    signed: dict[str, datetime] = {}
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["Email Address", "First Name", "Time zone", "Signed up at"])
        for i in range(count):
            at = START - timedelta(minutes=rng.randrange(0, 48 * 60))
            email = f"patient{i:04d}@example.com"
            signed[email] = at
            out.writerow([email, f"Pat{i}", rng.choice(ZONES), at.isoformat()])
    return signed


def snapshot(store) -> tuple:
    """Everything an event could change."""
    with store.connect() as conn:
        return (
            conn.scalar(select(func.count()).select_from(contact_events)),
            sorted(conn.execute(select(enrollments.c.id, enrollments.c.status)).all()),
            sorted(conn.execute(select(deliveries.c.id, deliveries.c.status)).all()),
        )


def outbox_rows(outbox: Path) -> list[dict[str, str]]:
    index = outbox / "index.csv"
    if not index.exists():
        return []
    with index.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def fast_folder(tmp_path: Path) -> Path:
    """A folder in memory (tmpfs) when the machine has one: the file sender fsyncs each of
    thousands of emails, which on a busy shared disk is most of this test's time."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        return tmp_path
    folder = Path(tempfile.mkdtemp(prefix="dripmail-goals-", dir=shm))
    _made.append(folder)
    return folder


_made: list[Path] = []


@pytest.fixture(autouse=True)
def _remove_fast_folders():
    yield
    while _made:
        shutil.rmtree(_made.pop(), ignore_errors=True)


class Clock:
    """The service's clock, moved by the test (simulated days)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def next_hour(store, t: datetime, queue: list[tuple[str, datetime]]) -> datetime:
    """The next hour after `t` at which an email is due or a booking arrives (hours with
    neither are skipped: the worker would find nothing to do)."""
    with store.connect() as conn:
        due = conn.scalar(
            select(func.min(deliveries.c.due_at)).where(
                deliveries.c.status == DeliveryStatus.SCHEDULED
            )
        )
    following = min(
        [d for d in (due, queue[0][1] if queue else None) if d is not None], default=None
    )
    t += timedelta(hours=1)
    if following is not None and following > t:
        hours = -(-(following - t) // timedelta(hours=1))  # rounded up to the hour grid
        t += timedelta(hours=hours)
    elif following is None:
        t = START + timedelta(days=31)  # nothing left at all: the run is over
    return t


def post(client: TestClient, body: object, token: str | None = TOKEN, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/api/v1/events", json=body, headers=headers, **kwargs)


def test_booked_patients_get_nothing_after_booking_and_the_rest_get_everything(
    store, clinic_folder, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    rng = random.Random(19)
    campaign = with_goal(clinic_folder)
    signed = write_contacts(tmp_path / "contacts.csv", 1000, rng)
    report = import_csv(store, campaign, tmp_path / "contacts.csv", now=START, consent="form")
    assert report.enrolled == 1000 and not report.rejected
    span = campaign.steps[-1].delay.as_timedelta() + timedelta(days=1)
    booked: dict[str, datetime] = {}
    for email in rng.sample(sorted(signed), 300):
        begin = max(signed[email], START)
        end = signed[email] + span
        booked[email] = begin + (end - begin) * rng.random()
    queue = sorted(booked.items(), key=lambda item: item[1])

    outbox = fast_folder(tmp_path) / "outbox"
    dispatcher = Dispatcher(store, lambda _c: FileSender(outbox))
    clock = Clock(START)
    app = create_app(store, clock=clock, environ={"DRIPMAIL_API_TOKEN": TOKEN})
    answers = []
    with TestClient(app) as client:
        t = START
        while t <= START + timedelta(days=30):
            clock.now = t
            # Every booking up to now arrives first (as the booking system posts it)...
            while queue and queue[0][1] <= t:
                email, at = queue.pop(0)
                answer = post(
                    client,
                    {"email": email, "event": "booked", "at": at.isoformat(), "event_id": email},
                )
                assert answer.status_code == 202, answer.text
                answers.append(answer.json())
            # ...then the worker sends what is due.
            dispatcher.run(now=t)
            t = next_hour(store, t, queue)
        before = snapshot(store)
        # The booking system retries: the same event_id, and the same event without one.
        for email, at in list(booked.items())[:20]:
            again = post(
                client,
                {"email": email, "event": "booked", "at": at.isoformat(), "event_id": email},
            )
            assert again.status_code == 202 and again.json()["duplicate"] is True
            same = post(client, {"email": email, "event": "booked", "at": at.isoformat()})
            assert same.status_code == 202 and same.json()["converted"] == 0
        dispatcher.run(now=t)
        assert snapshot(store)[1:] == before[1:]

    assert all(a["converted"] == 1 and a["recorded"] for a in answers)
    assert sum(a["cancelled"] for a in answers) > 0

    # The outbox, read on its own: which patient got which email when.
    subjects = {step.subject: step.key for step in campaign.steps}
    received: dict[str, list[tuple[datetime, str]]] = {email: [] for email in signed}
    for row in outbox_rows(outbox):
        received[row["to"]].append(
            (datetime.fromisoformat(row["sent_at"]), subjects[row["subject"]])
        )
    keys = [step.key for step in campaign.steps]
    for email, emails in received.items():
        if email in booked:
            assert all(sent <= booked[email] for sent, _ in emails), email
        else:
            assert sorted(key for _, key in emails) == sorted(keys), email
    # Attribution, worked out from the outbox: the last email before the booking.
    expected = Counter()
    before_any = 0
    for email, at in booked.items():
        earlier = [(sent, key) for sent, key in received[email] if sent <= at]
        if earlier:
            expected[max(earlier)[1]] += 1
        else:
            before_any += 1
    assert len(expected) >= 4 and before_any > 0  # bookings fall all along the sequence
    stats = campaign_stats(store, campaign.name)
    assert stats.conversions.converted == 300
    assert stats.conversions.enrolled == 1000
    assert dict(stats.conversions.by_step) == dict(expected)
    assert stats.conversions.before_any_email == before_any
    assert {s.key: s.counts.converted for s in stats.steps if s.counts.converted} == dict(expected)
    assert stats.total.converted == 300
    # No patient's address in any log line.
    logged = caplog.text.lower()
    assert "@example.com" not in logged


@pytest.fixture
def service(store, clinic_folder):
    """The clinic campaign with a goal, two patients enrolled, and the service app."""
    campaign = with_goal(clinic_folder)
    for email in ("pat@example.com", "sam@example.com"):
        enroll(store, campaign, Signup(email, "Pat", None, SIGNUP, "form"), now=START)
    app = create_app(store, clock=lambda: START, environ={"DRIPMAIL_API_TOKEN": TOKEN})
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize(
    ("body", "token", "status", "field"),
    [
        ({"email": "nobody@example.com", "event": "booked"}, TOKEN, 404, None),
        ({"contact_id": 9999, "event": "booked"}, TOKEN, 404, None),
        ({"email": "pat@example.com", "event": "Booked!"}, TOKEN, 422, "event"),
        ({"email": "pat@example.com", "event": "booking"}, TOKEN, 422, "event"),
        ({"email": "pat@example.com", "event": "booked", "at": "yesterday"}, TOKEN, 422, "at"),
        (
            {"email": "pat@example.com", "event": "booked", "at": "2026-04-01T10:00Z"},
            TOKEN,
            422,
            "at",
        ),
        ({"email": "pat@example.com", "contact_id": 1, "event": "booked"}, TOKEN, 422, None),
        ({"event": "booked"}, TOKEN, 422, None),
        ({"email": "pat@example.com", "event": "booked", "extra": 1}, TOKEN, 422, "extra"),
        ({"email": "pat@example.com", "event": "booked"}, None, 401, None),
        ({"email": "pat@example.com", "event": "booked"}, "wrong", 401, None),
    ],
)
def test_a_refused_event_changes_nothing_and_logs_no_address(
    service, store, caplog, body, token, status, field
):
    caplog.set_level(logging.DEBUG)
    before = snapshot(store)
    answer = post(service, body, token=token)
    assert answer.status_code == status, answer.text
    if field:
        assert answer.json()["field"] == field
    assert snapshot(store) == before
    assert "pat@example.com" not in caplog.text and "nobody@" not in caplog.text


def test_a_body_over_64_kib_is_413_before_it_is_read(service, store, caplog):
    caplog.set_level(logging.DEBUG)
    before = snapshot(store)
    body = {"email": "pat@example.com", "event": "booked", "event_id": "x" * (64 * 1024)}
    answer = post(service, body)
    assert answer.status_code == 413
    # Without a Content-Length (chunked), reading stops at the cap too.
    chunks = iter([b'{"email": "pat@example.com", "event": "booked", "pad": "', b"x" * 70_000])
    answer = service.post(
        "/api/v1/events", content=chunks, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert answer.status_code == 413
    assert snapshot(store) == before
    assert "pat@example.com" not in caplog.text


def test_an_event_converts_and_answers_what_it_cancelled(service, store):
    answer = post(
        service,
        {
            "email": "Pat@Example.com",
            "event": "booked",
            "at": "2026-03-02T07:00",
            "event_id": "b-1",
        },
    )
    assert answer.status_code == 202
    assert answer.json() == {
        "event": "booked",
        "at": "2026-03-02T12:00:00Z",  # 07:00 in New York, the campaign's zone
        "recorded": True,
        "duplicate": False,
        "converted": 1,
        "campaigns": ["ketamine-and-sleep"],
        "cancelled": 6,
    }
    with store.connect() as conn:
        row = conn.execute(
            select(enrollments.c.status, enrollments.c.converted_at)
            .join(contacts, contacts.c.id == enrollments.c.contact_id)
            .where(contacts.c.email == "pat@example.com")
        ).one()
    assert row.status == EnrollmentStatus.CONVERTED
    assert row.converted_at == utc("2026-03-02T12:00")
    again = post(service, {"email": "pat@example.com", "event": "booked", "event_id": "b-1"})
    assert again.json()["duplicate"] is True and again.json()["cancelled"] == 0


def test_an_event_before_sign_up_or_past_within_converts_nothing(store, clinic_folder):
    campaign = with_goal(
        clinic_folder, "goal:\n  - {event: booked, within: 3d}\n  - {event: consult}\n"
    )
    enroll(
        store, campaign, Signup("pat@example.com", None, None, "2026-03-02T09:00", "f"), now=START
    )
    early = record_event(
        store, ContactEvent("booked", "2026-03-01T09:00"), email="pat@example.com",
        source="cli", now=START,
    )  # fmt: skip
    assert early.recorded and early.converted == []
    late = record_event(
        store, ContactEvent("booked", "2026-03-05T09:01"), email="pat@example.com",
        source="cli", now=START + timedelta(days=4),
    )  # fmt: skip
    assert late.recorded and late.converted == []  # 3 calendar days and a minute
    other = record_event(
        store, ContactEvent("consult", "2026-03-20T09:00"), email="pat@example.com",
        source="cli", now=START + timedelta(days=30),
    )  # fmt: skip
    assert other.converted == [("ketamine-and-sleep", 1)]


def test_a_claimed_email_of_a_converted_patient_is_not_handed_off(store, clinic_folder, tmp_path):
    campaign = with_goal(clinic_folder)
    enroll(store, campaign, Signup("pat@example.com", None, None, SIGNUP, "f"), now=START)
    outbox = tmp_path / "outbox"
    dispatcher = Dispatcher(store, lambda _c: FileSender(outbox))
    batch, _ = dispatcher.leases.claim(LATER)
    assert len(batch) == 1  # the welcome email, claimed by this worker
    result = record_event(
        store, ContactEvent("booked"), email="pat@example.com", source="cli", now=START
    )
    assert result.cancelled == 6  # the claimed one too: not yet handed to a sender
    dispatcher._process(batch, now=LATER, report=RunReport())
    dispatcher.leases.release()
    assert outbox_rows(outbox) == []
    with store.connect() as conn:
        assert set(conn.scalars(select(deliveries.c.status))) == {DeliveryStatus.CANCELLED}


def test_a_sending_email_is_left_to_finish(store, clinic_folder):
    campaign = with_goal(clinic_folder)
    enroll(store, campaign, Signup("pat@example.com", None, None, SIGNUP, "f"), now=START)
    with store.begin() as conn:
        conn.execute(
            deliveries.update()
            .where(deliveries.c.step_key == campaign.steps[0].key)
            .values(status=DeliveryStatus.SENDING)
        )
    result = record_event(
        store, ContactEvent("booked"), email="pat@example.com", source="cli", now=START
    )
    assert result.cancelled == 5
    with store.connect() as conn:
        assert Counter(conn.scalars(select(deliveries.c.status))) == {
            DeliveryStatus.SENDING: 1,
            DeliveryStatus.CANCELLED: 5,
        }


def test_goal_in_the_campaign_file_is_checked_with_file_line_and_field(clinic_folder):
    with pytest.raises(InputError) as bad:
        with_goal(clinic_folder, "goal: {event: Booked Call, within: 30d}\n")
    assert bad.value.field == "goal[0].event" and bad.value.line
    assert "campaign.yaml" in str(bad.value) and "lower-case" in bad.value.message


@pytest.mark.parametrize(
    ("goal", "message"),
    [
        ("goal: {event: booked, within: soon}\n", "not a delay"),
        ("goal: {event: booked, when: 3d}\n", "unknown key"),
        ("goal: [{event: booked}, {event: booked, within: 2d}]\n", "two goals"),
        ("goal: booked\n", "write a goal as"),
    ],
)
def test_a_bad_goal_is_one_clear_error(clinic_folder, goal, message):
    with pytest.raises(InputError) as bad:
        with_goal(clinic_folder, goal)
    assert message in str(bad.value)


def test_plan_counts_a_goal_added_to_a_running_campaign_and_apply_does_it(
    store, clinic_folder, tmp_path
):
    clinic = load_folder(clinic_folder)
    for i in range(6):
        signup = Signup(f"p{i}@example.com", None, None, "2026-03-02T09:00", "form")
        enroll(store, clinic, signup, now=START)
    # Another campaign's goal makes `booked` a known event, recorded for three patients
    # (one before sign-up): the clinic campaign has no goal yet, so nothing converts.
    other = tmp_path / "other"
    other.mkdir()
    for path in clinic_folder.iterdir():
        (other / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    spec = other / "campaign.yaml"
    spec.write_text(
        spec.read_text(encoding="utf-8").replace("name: ketamine-and-sleep", "name: other") + GOAL,
        encoding="utf-8",
    )
    enroll(store, load_folder(other), Signup("staff@example.com", None, None, None, "f"), now=START)
    for i, at in ((0, "2026-03-03T10:00"), (1, "2026-03-04T10:00"), (2, "2026-02-01T10:00")):
        result = record_event(
            store, ContactEvent("booked", at), email=f"p{i}@example.com", source="cli",
            now=START + timedelta(days=3),
        )  # fmt: skip
        assert result.converted == []
    with_goal(clinic_folder)
    planned = plan_edit(store, str(clinic_folder), now=START + timedelta(days=3))
    assert planned.goals.converts == {"booked": 2} and planned.goals.cancels == 12
    runner = CliRunner()
    shown = runner.invoke(
        cli.app, ["plan", str(clinic_folder), "--now", "2026-03-05T12:00", "--db", store.url]
    )
    assert "goal booked: 2 enrolled contacts already had the event (would convert)" in shown.stdout
    assert "12 pending emails of theirs would be cancelled" in shown.stdout
    applied = apply_edit(store, str(clinic_folder), now=START + timedelta(days=3))
    assert applied.goals.converts == {"booked": 2} and applied.goals.cancels == 12
    stats = campaign_stats(store, "ketamine-and-sleep")
    assert stats.conversions.converted == 2
    # The goal removed again: nobody converted comes back.
    spec = clinic_folder / "campaign.yaml"
    spec.write_text(spec.read_text(encoding="utf-8").replace(GOAL, ""), encoding="utf-8")
    shown = runner.invoke(
        cli.app,
        ["plan", str(clinic_folder), "--apply", "--now", "2026-03-05T12:00", "--db", store.url],
    )
    assert "goal booked removed: contacts converted by it stay converted" in shown.stdout
    with store.connect() as conn:
        statuses = Counter(
            conn.scalars(
                select(enrollments.c.status).where(enrollments.c.campaign == "ketamine-and-sleep")
            )
        )
    assert statuses == {EnrollmentStatus.CONVERTED: 2, EnrollmentStatus.ACTIVE: 4}


def test_contacts_event_and_an_import_column(store, clinic_folder, tmp_path):
    campaign = with_goal(clinic_folder)
    rows = tmp_path / "patients.csv"
    rows.write_text(
        "Email,Time zone,Signed up at,Events\n"
        "ann@example.com,Europe/London,2026-03-01T09:00,booked@2026-03-02T08:00\n"
        "bob@example.com,Europe/London,2026-03-01T09:00,\n"
        "cat@example.com,Europe/London,2026-03-01T09:00,Booked@2026-03-02T08:00\n"
        "dan@example.com,Europe/London,2026-03-01T09:00,booking@2026-03-02T08:00\n"
        "eve@example.com,Europe/London,2026-03-01T09:00,booked@next tuesday\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    imported = runner.invoke(
        cli.app, ["import", str(clinic_folder), str(rows), "--consent", "form",
                  "--now", "2026-03-02T12:00", "--db", store.url],
    )  # fmt: skip
    assert imported.exit_code == 1, imported.output
    assert "imported 2, already enrolled 0, suppressed 0, rejected 3" in imported.stdout
    assert (
        "events recorded 1: 1 enrollment converted, 6 pending emails cancelled" in imported.stdout
    )
    assert f"{rows}:4: events: 'Booked' is not an event name" in imported.stderr
    assert f"{rows}:5: events: no campaign has a goal named 'booking'" in imported.stderr
    assert f"{rows}:6: events: 'next tuesday' is not an ISO date-time" in imported.stderr
    said = runner.invoke(
        cli.app, ["contacts", "event", "bob@example.com", "booked", "--at", "2026-03-02T11:00",
                  "--now", "2026-03-02T12:00", "--db", store.url],
    )  # fmt: skip
    assert said.exit_code == 0, said.output
    assert said.stdout == (
        "booked recorded: converted ketamine-and-sleep; 6 pending emails cancelled\n"
    )
    again = runner.invoke(
        cli.app, ["contacts", "event", "bob@example.com", "booked", "--at", "2026-03-02T11:00",
                  "--now", "2026-03-02T12:00", "--db", store.url],
    )  # fmt: skip
    assert again.stdout == "booked: already recorded; nothing changed\n"
    unknown = runner.invoke(
        cli.app, ["contacts", "event", "zed@example.com", "booked", "--db", store.url]
    )
    assert unknown.exit_code == 2 and "no contact with that address" in unknown.stderr
    shown = runner.invoke(cli.app, ["stats", campaign.name, "--json", "--db", store.url])
    data = json.loads(shown.stdout)
    assert data["goals"] == ["booked"]
    assert data["conversions"]["converted"] == 2
    assert data["conversions"]["before_any_email"] == 2


def test_two_workers_and_events_at_once_on_postgresql(postgres_url, clinic_folder, tmp_path):
    """Events arrive while two workers claim and hand off: every email is sent once or
    cancelled, and the answers' `cancelled` add up to the rows cancelled."""
    from concurrent.futures import ThreadPoolExecutor

    from campaigns.storage.store import Store

    store = Store(postgres_url)
    try:
        rng = random.Random(5)
        campaign = with_goal(clinic_folder)
        signed = write_contacts(tmp_path / "contacts.csv", 400, rng)
        import_csv(store, campaign, tmp_path / "contacts.csv", now=START, consent="form")
        outbox = tmp_path / "outbox"
        workers = [Dispatcher(store, lambda _c: FileSender(outbox), batch_size=20) for _ in "ab"]
        people = sorted(signed)
        rng.shuffle(people)
        cancelled = converted = 0
        t = START
        with ThreadPoolExecutor(max_workers=2) as pool:
            for step in range(4 * 20):  # every six hours: each zone's window is open at one
                t = START + timedelta(hours=6 * step + 3)
                runs = [pool.submit(worker.run, now=t) for worker in workers]
                for email in people[step * 4 : step * 4 + 4] if step < 45 else []:  # bookings
                    result = record_event(
                        store, ContactEvent("booked"), email=email, source="api", now=t
                    )
                    cancelled += result.cancelled
                    converted += len(result.converted)
                for run in runs:
                    run.result()
        assert converted == 180
        with store.connect() as conn:
            by_status = Counter(conn.scalars(select(deliveries.c.status)))
            open_rows = conn.scalar(
                select(func.count())
                .select_from(deliveries)
                .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
                .where(
                    enrollments.c.status == EnrollmentStatus.CONVERTED,
                    deliveries.c.status.in_([DeliveryStatus.SCHEDULED, DeliveryStatus.CLAIMED]),
                )
            )
            late = conn.execute(
                select(deliveries.c.due_at, deliveries.c.step_key).where(
                    deliveries.c.status == DeliveryStatus.SCHEDULED
                )
            ).all()
        assert open_rows == 0
        assert not late, (t, late[:5])
        assert by_status[DeliveryStatus.CANCELLED] == cancelled
        assert set(by_status) <= {DeliveryStatus.SENT, DeliveryStatus.CANCELLED}
        files = [row["delivery_id"] for row in outbox_rows(outbox)]
        assert len(files) == len(set(files)) == by_status[DeliveryStatus.SENT]
        assert by_status[DeliveryStatus.SENT] + cancelled == 400 * len(campaign.steps)
    finally:
        store.close()


def test_a_patients_events_are_in_their_export_and_go_with_erasure(store, clinic_folder):
    from campaigns.compliance.privacy import export_contact, forget_contact

    campaign = with_goal(clinic_folder)
    enroll(store, campaign, Signup("pat@example.com", None, None, SIGNUP, "f"), now=START)
    record_event(
        store, ContactEvent("booked", event_id="clinic-booking-17"), email="pat@example.com",
        source="api", now=LATER,
    )  # fmt: skip
    held = export_contact(store, "pat@example.com")
    assert [(e["name"], e["event_id"], e["source"]) for e in held["contact_events"]] == [
        ("booked", "clinic-booking-17", "api")
    ]
    assert held["enrollments"][0]["status"] == EnrollmentStatus.CONVERTED
    forget_contact(store, "pat@example.com", now=LATER)
    with store.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(contact_events)) == 0
