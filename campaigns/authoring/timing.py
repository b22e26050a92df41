"""A campaign's times as enroll plans them: closures read from .ics, plans that fit.

check_timing checks that every sign-up the range takes can be planned.

`check`, `enroll`, `run` and the studio all read a campaign through spec.load_files,
which ends with check_timing: so a campaign `check` passes is one every sign-up in
range (planning/ranges.py) can be planned for, never an OverflowError in `enroll`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

from campaigns.errors import InputError
from campaigns.planning import ranges, schedule

# The zones furthest from UTC either way: every contact's zone lies between them.
_EXTREME_ZONES = ("Etc/GMT-14", "Etc/GMT+12")
_SIGNUPS = (ranges.EARLIEST_INSTANT, ranges.END_INSTANT - timedelta(microseconds=1))


def check_timing(
    delays: Sequence[schedule.Delay],
    window: schedule.Window,
    timezone: str,
    min_gap: timedelta,
    *,
    source: str,
    line: int | None = None,
) -> None:
    """InputError unless enroll can plan the sequence for every sign-up in range.

    Closures may keep the window shut at most ranges.MAX_SHUT_DAYS in a row (`line` is
    the campaign file's `closed:`); then the first and last sign-ups the range takes are
    planned, in the campaign's zone and the two furthest from UTC: the furthest out any
    plan reaches (delays, gaps and steps are bounded where they are read).
    """
    shut, first = longest_shut(window)
    if shut > ranges.MAX_SHUT_DAYS:
        raise InputError(
            f"the send window stays shut {shut} days in a row from {first} (closed dates "
            f"and days off): it may stay shut at most {ranges.MAX_SHUT_DAYS} days",
            source=source,
            line=line,
            field="send_window.closed",
        )
    for name in (timezone, *_EXTREME_ZONES):
        tz = schedule.zone(name)
        for signup in _SIGNUPS:
            try:
                schedule.plan_due_times(signup, delays, window, tz, min_gap=min_gap)
            except (ValueError, OverflowError) as exc:
                raise InputError(
                    f"the emails cannot be planned for a sign-up on {signup:%Y-%m-%d} "
                    f"({name}): {exc}",
                    source=source,
                    field="steps",
                ) from None


def longest_shut(window: schedule.Window) -> tuple[int, date | None]:
    """The most days in a row the window does not open, and the first of them (runs
    over a week need closed dates, so only the span of those is looked at)."""
    # A run of MAX_SHUT_DAYS + 1 days holds 52 of every weekday, each of them closed.
    if len(window.closed) < (ranges.MAX_SHUT_DAYS + 1) // 7:
        return 0, None
    day, last = min(window.closed) - timedelta(days=7), max(window.closed) + timedelta(days=7)
    best, best_first, run, first = 0, None, 0, day
    while day <= last:
        if window.opens_on(day):
            run = 0
        else:
            if run == 0:
                first = day
            run += 1
            if run > best:
                best, best_first = run, first
        day += timedelta(days=1)
    return best, best_first


def parse_ics(text: str, source: str) -> frozenset[date]:
    """The all-day dates of an iCalendar file's VEVENTs (DTEND exclusive, RFC 5545).

    Small and strict: a VCALENDAR of VEVENTs whose DTSTART (and DTEND, if any) are
    DATE values; anything else in an event (a timed event, a bad date) is an error
    naming its line. Other components and properties are passed over.
    """
    lines: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw[:1] in (" ", "\t") and lines:  # a folded line continues the one before
            lines[-1] = (lines[-1][0], lines[-1][1] + raw[1:])
        elif raw.strip():
            lines.append((number, raw.rstrip()))
    if not lines or lines[0][1].upper() != "BEGIN:VCALENDAR":
        raise InputError("not an iCalendar file: expected BEGIN:VCALENDAR", source=source, line=1)
    closed: set[date] = set()
    event: dict[str, tuple[int, date]] | None = None
    begun = 0
    for number, line in lines:
        name_params, _, value = line.partition(":")
        name, *params = name_params.upper().split(";")
        if name == "BEGIN" and value.upper() == "VEVENT":
            event, begun = {}, number
        elif name == "END" and value.upper() == "VEVENT":
            if event is None:
                raise InputError("END:VEVENT without BEGIN:VEVENT", source=source, line=number)
            if "DTSTART" not in event:
                raise InputError("an event without DTSTART", source=source, line=begun)
            start = event["DTSTART"][1]
            end = event.get("DTEND", (number, start + timedelta(days=1)))[1]
            if end <= start:
                raise InputError(
                    "DTEND is not after DTSTART", source=source, line=event["DTEND"][0]
                )
            closed.update(start + timedelta(days=n) for n in range((end - start).days))
            event = None
        elif event is not None and name in ("DTSTART", "DTEND"):
            if "VALUE=DATE" not in params and len(value.strip()) != 8:
                raise InputError(
                    "only all-day dates (like 20261225) close the window",
                    source=source,
                    line=number,
                    field=name,
                )
            try:
                day = datetime.strptime(value.strip(), "%Y%m%d").date()
            except ValueError:
                raise InputError(
                    f"{value.strip()!r} is not a date like 20261225",
                    source=source,
                    line=number,
                    field=name,
                ) from None
            try:  # DTEND is exclusive: the day before it is the last one closed
                ranges.check_date(day - timedelta(days=1 if name == "DTEND" else 0), value.strip())
            except ValueError as exc:
                raise InputError(str(exc), source=source, line=number, field=name) from None
            event[name] = (number, day)
    if event is not None:
        raise InputError("BEGIN:VEVENT is never ended", source=source, line=begun)
    return frozenset(closed)
