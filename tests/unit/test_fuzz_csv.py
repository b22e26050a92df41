"""Fuzz: a contacts CSV, whatever its bytes, is read into rows and refusals, or refused whole."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from campaigns.authoring.spec import Campaign, load_folder
from campaigns.errors import InputError
from campaigns.planning.signups import CsvTable, SignupFile, read_csv, read_signups
from tests.conftest import write_clinic_campaign
from tests.unit.fuzz import fuzz_settings, outcome

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
HEADER = ["email", "first_name", "timezone", "signed_up_at", "consent", "notes"]


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> Campaign:
    return load_folder(write_clinic_campaign(tmp_path_factory.mktemp("fuzz") / "clinic"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("csv")


def write(folder: Path, data: bytes) -> Path:
    path = folder / "contacts.csv"
    path.write_bytes(data)
    return path


# Cells as exports hold them, and the odd ones that break readers.
CELLS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ['"', '""', "a@example.com", "pat@example.com", "Europe/London", "EST", "GMT+5",
         "2026-03-01", "2026-03-01T25:00", "2026-13-45", "x;y", "\r", "\n", "sep=;",
         "\ufeff", "Email", "tags", "6'1\"", "=1+1"]
    ),
)  # fmt: skip
HEADERS = st.lists(
    st.sampled_from(["email", "E-mail", "Email Address", "First Name", "Time zone", "tz",
                     "signed_up_at", "Consent", "Tags", "Notes", "", '"email"', "Phone"]),
    min_size=1, max_size=6,
)  # fmt: skip


@st.composite
def csv_text(draw) -> str:
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    rows = [draw(HEADERS), *draw(st.lists(st.lists(CELLS, max_size=7), max_size=6))]
    prefix = draw(st.sampled_from(["", "\ufeff", "sep=;" + end, end]))
    return prefix + end.join(delimiter.join(row) for row in rows)


@fuzz_settings(max_examples=150)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        csv_text().map(lambda text: text.encode("utf-8", "surrogatepass")),
        csv_text().map(lambda text: text.encode("utf-16")),
    ),
    encoding=st.sampled_from([None, None, "cp1252", "utf-16", "no-such-codec"]),
)
def test_any_bytes_are_rows_and_refusals_or_one_input_error(folder, data, encoding):
    result = outcome(lambda: read_csv(write(folder, data), encoding=encoding))
    assert isinstance(result, CsvTable | InputError)
    if isinstance(result, CsvTable):
        lines = [line for line, _, _ in result.rows] + [line for line, _ in result.rejected]
        assert len(lines) == len(set(lines)), "a line read twice"


# Any time Python can hold: outside 1970-2100 the row is refused by its line.
WHEN = st.one_of(
    st.datetimes().map(datetime.isoformat),
    st.sampled_from(["", "2026-03-01", "2026-03-01T25:00", "yesterday", "2026-03-01T10:00Z"]),
)
ZONES = st.sampled_from(["", "Europe/London", "EST", "GMT+5", "UTC-08:00", "Mars/Base", "x"])
EMAILS = st.one_of(st.emails(), st.sampled_from(["a@b", "a@@b.com", " pat@example.com ", ""]))
# Text with no delimiter, quote or line end: each row is exactly one line of the file.
PLAIN = st.text(
    st.characters(exclude_characters=',;\t"\r\n', exclude_categories=["Cs"]), max_size=15
)
ROWS = st.lists(st.tuples(EMAILS, PLAIN, ZONES, WHEN, PLAIN, PLAIN), min_size=1, max_size=6)


@fuzz_settings(max_examples=150)
@given(rows=ROWS, stray=st.none() | st.tuples(st.integers(0, 5), st.integers(1, 5), st.booleans()))
@example(
    # A CRM export: a note opens a quote on line 3 that line 5's inches close; lines 3-5
    # read as one record of the right width, Ben's, holding Chloe's and Dev's rows.
    rows=[
        ("amira@example.com", "Amira", "", "", "form", "Prefers mornings"),
        ("ben@example.com", "Ben", "", "", "form", '"Met at the open day'),
        ("chloe@example.com", "Chloe", "", "", "form", "Asked about CPAP"),
        ("dev@example.com", "Dev", "", "", "form", "Height 6'1\""),
    ],
    stray=None,
)
@example(
    # Found by this test: line 4's quote is closed by line 5's own opening quote, so line 5
    # does not read as a row on its own; cut at the delimiters, it does.
    rows=[
        ("0@a.com", "", "", "", "", ""),
        ("1@a.com", "", "", "", "", ""),
        ("a@b", "", "", "2000-01-01T00:00:00", "", ""),
        ("2@a.com", "", "", "", "", ""),
    ],
    stray=(2, 1, True),
)
@example(
    # Found by this test: a swallowed row whose address is malformed (two @) must still be
    # reported by its line, not hidden inside the row before it.
    rows=[("a@b", "", "", "2000-01-01T00:00:00", "", ""), ("a@@b.com", "", "", "", "", "")],
    stray=(0, 1, True),
)
def test_every_line_of_a_contact_file_is_imported_or_reported_never_swallowed(
    folder, campaign, rows, stray
):
    lines = [list(row) for row in rows]
    if stray is not None:  # a quote opened at a cell's start, and perhaps one closed later
        at, cell, closes = stray
        at = min(at, len(lines) - 1)
        lines[at][cell] = '"' + lines[at][cell]
        if closes and at + 1 < len(lines):
            lines[-1][cell] += '"'
    text = "\n".join(",".join(row) for row in [HEADER, *lines]) + "\n"

    result = outcome(lambda: read_signups(write(folder, text.encode()), campaign, now=NOW))

    assert isinstance(result, SignupFile | InputError)
    if isinstance(result, SignupFile):
        accounted = {line for line, _ in result.valid} | {line for line, _ in result.rejected}
        contacts = {n for n, row in enumerate(lines, start=2) if "@" in row[0].strip(' "')}
        assert contacts <= accounted, "a row with an address was neither imported nor reported"
        for _, contact in result.valid:  # no contact holds another row in one of its cells
            assert not any("\n" in value for value in contact.attributes.values())
