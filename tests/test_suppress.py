"""`dripmail suppress`: staff stop email to a person without erasing them.

The lists under tests/fixtures/suppressions are shaped as other services export them:
Mailchimp's unsubscribed members (quoted cells holding commas, CRLF), SendGrid's
bounces, HubSpot's contacts (a BOM, semicolons, as Excel in Europe saves them) and a
plain list typed by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from campaigns.storage.statuses import DeliveryStatus
from campaigns.storage.tables import deliveries, events, suppressions
from tests.unit.test_cli import assert_one_line_error, dripmail

LISTS = Path(__file__).parent / "fixtures" / "suppressions"
NOW = "2026-03-02T12:00Z"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path, clinic_folder: Path) -> str:
    """A database with Ana enrolled in the clinic campaign (six emails pending)."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'clinic.db'}"
    result = dripmail(
        "enroll", str(clinic_folder), "--email", "ana@example.com", "--timezone",
        "America/New_York", "--signed-up-at", "2026-03-02T10:00", "--db", url,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return url


def rows(url: str, table):
    engine = create_engine(url)
    with engine.connect() as conn:
        found = conn.execute(select(table)).all()
    engine.dispose()
    return found


def statuses(url: str) -> list[str]:
    return sorted(row.status for row in rows(url, deliveries))


def test_a_patient_who_phoned_is_suppressed_checked_and_let_back_with_a_reason(db):
    added = dripmail(
        "suppress", "add", "Ana@Example.com", "--reason", "patient phoned", "--now", NOW,
        "--db", db,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "1 newly suppressed, 0 already suppressed; 6 pending emails cancelled" in added.stdout
    assert statuses(db) == [DeliveryStatus.CANCELLED] * 6
    # Only the keyed hash is kept: the address appears in no suppression.
    assert all("ana" not in repr(row) for row in rows(db, suppressions))

    checked = dripmail("suppress", "check", "ana@example.com", "--db", db)
    assert checked.stdout.strip() == "yes: suppressed since 2026-03-02 12:00 UTC (patient phoned)"
    assert "6 pending" not in dripmail("suppress", "add", "ana@example.com", "--db", db).stdout

    refused = dripmail("suppress", "remove", "ana@example.com", "--db", db)
    assert_one_line_error(refused, "--reason: say why")
    assert dripmail("suppress", "check", "ana@example.com", "--db", db).stdout.startswith("yes")

    removed = dripmail(
        "suppress", "remove", "ana@example.com", "--reason", "signed up again", "--now",
        "2026-03-05T09:30Z", "--db", db,
    )  # fmt: skip
    assert removed.exit_code == 0, removed.output
    assert "removed the suppression" in removed.stdout
    # Removing cancels nothing and brings nothing back.
    assert statuses(db) == [DeliveryStatus.CANCELLED] * 6
    assert dripmail("suppress", "check", "ana@example.com", "--db", db).stdout.strip() == (
        "no: its suppression was removed 2026-03-05 09:30 UTC (signed up again)"
    )
    recorded = [e for e in rows(db, events) if e.type == "suppression_removed"]
    assert len(recorded) == 1 and "ana" not in recorded[0].provider_event_id
    again = dripmail("suppress", "remove", "ana@example.com", "--reason", "twice", "--db", db)
    assert "not suppressed; nothing changed" in again.stdout


def test_one_bad_address_suppresses_nothing(db):
    result = dripmail("suppress", "add", "ana@example.com", "ana at example", "--db", db)
    assert_one_line_error(result, "EMAIL: not a valid email address")
    assert rows(db, suppressions) == []
    assert DeliveryStatus.CANCELLED not in statuses(db)


def test_a_reason_too_long_to_keep_is_refused(db):
    result = dripmail("suppress", "add", "ana@example.com", "--reason", "x " * 40, "--db", db)
    assert_one_line_error(result, "--reason: at most 32 characters")
    assert rows(db, suppressions) == []


@pytest.mark.parametrize(
    ("name", "new", "already", "unreadable"),
    [
        ("mailchimp-unsubscribed.csv", 3, 1, 5),
        ("sendgrid-bounces.csv", 3, 0, 4),
        ("hubspot-unsubscribed.csv", 2, 0, 4),
        ("plain-list.txt", 3, 0, 4),
    ],
)
def test_lists_exported_from_other_services_import(db, name, new, already, unreadable):
    """Each list suppresses its addresses (Ana's pending emails are cancelled when she is
    on it), counts repeats, and names each unreadable line; exit 1 since one was left out."""
    path = LISTS / name
    result = dripmail("suppress", "import", str(path), "--now", NOW, "--db", db)
    assert result.exit_code == 1, result.output
    assert f"{new} newly suppressed, {already} already suppressed, 1 unreadable" in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"{path}:{unreadable}: no email address on this line"]
    assert len(rows(db, suppressions)) == new
    ana_listed = "ana@example.com" in path.read_text(encoding="utf-8-sig").lower()
    cancelled = statuses(db).count(DeliveryStatus.CANCELLED)
    assert cancelled == (6 if ana_listed else 0)
    assert f"{cancelled} pending emails cancelled" in result.stdout
    again = dripmail("suppress", "import", str(path), "--db", db)
    assert f"0 newly suppressed, {new + already} already suppressed" in again.stdout


def test_checking_in_the_wrong_folder_creates_no_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = dripmail("suppress", "check", "ana@example.com")
    assert_one_line_error(result, f"no database at {tmp_path / 'dripmail.db'}")
    assert list(tmp_path.iterdir()) == []
