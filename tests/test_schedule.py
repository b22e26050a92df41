"""Due times to the second across time zones and DST changes (hand-computed expectations)."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest

from campaigns.schedule import (
    Window,
    add_delay,
    localize,
    next_opening,
    opening_containing,
    parse_clock,
    parse_delay,
    parse_instant,
    plan_due_times,
    replan_in_order,
    zone,
)
from tests.helpers import utc

NY = zone("America/New_York")
WEEKDAYS = Window(time(9), time(17), frozenset(range(5)))
EVERY_DAY = Window()


def d(*texts: str):
    return [parse_delay(t) for t in texts]


def test_delays_parse_and_reject_prose():
    assert [str(x) for x in d("0d", "2d", "36h", "90m", "1w")] == ["0d", "2d", "36h", "90m", "1w"]
    with pytest.raises(ValueError, match="2 weeks later"):
        parse_delay("2 weeks later")
    with pytest.raises(ValueError, match='quoted, like "09:00"'):
        parse_clock("9am")


def test_unknown_zone_is_named():
    with pytest.raises(ValueError, match="Mars/Olympus"):
        zone("Mars/Olympus")


def test_nonexistent_local_time_moves_forward_by_the_gap():
    # 02:30 does not exist in New York on 8 March 2026: it becomes 03:30 EDT (07:30 UTC).
    assert localize(datetime(2026, 3, 8, 2, 30), NY) == utc("2026-03-08T07:30")
    assert parse_instant("2026-03-08T02:30", NY) == utc("2026-03-08T07:30")


def test_repeated_local_time_means_the_first():
    # 01:30 happens twice on 1 November 2026; the first is EDT (UTC-4).
    assert parse_instant("2026-11-01T01:30", NY) == utc("2026-11-01T05:30")


def test_signup_on_spring_forward_night_new_york():
    signed_up = parse_instant("2026-03-08T01:30", NY)  # EST, 06:30 UTC
    due = plan_due_times(signed_up, d("0d", "2d", "36h"), EVERY_DAY, NY)
    assert due == [
        utc("2026-03-08T13:00"),  # 09:00 EDT the same Sunday
        utc("2026-03-10T13:00"),  # 01:30 EDT two days later -> 09:00 EDT
        utc("2026-03-11T13:00"),  # 36h elapsed = 10 Mar 14:30 EDT, same opening as step 2 -> next
    ]


def test_signup_on_fall_back_night_new_york():
    signed_up = parse_instant("2026-11-01T01:30", NY)  # first 01:30, EDT
    due = plan_due_times(signed_up, d("0d", "1d", "1w"), EVERY_DAY, NY)
    assert due == [
        utc("2026-11-01T14:00"),  # 09:00 EST (the clocks went back at 02:00)
        utc("2026-11-02T14:00"),
        utc("2026-11-08T14:00"),
    ]


def test_calendar_days_keep_local_time_hours_are_elapsed():
    signed_up = parse_instant("2026-03-07T10:00", NY)  # EST, 15:00 UTC
    assert add_delay(signed_up, parse_delay("1d"), NY) == utc("2026-03-08T14:00")  # 10:00 EDT
    assert add_delay(signed_up, parse_delay("24h"), NY) == utc("2026-03-08T15:00")  # 11:00 EDT


def test_weekend_and_evening_wait_for_monday_morning():
    friday_evening = parse_instant("2026-03-06T18:00", NY)
    assert plan_due_times(friday_evening, d("0d"), WEEKDAYS, NY) == [utc("2026-03-09T13:00")]


def test_window_end_is_exclusive():
    at_five = parse_instant("2026-03-10T17:00", NY)
    assert opening_containing(at_five, WEEKDAYS, NY) is None
    assert next_opening(at_five, WEEKDAYS, NY) == utc("2026-03-11T13:00")
    just_before = parse_instant("2026-03-10T16:59", NY)
    assert opening_containing(just_before, WEEKDAYS, NY) == utc("2026-03-10T13:00")


@pytest.mark.parametrize(
    ("zone_name", "signed_up", "expected"),
    [
        ("Europe/London", "2026-03-28T22:00", "2026-03-29T08:00"),  # 09:00 BST after the change
        ("Australia/Sydney", "2026-04-05T02:30", "2026-04-04T23:00"),  # 2:30 AEST -> 09:00 AEST
        ("Asia/Kolkata", "2026-01-01T08:59", "2026-01-01T03:30"),  # +05:30: 09:00 IST
    ],
)
def test_other_zones_open_at_nine_local(zone_name, signed_up, expected):
    tz = zone(zone_name)
    assert plan_due_times(parse_instant(signed_up, tz), d("0d"), EVERY_DAY, tz) == [utc(expected)]


def test_steps_never_share_an_opening_and_keep_order():
    signed_up = parse_instant("2026-03-10T09:30", NY)
    due = plan_due_times(signed_up, d("0d", "2h", "3h", "1d"), WEEKDAYS, NY)
    assert due == [
        utc("2026-03-10T13:30"),
        utc("2026-03-11T13:00"),
        utc("2026-03-12T13:00"),
        utc("2026-03-13T13:00"),
    ]


def test_closed_days_are_skipped():
    christmas = Window(time(9), time(17), frozenset(range(5)), frozenset({date(2026, 12, 25)}))
    signed_up = parse_instant("2026-12-24T18:00", NY)
    assert plan_due_times(signed_up, d("0d"), christmas, NY) == [utc("2026-12-28T14:00")]


def test_replan_moves_overdue_steps_one_opening_apart_in_order():
    start = utc("2026-03-16T13:00")  # Monday 09:00 EDT
    overdue = [utc("2026-03-10T13:00"), utc("2026-03-12T13:00"), utc("2026-03-30T13:00")]
    assert replan_in_order(start, overdue, WEEKDAYS, NY) == [
        utc("2026-03-16T13:00"),
        utc("2026-03-17T13:00"),
        utc("2026-03-30T13:00"),  # not overdue: stays where it was
    ]
