"""The zone rule and the contact-file reader, as pure functions over text and files."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaigns.errors import InputError
from campaigns.planning.signups import read_csv
from campaigns.planning.zones import contact_zone
from campaigns.studio.contact import read_contact
from tests.helpers import utc


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("EST", "America/New_York"),
        ("pst", "America/Los_Angeles"),
        ("GMT", "Europe/London"),
        ("CET", "Europe/Paris"),
        ("GMT+5", "Asia/Karachi"),  # as people write it: five hours ahead of UTC
        ("Etc/GMT+5", "America/New_York"),  # the zone database's own: five hours behind
        ("UTC-08:00", "America/Los_Angeles"),
        ("+05:30", "Asia/Kolkata"),
        ("London", "Europe/London"),
        ("America/New York", "America/New_York"),
        ("europe/london", "Europe/London"),
        ("Europe/Lodnon", "Europe/London"),
        ("new york", "America/New_York"),
    ],
)
def test_a_zone_that_is_not_a_place_is_refused_naming_the_one_meant(typed, meant):
    with pytest.raises(ValueError, match=rf"did you mean {meant}\?$"):
        contact_zone(typed)


@pytest.mark.parametrize("name", ["Europe/London", "America/New_York", "UTC", " Asia/Tokyo "])
def test_a_place_zone_is_taken_as_it_is(name):
    assert contact_zone(name) == name.strip()


def test_a_zone_nothing_like_a_place_says_what_to_write():
    with pytest.raises(ValueError, match=r"^unknown time zone 'Mars/Base' \(use an IANA name"):
        contact_zone("Mars/Base")


def test_the_studio_picker_falls_back_to_the_campaign_zone_for_an_abbreviation(clinic):
    contact = read_contact({"tz": "EST"}, clinic, now=utc("2026-03-02T12:00"))
    assert contact.timezone == clinic.spec.timezone
    assert "did you mean America/New_York?" in contact.problems[0]


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "contacts.csv"
    path.write_bytes(data)
    return path


def test_a_tab_delimited_utf16_file_from_excel_unicode_text_is_read(tmp_path):
    text = (
        "E-mail\tFirst name\ttz\tSigned up\r\npat@example.com\tPat\tEurope/London\t2026-03-01\r\n"
    )
    table = read_csv(write(tmp_path, text.encode("utf-16")))
    assert table.delimiter == "\t"
    assert table.rows == [
        (
            2,
            {
                "email": "pat@example.com",
                "first_name": "Pat",
                "timezone": "Europe/London",
                "signed_up_at": "2026-03-01",
            },
            {},
        )
    ]


def test_excel_sep_hint_and_a_trailing_delimiter_are_understood(tmp_path):
    table = read_csv(write(tmp_path, b"sep=;\nEmail Address;Phone;\npat@example.com;0123;\n"))
    assert table.rows == [(3, {"email": "pat@example.com"}, {"phone": "0123"})]
    assert table.attributes == {"Phone": "phone"}


def test_two_columns_for_one_field_are_refused_naming_both(tmp_path):
    with pytest.raises(InputError, match=r"columns 'Email' and 'Email Address' both hold email"):
        read_csv(write(tmp_path, b"Email,Email Address\na@example.com,b@example.com\n"))


def test_a_legitimate_quoted_newline_is_one_row_and_line_numbers_follow_the_file(tmp_path):
    data = b'email,notes\na@example.com,"two\nlines"\nb@example.com,one\n'
    table = read_csv(write(tmp_path, data))
    assert [(line, record["email"]) for line, record, _ in table.rows] == [
        (2, "a@example.com"),
        (4, "b@example.com"),
    ]
    assert table.rows[0][2] == {"notes": "two\nlines"}


def test_a_file_in_a_wrong_encoding_names_the_line_of_its_first_bad_byte(tmp_path):
    data = "email,first_name\na@example.com,Ann\nb@example.com,Zoë\n".encode("cp1252")
    with pytest.raises(InputError) as caught:
        read_csv(write(tmp_path, data))
    assert caught.value.line == 3
    assert 'Save As > "CSV UTF-8 (Comma delimited)"' in caught.value.message
    rows = read_csv(write(tmp_path, data), encoding="cp1252").rows
    assert rows[1][1]["first_name"] == "Zoë"


def test_a_stray_quote_closed_by_a_later_rows_inches_never_merges_contacts():
    # A CRM export: row 1002's note opens a quote that is never closed, and row 1004's
    # `Height 6'1"` closes it, so the three rows read as one record of the right width.
    table = read_csv(Path(__file__).parents[1] / "fixtures" / "contacts" / "crm-stray-quote.csv")
    assert [(line, record["email"]) for line, record, _ in table.rows] == [
        (2, "amira.haddad@example.com"),
        (4, "chloe.dubois@example.com"),
        (5, "dev.patel@example.com"),
        (6, "eva.novak@example.com"),
    ]
    assert table.rejected == [
        (3, 'a quote (") opened on this line is never closed: the row is left out')
    ]
    assert all("\n" not in note for _, _, extra in table.rows for note in extra.values())
    assert table.rows[2][2]["notes"] == "Height 6'1\""
