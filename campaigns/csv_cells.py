"""CSV files dripmail writes: a text cell a spreadsheet would run as a formula is kept as text.

A subject, a name or an address comes from a patient or a staff member, and a CSV is
opened in Excel, LibreOffice or Google Sheets by someone else. A cell that starts with
`=`, `+`, `-` or `@` is read there as a formula (`=HYPERLINK(...)` sends the sheet's data
away); so is one after a leading tab or carriage return. OWASP's CSV-injection guidance
(and ASVS 1.2.10): prefix such a cell with a single quote, which the spreadsheet shows
and never evaluates. OWASP added the line feed to its list in 2025; it is escaped too.

Only text is escaped. A number, a date or None is data the program wrote itself, and a
negative number must stay a number: `-5` written from an int is left alone, while the
text "-5" typed by someone is prefixed like any other text. Every CSV the project writes
goes through `writer()` (tests/unit/test_csv_cells.py checks that no module calls
`csv.writer` or `csv.DictWriter` itself).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, TextIO

# The first characters that make a spreadsheet read a cell as a formula (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def cell(value: Any) -> Any:
    """The value as it goes into a CSV cell: text that could be a formula gets a `'` first."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def row(values: Iterable[Any]) -> list[Any]:
    """Every cell of a row through `cell()`."""
    return [cell(value) for value in values]


class SafeWriter:
    """`csv.writer` whose rows go through `row()`: the only way the project writes CSV."""

    def __init__(self, handle: TextIO, **options: Any) -> None:
        self._writer = csv.writer(handle, **options)

    def writerow(self, values: Iterable[Any]) -> Any:
        return self._writer.writerow(row(values))

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for values in rows:
            self.writerow(values)


def writer(handle: TextIO, **options: Any) -> SafeWriter:
    """A CSV writer over `handle` (opened with newline="") that escapes formula cells."""
    return SafeWriter(handle, **options)
