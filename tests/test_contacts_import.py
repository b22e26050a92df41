"""Contact files as real exports come: Excel, Mailchimp, cp1252, a broken quote; one zone rule.

Each fixture under tests/fixtures/contacts/ is shaped like the file a clinic really has:
Excel's "CSV UTF-8" in a European locale (semicolons, a byte order mark, CRLF), a
Mailchimp audience export, an older Excel's cp1252 "CSV (Comma delimited)", a file
edited by hand with a quote left open, and a CRM export whose stray quote a later row's
inches (`6'1"`) close.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from starlette.testclient import TestClient

from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.storage.tables import contacts
from campaigns.web.app import create_app
from tests.helpers import utc
from tests.unit.test_cli import assert_one_line_error, dripmail

FIXTURES = Path(__file__).parent / "fixtures" / "contacts"
NOW = "2026-03-02T12:00"


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'clinic.db'}"


def fixture(tmp_path: Path, name: str) -> Path:
    """A copy of the fixture, so the messages name a path of this test's own."""
    return Path(shutil.copy(FIXTURES / name, tmp_path / name))


def error_lines(result) -> list[str]:
    """What stderr says, without the blank line the progress bar leaves."""
    return [line for line in result.stderr.splitlines() if line.strip()]


def held(db: str) -> dict[str, tuple]:
    """email -> (first name, zone, attributes) for every contact in the database."""
    engine = create_engine(db)
    with engine.connect() as conn:
        rows = conn.execute(
            select(contacts.c.email, contacts.c.first_name, contacts.c.timezone,
                   contacts.c.attributes)
        ).all()  # fmt: skip
    engine.dispose()
    return {r.email: (r.first_name, r.timezone, json.loads(r.attributes or "{}")) for r in rows}


def test_an_excel_semicolon_export_imports_every_good_row_and_names_the_broken_one(
    tmp_path, clinic_folder, db
):
    csv_file = fixture(tmp_path, "excel-semicolon-bom-crlf.csv")

    result = dripmail("import", str(clinic_folder), str(csv_file), "--now", NOW, "--db", db)

    assert result.exit_code == 1, result.output
    assert error_lines(result) == [
        f'{csv_file}:5: a quote (") opened on this line is never closed: the row is left out'
    ]
    assert "kept on each contact: Last Name (as last_name), Phone (as phone)" in result.stdout
    assert "imported 5, already enrolled 0, suppressed 0, rejected 1" in result.stdout
    people = held(db)
    assert sorted(people) == [
        "jean.dupont@example.fr",
        "lukas.mueller@example.de",
        "maria.garcia@example.es",
        "pieter.devries@example.nl",
        "sofia.rossi@example.it",
    ]
    assert people["maria.garcia@example.es"] == (
        "María",
        "Europe/Madrid",
        {"last_name": "García", "phone": "+34 612 345 678"},
    )
    # A quoted field keeps its semicolon; an empty cell is no attribute at all.
    assert people["sofia.rossi@example.it"][2]["last_name"] == "Rossi; Bianchi"
    assert people["lukas.mueller@example.de"][2] == {"last_name": "Müller"}


def test_a_mailchimp_export_with_its_own_headers_and_a_multi_line_note_imports_whole(
    tmp_path, clinic_folder, db
):
    csv_file = fixture(tmp_path, "mailchimp-export.csv")

    result = dripmail(
        "import", str(clinic_folder), str(csv_file), "--consent", "Mailchimp audience, opted in",
        "--now", NOW, "--db", db,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "imported 4" in result.stdout and "rejected 0" in result.stdout
    people = held(db)
    assert people["lee.wong@example.com"][:2] == ("Lee", "America/Los_Angeles")
    assert people["lee.wong@example.com"][2]["notes"] == (
        "Prefers email.\nAsked about the sleep programme."
    )
    assert people["robin.clark@example.com"][1] == "America/New_York"  # the campaign's zone
    export = json.loads(dripmail("contacts", "export", "pat.jones@example.com", "--db", db).stdout)
    assert export["contact"]["attributes"]["phone"] == "+1 212 555 0143"


def test_an_unterminated_quote_is_its_row_alone_and_a_short_row_is_named(
    tmp_path, clinic_folder, db
):
    csv_file = fixture(tmp_path, "unterminated-quote.csv")

    result = dripmail("import", str(clinic_folder), str(csv_file), "--now", NOW, "--db", db)

    assert result.exit_code == 1, result.output
    assert error_lines(result) == [
        f'{csv_file}:3: a quote (") opened on this line is never closed: the row is left out',
        f'{csv_file}:5: 3 fields where the header has 4: a missing or extra ","?',
    ]
    people = held(db)
    assert sorted(people) == ["ana@example.com", "cy@example.com"]
    assert people["cy@example.com"][:2] == ("Cy", "Europe/Madrid")
    assert not any("Unclosed" in (name or "") for name, _, _ in people.values())


def test_a_crm_export_with_a_stray_quote_reports_that_line_and_imports_the_rows_after_it(
    tmp_path, clinic_folder, db
):
    # The quote opened on line 3 is "closed" by line 5's `Height 6'1"`: read as CSV, lines
    # 3 to 5 are one record of the right width, Ben's, holding Chloe's and Dev's rows.
    csv_file = fixture(tmp_path, "crm-stray-quote.csv")

    result = dripmail("import", str(clinic_folder), str(csv_file), "--now", NOW, "--db", db)

    assert result.exit_code == 1, result.output
    assert error_lines(result) == [
        f'{csv_file}:3: a quote (") opened on this line is never closed: the row is left out'
    ]
    assert "imported 4, already enrolled 0, suppressed 0, rejected 1" in result.stdout
    people = held(db)
    assert sorted(people) == [
        "amira.haddad@example.com",
        "chloe.dubois@example.com",
        "dev.patel@example.com",
        "eva.novak@example.com",
    ]
    assert people["dev.patel@example.com"][2]["notes"] == "Height 6'1\""
    assert not any("\n" in v for _, _, attrs in people.values() for v in attrs.values())


def test_a_cp1252_file_names_the_line_and_how_to_export_then_imports_with_encoding(
    tmp_path, clinic_folder, db
):
    csv_file = fixture(tmp_path, "excel-cp1252.csv")

    refused = dripmail("import", str(clinic_folder), str(csv_file), "--now", NOW, "--db", db)

    assert_one_line_error(refused, f"{csv_file}:2: not UTF-8 text (byte 0xe9", '"CSV UTF-8')
    assert "--encoding cp1252" in refused.stderr
    imported = dripmail(
        "import", str(clinic_folder), str(csv_file), "--encoding", "cp1252", "--now", NOW,
        "--consent", "front desk sign-up sheet", "--db", db,
    )  # fmt: skip
    assert imported.exit_code == 0, imported.output
    assert held(db)["rene@example.fr"][0] == "René"


def test_abbreviations_offsets_and_near_misses_are_refused_with_the_zone_meant(
    tmp_path, clinic_folder, db
):
    csv_file = tmp_path / "zones.csv"
    csv_file.write_text(
        "email,first_name,Time zone,consent\n"
        "ed@example.com,Ed,EST,form\n"
        "fay@example.com,Fay,GMT+5,form\n"
        "gus@example.com,Gus,London,form\n"
        "hal@example.com,Hal,America/New York,form\n"
        "ivy@example.com,Ivy,Europe/London,form\n"
    )
    result = dripmail("import", str(clinic_folder), str(csv_file), "--now", NOW, "--db", db)

    assert result.exit_code == 1, result.output
    lines = error_lines(result)
    assert [line.split(": ", 1)[0] for line in lines] == [f"{csv_file}:{n}" for n in (2, 3, 4, 5)]
    assert "timezone: 'EST' is an abbreviation" in lines[0]
    assert lines[0].endswith("did you mean America/New_York?")
    assert "'GMT+5' is a fixed offset" in lines[1] and "did you mean Asia/Karachi?" in lines[1]
    assert lines[2].endswith("unknown time zone 'London': did you mean Europe/London?")
    assert lines[3].endswith("did you mean America/New_York?")
    assert sorted(held(db)) == ["ivy@example.com"]

    enrolled = dripmail(
        "enroll", str(clinic_folder), "--email", "jo@example.com", "--timezone", "PST",
        "--now", NOW, "--db", db,
    )  # fmt: skip
    assert_one_line_error(enrolled, "timezone: 'PST' is an abbreviation", "America/Los_Angeles?")


def test_the_signup_api_answers_422_with_the_zone_meant(store, clinic):
    now = utc(NOW)
    enroll(store, clinic, Signup("staff@example.com", None, None, None, "staff"), now=now)
    app = create_app(store, clock=lambda: now, environ={"DRIPMAIL_API_TOKEN": "t0ken"})
    body = {
        "email": "pat@example.com",
        "timezone": "EST",
        "campaign": clinic.name,
        "consent": {"source": "clinic website form", "text": "Yes, email me"},
    }
    with TestClient(app) as client:
        answer = client.post(
            "/api/v1/enrollments", json=body, headers={"Authorization": "Bearer t0ken"}
        )
    assert answer.status_code == 422
    assert answer.json()["field"] == "timezone"
    assert answer.json()["error"].endswith("did you mean America/New_York?")
