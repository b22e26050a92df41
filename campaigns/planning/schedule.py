"""Pure time maths: delays, send windows, time zones and DST. No I/O, no clock.

Every function takes and returns aware datetimes; results are in UTC.

DST rules (tested):
- a local time that does not exist (spring forward) is moved forward by the gap
  (02:30 on the New York spring-forward Sunday becomes 03:30 EDT);
- a local time that happens twice (fall back) means the first of the two (fold=0);
- a window's closing time that does not exist closes it early, at the same wall time
  read with the offset after the gap, so every due time's local clock reading lies
  inside the window's hours.

Closures (clinic holidays) are whole local dates on which the window does not open.
`min_gap` is elapsed time between two emails to one contact (a frequency cap).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campaigns.planning import ranges

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DELAY = re.compile(r"^\s*(\d+)\s*([dwhms])\s*$", re.ASCII)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Delay:
    """A step's delay after sign-up: `d`/`w` are calendar days, `h`/`m`/`s` elapsed time."""

    amount: int
    unit: str  # one of d, w, h, m, s

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"

    @property
    def is_calendar(self) -> bool:
        return self.unit in ("d", "w")

    def as_timedelta(self) -> timedelta:
        """As elapsed time (a day is 24 hours): for ages and leases, not for schedules."""
        return timedelta(seconds=self.amount * _UNIT_SECONDS[self.unit])


def parse_delay(text: str) -> Delay:
    """Parse `0d`, `2d`, `36h`, `90m`, `30s`, `1w`; raise ValueError with what is allowed.

    Every duration dripmail reads comes through here (delays, min_gap, --lease,
    --older-than): one over ranges.MAX_DURATION is refused before it becomes a timedelta.
    """
    match = _DELAY.match(str(text))
    if not match:
        raise ValueError(
            f"{text!r} is not a delay: write a whole number and a unit, "
            "like 0d, 2d, 36h, 90m, 30s or 1w"
        )
    digits, unit = match.group(1), match.group(2)
    # Past 30 digits it is out of range anyway, and int() refuses past 4,300 digits.
    amount = int(digits) if len(digits) <= 30 else None
    seconds = float("inf") if amount is None else amount * _UNIT_SECONDS[unit]
    ranges.check_seconds(seconds, str(text).strip())
    assert amount is not None
    return Delay(amount, unit)


def parse_seconds(text: str) -> float:
    """A duration in seconds: a plain number (`0.5`) or a delay (`30s`, `2m`, `1h`)."""
    try:
        value = float(text)
    except ValueError:
        return parse_delay(text).as_timedelta().total_seconds()
    if not 0 <= value < float("inf"):  # also refuses nan
        raise ValueError(f"{text!r} is not a duration: write seconds, like 30 or 30s, or 2m")
    ranges.check_seconds(value, str(text).strip())
    return value


def parse_date(value: str | date) -> date:
    """An ISO date (`2026-12-25`, or a date YAML already read) within the range.

    Every calendar date dripmail reads comes through here: closures, `--date`.
    """
    if isinstance(value, datetime) or not isinstance(value, (date, str)):
        raise ValueError(f"{value!r} is not a date: write it like 2026-12-25")
    if isinstance(value, str):
        text = value.strip()
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text, flags=re.ASCII):
                raise ValueError
            value = date.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{ranges.shown(text)} is not a date: write it like 2026-12-25"
            ) from None
    return ranges.check_date(value)


def parse_clock(text: str) -> time:
    """Parse a local time of day written `HH:MM` (quoted in YAML)."""
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", str(text).strip())
    if not match:
        raise ValueError(f'{text!r} is not a time of day: write it quoted, like "09:00"')
    return time(int(match.group(1)), int(match.group(2)))


def zone(name: str) -> ZoneInfo:
    """The IANA zone called `name`, or ValueError naming it."""
    try:
        if not name or name != name.strip():
            raise ValueError
        return ZoneInfo(name)
    # OSError: a name too long to be a file name (zoneinfo looks for a file of that name).
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError) as exc:
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name like Europe/London)"
        ) from exc


def to_utc(local: datetime) -> datetime:
    """An aware local wall time to UTC, resolving DST gaps forward and overlaps to the first."""
    if local.tzinfo is None:
        raise ValueError("naive datetime")
    # zoneinfo with fold=0 maps a nonexistent time using the offset before the gap,
    # which lands the instant after the gap: exactly "moved forward by the gap".
    return local.replace(fold=0).astimezone(UTC)


def localize(naive: datetime, tz: ZoneInfo) -> datetime:
    """A naive wall-clock time read in `tz`, as a UTC instant (DST rules above)."""
    return to_utc(naive.replace(tzinfo=tz))


# What a bad date-time's message shows, so that the fix is in the message.
INSTANT_EXAMPLE = "write it like 2026-03-09T14:00 or 2026-03-09T14:00+01:00"


def parse_instant(text: str | datetime, tz: ZoneInfo) -> datetime:
    """ISO 8601 date-time (or a datetime); one without an offset is read in `tz`. UTC.

    Every date-time dripmail reads comes through here (--now, sign-up times, --at): one
    outside the range (ranges.RANGE_TEXT) is a ranges.OutOfRange (a ValueError) saying so.
    """
    if isinstance(text, datetime):
        value, text = text, text.isoformat()
    else:
        try:
            value = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{text!r} is not an ISO date-time: {INSTANT_EXAMPLE}") from None
    try:
        instant = localize(value, tz) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 moved across midnight by the offset
        raise ranges.out_of_range(str(text).strip()) from None
    return ranges.check_instant(instant, str(text).strip())


def add_delay(start: datetime, delay: Delay, tz: ZoneInfo) -> datetime:
    """`start` plus `delay`: calendar days keep the local time of day, hours are elapsed."""
    if not delay.is_calendar:  # h, m, s: elapsed time
        return (start + delay.as_timedelta()).astimezone(UTC)
    days = delay.amount * (7 if delay.unit == "w" else 1)
    local = start.astimezone(tz)
    wall = local.replace(tzinfo=None) + timedelta(days=days)
    return localize(wall, tz)


@dataclass(frozen=True)
class Window:
    """Local hours and weekdays when a contact may be emailed; `end` is exclusive."""

    start: time = time(9, 0)
    end: time = time(17, 0)
    days: frozenset[int] = frozenset(range(7))  # Monday is 0
    closed: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        if not self.end > self.start:
            raise ValueError("the send window must end after it starts")
        if not self.days:
            raise ValueError("the send window needs at least one day")

    def opens_on(self, day: date) -> bool:
        return day.weekday() in self.days and day not in self.closed

    def bounds(self, day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """The UTC instants at which the window opens and closes on local `day`."""
        return _bounds(self, day, tz)


@lru_cache(maxsize=8192)
def _bounds(window: Window, day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    # Cached: planning 100,000 sign-ups asks for the same few days' openings again and again.
    opening = localize(datetime.combine(day, window.start), tz)
    # fold=1 reads a nonexistent closing time with the offset after the gap (earlier), so
    # nothing is planned at a local reading past `end`; ambiguous ones keep the first.
    wall = datetime.combine(day, window.end, tzinfo=tz)
    closing = min(to_utc(wall), wall.replace(fold=1).astimezone(UTC))
    return opening, closing


ALWAYS = Window(time(0, 0), time(23, 59), frozenset(range(7)))

_SEARCH_DAYS = 400  # a window with closures still opens within a year and a bit


def opening_containing(instant: datetime, window: Window, tz: ZoneInfo) -> datetime | None:
    """The start of the window opening `instant` falls in, or None when it is outside."""
    day = instant.astimezone(tz).date()
    for candidate in (day, day - timedelta(days=1)):
        if window.opens_on(candidate):
            opening, closing = window.bounds(candidate, tz)
            if opening <= instant < closing:
                return opening
    return None


def next_opening(instant: datetime, window: Window, tz: ZoneInfo) -> datetime:
    """The first window opening that starts strictly after `instant`."""
    day = instant.astimezone(tz).date() - timedelta(days=1)
    for offset in range(_SEARCH_DAYS):
        candidate = day + timedelta(days=offset)
        if window.opens_on(candidate):
            opening, closing = window.bounds(candidate, tz)
            # A window that lies wholly in a spring-forward gap does not open that day.
            if instant < opening < closing:
                return opening
    raise ValueError("the send window never opens")


def into_window(instant: datetime, window: Window, tz: ZoneInfo) -> datetime:
    """`instant` itself when the window is open then, else the next opening."""
    if opening_containing(instant, window, tz) is not None:
        return instant.astimezone(UTC)
    return next_opening(instant, window, tz)


def plan_due_times(
    signed_up_at: datetime,
    delays: Sequence[Delay],
    window: Window,
    tz: ZoneInfo,
    *,
    min_gap: timedelta = timedelta(0),
    not_before: datetime | None = None,
    previous: datetime | None = None,
) -> list[datetime]:
    """Due times for a sequence: sign-up plus delay, moved into the window, one per opening.

    A step that would land in the same opening as the one before it (or before it)
    moves to the next opening, so steps keep their order and never arrive together.
    Each is also at least `min_gap` after the one before (and after `previous`, the
    contact's last email from anywhere) and never before `not_before` (the engine's now,
    for a back-dated sign-up: overdue steps then catch up one per opening).
    """
    due: list[datetime] = []
    last = previous
    for delay in delays:
        at = add_delay(signed_up_at, delay, tz)
        if not_before is not None:
            at = max(at, not_before)
        at = place(at, last, window, tz, min_gap)
        due.append(at)
        last = at
    return due


# Due times for (sign-up, zone, the contact's last email or None), as planner() makes it.
Plan = Callable[[datetime, ZoneInfo, datetime | None], tuple[datetime, ...]]

_PLANS_KEPT = 1 << 16


def planner(delays: Sequence[Delay], window: Window, *, min_gap: timedelta = timedelta(0)) -> Plan:
    """plan_due_times for one sequence, remembered per (sign-up, zone, previous email).

    Contacts imported together often share a sign-up instant (a blank column means now,
    exports keep whole minutes) and a zone: those are planned once.
    """
    delays = tuple(delays)
    plans: dict[tuple, tuple[datetime, ...]] = {}

    def plan(
        signed_up_at: datetime, tz: ZoneInfo, previous: datetime | None
    ) -> tuple[datetime, ...]:
        key = (_exactly(signed_up_at), tz, previous and _exactly(previous))
        due = plans.get(key)
        if due is None:
            if len(plans) >= _PLANS_KEPT:
                plans.clear()  # a bound on memory, for imports of unrelated sign-up times
            due = plans[key] = tuple(
                plan_due_times(signed_up_at, delays, window, tz, min_gap=min_gap, previous=previous)
            )
        return due

    return plan


def _exactly(value: datetime) -> tuple:
    # One instant read in two zones compares (and hashes) equal, as do the two readings of
    # a fall-back hour; plan_due_times can tell them apart (it adds hours on the wall clock
    # of the zone it is given), so the key is the reading itself.
    return value.replace(tzinfo=None), value.fold, value.tzinfo


def place(
    at: datetime,
    previous: datetime | None,
    window: Window,
    tz: ZoneInfo,
    min_gap: timedelta = timedelta(0),
) -> datetime:
    """`at`, moved to keep `min_gap` after `previous`, into the window, not in its opening."""
    if previous is not None:
        at = max(at, previous + min_gap)
    at = into_window(at, window, tz)
    if previous is not None:
        at = after_previous(at, previous, window, tz)
    return at


def after_previous(at: datetime, previous: datetime, window: Window, tz: ZoneInfo) -> datetime:
    """`at`, or the opening after `previous`'s when `at` would share or precede it."""
    previous_opening = opening_containing(previous, window, tz) or previous
    if at < previous or opening_containing(at, window, tz) == previous_opening:
        return next_opening(previous, window, tz)
    return at


def replan_in_order(
    start: datetime,
    pending: Iterable[datetime],
    window: Window,
    tz: ZoneInfo,
    *,
    min_gap: timedelta = timedelta(0),
    previous: datetime | None = None,
) -> list[datetime]:
    """Move pending due times so each goes at or after `start`, one per opening, in order.

    `previous` is the contact's last email already gone (kept `min_gap` away from it and
    out of its opening).
    """
    result: list[datetime] = []
    for at in pending:
        at = place(max(at, start), previous, window, tz, min_gap)
        result.append(at)
        previous = at
    return result
