"""The command line as a user meets it: one clear line and exit 2 for bad input, no traceback."""

from __future__ import annotations

import email
import email.policy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, select, update

from campaigns.storage.store import Store
from tests.unit.test_cli import assert_one_line_error, dripmail


def snapshot(db: str) -> dict[str, list]:
    """Every row of every table: 'the database unchanged' made checkable."""
    engine = create_engine(db)
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        data = {name: conn.execute(select(table)).all() for name, table in meta.tables.items()}
    engine.dispose()
    return data


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path, clinic_folder: Path) -> str:
    """A database URL with one contact enrolled, on each backend in turn."""
    if request.param == "postgresql":
        path = request.getfixturevalue("postgres_url")
    else:
        path = f"sqlite:///{tmp_path / 'clinic.db'}"
    result = dripmail(
        "enroll",
        str(clinic_folder),
        "--email",
        "ana@example.com",
        "--timezone",
        "America/New_York",
        "--signed-up-at",
        "2026-03-02T10:00",
        "--db",
        str(path),
    )
    assert result.exit_code == 0, result.output
    return path


def test_campaign_file_mistakes_name_file_line_and_field(tmp_path, clinic_folder, db):
    before = snapshot(db)
    spec = clinic_folder / "campaign.yaml"
    original = spec.read_text()
    spec.write_text(original.replace("timezone:", "colour: blue\ntimezone:", 1))
    result = dripmail("enroll", str(clinic_folder), "--email", "bo@example.com", "--db", str(db))
    assert_one_line_error(result, f"{spec}:", "colour: unknown key 'colour'")
    spec.write_text(re.sub(r"delay: '?2d'?", "delay: 2 weeks later", original, count=1))
    result = dripmail("enroll", str(clinic_folder), "--email", "bo@example.com", "--db", str(db))
    assert_one_line_error(result, f"{spec}:", ".delay: '2 weeks later' is not a delay")
    assert snapshot(db) == before


def test_unknown_time_zone_is_refused_and_changes_nothing(clinic_folder, db):
    before = snapshot(db)
    result = dripmail(
        "enroll",
        str(clinic_folder),
        "--email",
        "bo@example.com",
        "--timezone",
        "Europe/Lodnon",
        "--db",
        str(db),
    )
    assert_one_line_error(result, "timezone: unknown time zone 'Europe/Lodnon'")
    assert snapshot(db) == before


def test_csv_import_reports_bad_rows_by_line_and_exits_1(tmp_path, clinic_folder, db):
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text(
        "email,first_name,timezone,signed_up_at,consent\n"
        "bo@example.com,Bo,Europe/London,,web form\n"
        "bo at example dot com,Bob,Europe/London,,web form\n"
        "cy@example.com,Cy,Australia/Sydney,,web form\n"
    )
    result = dripmail("import", str(clinic_folder), str(csv_file), "--db", str(db))
    assert result.exit_code == 1, result.output
    assert f"{csv_file}:3: email:" in result.stderr
    assert "imported 2" in result.stdout
    assert "rejected 1" in result.stdout


def test_an_unusable_csv_imports_nothing_and_exits_2(tmp_path, clinic_folder, db):
    before = snapshot(db)
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text("mail,name\nbo@example.com,Bo\n")
    result = dripmail("import", str(clinic_folder), str(csv_file), "--db", str(db))
    assert_one_line_error(result, f"{csv_file}:1:", "no email column")
    assert snapshot(db) == before


def test_run_twice_at_the_same_now_sends_nothing_the_second_time(tmp_path, db, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = dripmail("run", "--now", "2026-03-02T15:00Z", "--db", str(db))
    second = dripmail("run", "--now", "2026-03-02T15:00Z", "--db", str(db))
    assert "sent 1," in first.stdout
    assert "sent 0," in second.stdout
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1
    status = dripmail("status", "--db", str(db))
    assert "ketamine-and-sleep" in status.stdout


def test_schedule_shows_local_and_utc_times(db):
    result = dripmail("schedule", "ketamine-and-sleep", "--db", str(db))
    assert result.exit_code == 0, result.output
    assert "Mon 2026-03-02 10:00 EST" in result.stdout
    assert "2026-03-02 15:00" in result.stdout


def test_demo_from_an_empty_folder(tmp_path):
    """The README's first command: the real console script, in an empty folder, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIPMAIL_", "SENDGRID_"))}
    env["COLUMNS"] = "200"
    result = subprocess.run(
        [sys.executable, "-m", "cli", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Timeline" in result.stdout
    for name in ("Ana", "Ben", "Chloe"):
        assert result.stdout.count(name) == 6
    emls = sorted((tmp_path / "dripmail-demo" / "outbox").glob("*.eml"))
    assert len(emls) == 3 * 6
    for path in emls:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
        for header in (
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
        ):
            assert message[header], header
        raw = path.read_bytes().decode()
        assert "=?" not in raw.split("List-Unsubscribe:")[1].split("\nList-Unsubscribe-Post")[0]
        uris = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
        assert [u.split(":")[0] for u in uris] == ["https", "mailto"]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert (tmp_path / "dripmail-demo" / "previews" / "index.html").is_file()


def test_send_test_goes_through_the_sender_and_records_nothing(
    tmp_path, clinic_folder, db, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    before = snapshot(db)
    result = dripmail(
        "send-test",
        str(clinic_folder),
        "--step",
        "welcome",
        "--to",
        "staff@clinic.example",
        "--db",
        str(db),
    )
    assert result.exit_code == 0, result.output
    (eml,) = (tmp_path / "outbox").glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "[TEST] Ketamine and Sleep"
    assert message["X-Dripmail-Test"] == "yes"
    assert message["To"].addresses[0].addr_spec == "staff@clinic.example"
    assert snapshot(db) == before


def test_real_senders_refuse_to_start_without_a_public_url(tmp_path, db, monkeypatch):
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.not-a-real-key")
    before = snapshot(db)
    result = dripmail("run", "--once", "--sender", "sendgrid", "--db", str(db))
    assert_one_line_error(result, "needs a public URL", "DRIPMAIL_PUBLIC_URL")
    assert "SG.not-a-real-key" not in result.output
    assert snapshot(db) == before


def test_retry_unknown_requeues_only_what_staff_asked_for(db):
    """`unknown` may have reached the patient: only those older than --older-than go back."""
    from campaigns.storage.store import Store
    from campaigns.storage.tables import deliveries
    from tests.helpers import utc

    store = Store(db)
    with store.begin() as conn:
        ids = conn.scalars(select(deliveries.c.id).order_by(deliveries.c.id)).all()
        for delivery_id, touched in ((ids[0], "2026-03-02T12:00"), (ids[1], "2026-03-03T11:00")):
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(status="unknown", updated_at=utc(touched), sent_at=utc(touched))
            )
    store.close()

    refused = dripmail("retry", "--db", str(db))
    result = dripmail(
        "retry", "--unknown", "--older-than", "24h", "--now", "2026-03-03T12:00Z", "--db", str(db)
    )

    assert_one_line_error(refused, "--unknown")
    assert result.exit_code == 0, result.output
    assert "re-queued 1 unknown delivery" in result.stdout
    store = Store(db)
    with store.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(deliveries))}
    store.close()
    assert (rows[ids[0]].status, rows[ids[0]].due_at, rows[ids[0]].sent_at) == (
        "scheduled",
        utc("2026-03-03T12:00"),
        None,
    )
    assert rows[ids[1]].status == "unknown"


READ_ONLY = [
    ("status",),
    ("stats", "ketamine-and-sleep"),
    ("schedule", "ketamine-and-sleep"),
    ("run", "--once"),
    ("check", "ketamine-and-sleep"),
    ("plan", "campaigns/sleep"),
    ("pause", "ketamine-and-sleep"),
    ("resume", "ketamine-and-sleep"),
    ("retry", "--unknown"),
    ("contacts", "export", "pat@example.com"),
]


@pytest.mark.parametrize("args", READ_ONLY, ids=lambda a: " ".join(a))
def test_a_reading_command_in_the_wrong_folder_says_there_is_no_database(
    tmp_path, monkeypatch, args
):
    """Run from the wrong folder, a command that only reads names the missing file and how
    to point elsewhere, and leaves no empty database behind to answer "nothing" next time."""
    monkeypatch.chdir(tmp_path)
    result = dripmail(*args)
    assert_one_line_error(
        result,
        f"no database at {tmp_path / 'dripmail.db'}",
        "--db",
        "DRIPMAIL_DATABASE_URL",
    )
    assert list(tmp_path.iterdir()) == []


def test_status_and_run_say_which_database_they_used(db):
    shown = db.split("?")[0] if db.startswith("postgresql") else db.removeprefix("sqlite:///")
    assert f"database: {shown}" in dripmail("status", "--db", db).stdout
    assert f"database: {shown}" in dripmail("run", "--now", "2026-03-02T15:00Z", "--db", db).stdout


def test_the_database_shown_never_carries_a_password():
    store = Store("postgresql+psycopg://dripmail:s3cret@db.internal/dripmail", migrate=False)
    assert store.location == "postgresql+psycopg://dripmail:***@db.internal/dripmail"
