"""Due times to the second across time zones and DST changes (hand-computed expectations)."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest

from campaigns.planning.schedule import (
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


# -- issue 4: named cases, closures, min_gap, .ics -----------------------------------------

from datetime import date as _date  # noqa: E402
from datetime import timedelta  # noqa: E402

from campaigns.authoring.spec import load_folder, parse_ics  # noqa: E402
from campaigns.errors import InputError  # noqa: E402

MON_FRI_XMAS = Window(time(9), time(17), frozenset(range(5)), frozenset({_date(2026, 12, 25)}))


def test_new_york_spring_forward_sunday_0130_weekday_window():
    # 01:30 EST on Sunday 8 March 2026 (06:30 UTC). Mon-Fri 09:00-17:00.
    signed_up = parse_instant("2026-03-08T01:30", NY)
    assert signed_up == utc("2026-03-08T06:30")
    due = plan_due_times(signed_up, d("0d", "1d", "36h"), MON_FRI_XMAS, NY)
    # 0d: Sunday is off -> Monday 09:00 EDT (13:00 UTC, the clocks went forward).
    # 1d: Monday 01:30 EDT -> 09:00 Monday, same opening -> Tuesday 09:00 EDT.
    # 36h: Monday 18:30 UTC = 14:30 EDT, behind Tuesday's -> Wednesday 09:00 EDT.
    assert due == [utc("2026-03-09T13:00"), utc("2026-03-10T13:00"), utc("2026-03-11T13:00")]


def test_new_york_fall_back_sunday_0130_weekday_window():
    # 01:30 happens twice on Sunday 1 November 2026: the first, EDT (05:30 UTC).
    signed_up = parse_instant("2026-11-01T01:30", NY)
    assert signed_up == utc("2026-11-01T05:30")
    due = plan_due_times(signed_up, d("0d", "1d", "2d"), MON_FRI_XMAS, NY)
    # Monday 09:00 EST is 14:00 UTC now; 1d lands in Monday's opening -> Tuesday;
    # 2d is Tuesday 01:30 EST -> 09:00, taken -> Wednesday.
    assert due == [utc("2026-11-02T14:00"), utc("2026-11-03T14:00"), utc("2026-11-04T14:00")]


def test_sydney_across_the_end_of_daylight_time():
    sydney = zone("Australia/Sydney")
    # Saturday 4 April 2026 20:00 AEDT (+11); DST ends at 03:00 on Sunday 5 April.
    signed_up = parse_instant("2026-04-04T20:00", sydney)
    assert signed_up == utc("2026-04-04T09:00")
    due = plan_due_times(signed_up, d("0d", "2d"), MON_FRI_XMAS, sydney)
    # Monday 6 April 09:00 AEST (+10) = Sunday 23:00 UTC; 2d = Monday 20:00 -> Tuesday 09:00.
    assert due == [utc("2026-04-05T23:00"), utc("2026-04-06T23:00")]


def test_kolkata_half_hour_offset_with_christmas_closed():
    kolkata = zone("Asia/Kolkata")
    # Wednesday 23 December 2026 16:45 IST (+05:30) = 11:15 UTC.
    signed_up = parse_instant("2026-12-23T16:45", kolkata)
    due = plan_due_times(signed_up, d("0d", "1d", "2d", "3d"), MON_FRI_XMAS, kolkata)
    assert due == [
        utc("2026-12-23T11:15"),  # inside the window: at once
        utc("2026-12-24T11:15"),  # Thursday, its own opening
        utc("2026-12-28T03:30"),  # Friday 25th closed, weekend off -> Monday 09:00 IST
        utc("2026-12-29T03:30"),  # Saturday -> Monday, taken -> Tuesday 09:00 IST
    ]


def test_christmas_closed_weekday_window_new_york():
    # Thursday 24 December 2026 16:30 EST; 1d would be Christmas Day.
    due = plan_due_times(parse_instant("2026-12-24T16:30", NY), d("0d", "1d"), MON_FRI_XMAS, NY)
    assert due == [utc("2026-12-24T21:30"), utc("2026-12-28T14:00")]  # Monday 09:00 EST


def test_min_gap_pushes_a_close_step_to_the_next_opening():
    # Monday 2 March 2026 10:00 EST; the second step 1h later, but min_gap is 20h.
    due = plan_due_times(
        parse_instant("2026-03-02T10:00", NY),
        d("0d", "1h"),
        EVERY_DAY,
        NY,
        min_gap=timedelta(hours=20),
    )
    # 10:00 + 20h = Tuesday 06:00 EST -> the window opens at 09:00 EST (14:00 UTC).
    assert due == [utc("2026-03-02T15:00"), utc("2026-03-03T14:00")]


def test_min_gap_counts_from_the_contacts_last_email_anywhere():
    due = plan_due_times(
        parse_instant("2026-03-02T10:00", NY),
        d("0d"),
        EVERY_DAY,
        NY,
        min_gap=timedelta(hours=20),
        previous=utc("2026-03-02T14:00"),  # 09:00 EST, another campaign
    )
    assert due == [utc("2026-03-03T14:00")]  # 20h later is 05:00 -> 09:00 Tuesday


def test_a_back_dated_signup_is_planned_from_now_one_per_opening():
    due = plan_due_times(
        parse_instant("2026-02-02T10:00", NY),
        d("0d", "2d", "4d"),
        EVERY_DAY,
        NY,
        not_before=utc("2026-03-02T16:00"),  # Monday 11:00 EST, every step overdue
    )
    assert due == [utc("2026-03-02T16:00"), utc("2026-03-03T14:00"), utc("2026-03-04T14:00")]


ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//clinic//holidays//EN
BEGIN:VEVENT
UID:xmas@clinic
DTSTART;VALUE=DATE:20261225
DTEND;VALUE=DATE:20261227
SUMMARY:Christmas and Boxing Day
END:VEVENT
BEGIN:VEVENT
UID:ny@clinic
DTSTART;VALUE=DATE:20270101
SUMMARY:New Year
END:VEVENT
END:VCALENDAR
"""


def test_ics_all_day_events_close_their_dates():
    assert parse_ics(ICS, "holidays.ics") == {
        _date(2026, 12, 25),
        _date(2026, 12, 26),
        _date(2027, 1, 1),
    }


def test_ics_timed_event_is_refused_with_its_line():
    bad = ICS.replace("DTSTART;VALUE=DATE:20270101", "DTSTART:20270101T090000Z")
    with pytest.raises(InputError) as caught:
        parse_ics(bad, "holidays.ics")
    assert str(caught.value).startswith("holidays.ics:12: DTSTART: only all-day dates")


def _with_window(folder, window_yaml: str) -> None:
    path = folder / "campaign.yaml"
    text = path.read_text()
    start = text.index("send_window:")
    end = text.index("sender:")
    path.write_text(text[:start] + window_yaml + text[end:])


def test_closed_ics_is_read_from_the_folder_and_published_with_the_version(clinic_folder):
    before = load_folder(clinic_folder)
    (clinic_folder / "holidays.ics").write_text(ICS)
    _with_window(clinic_folder, "send_window:\n  closed: holidays.ics\n  min_gap: 20h\n")
    campaign = load_folder(clinic_folder)
    assert "holidays.ics" in campaign.files
    assert _date(2026, 12, 26) in campaign.window.closed
    assert campaign.min_gap == timedelta(hours=20)
    assert campaign.version != before.version
    (clinic_folder / "holidays.ics").write_text(ICS.replace("20270101", "20270102"))
    assert load_folder(clinic_folder).version != campaign.version  # the .ics is hashed in


def test_closed_dates_as_a_list_and_errors_name_the_line(clinic_folder):
    _with_window(clinic_folder, "send_window:\n  closed: [2026-12-25, '2027-01-01']\n")
    assert load_folder(clinic_folder).window.closed == {_date(2026, 12, 25), _date(2027, 1, 1)}
    _with_window(clinic_folder, "send_window:\n  closed: missing.ics\n")
    with pytest.raises(InputError, match=r"campaign.yaml:\d+: send_window.closed: no such file"):
        load_folder(clinic_folder)
    _with_window(clinic_folder, "send_window:\n  min_gap: soon\n")
    with pytest.raises(InputError, match=r"campaign.yaml:\d+: send_window.min_gap: 'soon'"):
        load_folder(clinic_folder)


def test_schedule_cli_shows_sample_zones_with_days_off_closures_and_dst(clinic_folder):
    from typer.testing import CliRunner

    from cli import app

    _with_window(
        clinic_folder,
        'send_window:\n  start: "09:00"\n  end: "17:00"\n  days: [mon, tue, wed, thu, fri]\n'
        "  closed: [2026-12-25]\n",
    )
    db = clinic_folder.parent / "schedule.db"
    args = [
        "schedule",
        str(clinic_folder),
        "--sample",
        "--db",
        str(db),
        "--zone",
        "America/New_York",
    ]
    result = CliRunner().invoke(
        app, [*args, "--signed-up-at", "2026-03-07T01:30"], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    # Saturday 7 March, 01:30 EST: the first email waits for Monday 09:00, by then EDT.
    assert "Mon 2026-03-09 09:00 EDT" in result.output
    assert "no sending on Sat; DST: UTC-04:00 (signed up at UTC-05:00)" in result.output
    result = CliRunner().invoke(
        app, [*args, "--signed-up-at", "2026-12-23T10:00"], env={"COLUMNS": "250"}
    )
    # 0d Wed 23rd, 2d Fri 25th is closed -> Mon 28th; 4d Sun 27th -> Mon, taken -> Tue.
    assert "Fri 2026-12-25" not in result.output
    assert "Mon 2026-12-28 10:00 EST" not in result.output
    assert "Mon 2026-12-28 09:00 EST" in result.output and "closed 2026-12-25" in result.output
    bad = CliRunner().invoke(app, [*args, "--zone", "Mars/Olympus"])
    assert bad.exit_code == 2 and "--zone: unknown time zone 'Mars/Olympus'" in bad.output


def test_a_window_wholly_inside_the_spring_forward_gap_does_not_open_that_day():
    # London skips 01:00-02:00 on Sunday 31 March 2024: a 01:00-01:30 window has no
    # minute that day, so nothing goes at 02:00 BST (past `end`); the next opening is
    # Monday 01:00 BST (00:00 UTC). Found by test_schedule_properties.
    london = zone("Europe/London")
    night = Window(time(1), time(1, 30))
    assert next_opening(utc("2024-03-30T23:00"), night, london) == utc("2024-04-01T00:00")
    assert plan_due_times(utc("2024-03-30T23:00"), d("0d"), night, london) == [
        utc("2024-04-01T00:00")
    ]
