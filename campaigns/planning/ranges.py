"""The ranges every duration, date and sequence length must lie in, and their checks.

Python's dates end at year 9999 and its timedeltas at 999,999,999 days: a delay of
99999999d, a sign-up in 9999 or a closure in year 1 would overflow deep inside the
planner, as a traceback. So each value is checked where it is parsed (schedule's
parse_delay, parse_date, parse_instant; the campaign file's steps and closures),
against the bounds below, and the error names the field. Within them no plan can
overflow: a sign-up by 2100, plus at most MAX_STEPS steps each at most MAX_DURATION
and two searches for an opening (each within MAX_SHUT_DAYS) later, ends before 9999.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

# Delays, min_gap, --lease, --older-than, --interval, --cadence days.
MAX_DURATION = timedelta(days=3653)  # 10 years, leap days included
MAX_DURATION_TEXT = "10 years (3653d, 521w or 87672h)"
# Closures and newsletter dates lie in EARLIEST..LATEST; sign-up times, --now and --at
# are instants at any local time of those dates, in any zone (UTC-12 to UTC+14).
EARLIEST = date(1970, 1, 1)
LATEST = date(2100, 12, 31)
EARLIEST_INSTANT = datetime.combine(EARLIEST, time(0), UTC) - timedelta(hours=14)
END_INSTANT = datetime.combine(LATEST + timedelta(days=1), time(0), UTC) + timedelta(hours=12)
RANGE_TEXT = f"{EARLIEST.isoformat()} to {LATEST.isoformat()}"
# Emails in one campaign's sequence.
MAX_STEPS = 300
# Deliveries one `run` claims per batch (--batch-size), rows `schedule` shows (--limit).
MAX_BATCH = 10_000
MAX_SHOWN = 100_000
# Closures (with the window's days) may keep the window shut at most this many days in a
# row: the planner looks for the next opening within 400 days (schedule._SEARCH_DAYS).
MAX_SHUT_DAYS = 366


class OutOfRange(ValueError):
    """A value that reads well but lies outside its range (the message says which)."""


def check_count(value: int, high: int) -> int:
    """A count given on the command line: ValueError unless 1 <= value <= high."""
    if not 1 <= value <= high:
        raise OutOfRange(f"{value} is not a count from 1 to {high:,}")
    return value


def shown(text: str) -> str:
    """`text` quoted for a one-line message, cut short when it is very long."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def check_seconds(seconds: int | float, text: str) -> None:
    """A duration in seconds, written `text`: ValueError when over MAX_DURATION.

    Checked as a number, before it becomes a timedelta (which could overflow).
    """
    if not 0 <= seconds <= MAX_DURATION.total_seconds():  # also refuses nan
        raise OutOfRange(f"{shown(text)} is more than {MAX_DURATION_TEXT}, the longest allowed")


def check_date(value: date, text: str | None = None) -> date:
    """`value`, or ValueError when it is outside EARLIEST..LATEST."""
    if isinstance(value, datetime):
        value = value.date()
    if not EARLIEST <= value <= LATEST:
        written = shown(text if text is not None else value.isoformat())
        raise OutOfRange(f"{written} is outside {RANGE_TEXT}: give a date in that range")
    return value


def check_instant(value: datetime, text: str | None = None) -> datetime:
    """An aware `value`, or ValueError when it is outside the range."""
    if not EARLIEST_INSTANT <= value < END_INSTANT:
        raise out_of_range(text if text is not None else value.isoformat())
    return value


def out_of_range(text: str) -> OutOfRange:
    """The error for a date-time written `text` outside the range (even one that cannot be
    read in a zone at all, like year 1 behind UTC)."""
    return OutOfRange(f"{shown(text)} is outside {RANGE_TEXT}: give a time in that range")
