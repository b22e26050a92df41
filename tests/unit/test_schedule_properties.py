"""Property tests of the pure schedule maths: windows, closures, DST, order and gaps."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.planning.schedule import (
    Delay,
    Window,
    add_delay,
    plan_due_times,
    planner,
    replan_in_order,
    zone,
)

ZONES = (
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Australia/Sydney",
    "Asia/Kolkata",  # +05:30, no DST
    "Asia/Tokyo",  # no DST
    "America/Sao_Paulo",
    "Pacific/Chatham",  # +12:45/+13:45
    "UTC",
)

instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2029, 12, 31), timezones=st.just(UTC)
)
delays = st.lists(
    st.builds(Delay, st.integers(0, 30), st.sampled_from("dwhm")), min_size=1, max_size=7
).map(lambda items: sorted(items, key=lambda d: d.as_timedelta()))


@st.composite
def windows(draw) -> Window:
    start = draw(st.integers(0, 22 * 60))
    end = draw(st.integers(start + 30, 24 * 60 - 1))
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    closed = draw(st.frozensets(st.dates(date(2024, 1, 1), date(2030, 6, 30)), max_size=30))
    return Window(time(start // 60, start % 60), time(end // 60, end % 60), days, closed)


gaps = st.sampled_from([timedelta(0), timedelta(hours=1), timedelta(hours=20), timedelta(days=3)])


def inside(at: datetime, window: Window, tz) -> bool:
    """The local clock reading at `at` is an open day, not closed, within the hours."""
    local = at.astimezone(tz)
    return (
        local.weekday() in window.days
        and local.date() not in window.closed
        and window.start <= local.time().replace(tzinfo=None) < window.end
    )


@settings(max_examples=500, deadline=None)
@given(instants, st.sampled_from(ZONES), delays, windows(), gaps)
def test_planned_times_keep_every_rule(signed_up, zone_name, steps, window, gap):
    tz = zone(zone_name)
    due = plan_due_times(signed_up, steps, window, tz, min_gap=gap)
    assert len(due) == len(steps)
    for at, delay in zip(due, steps, strict=True):
        assert inside(at, window, tz), (at.astimezone(tz), window)
        assert at >= add_delay(signed_up, delay, tz)  # never before sign-up + delay
    for before, after in itertools.pairwise(due):
        assert after > before  # step order
        assert after - before >= gap  # the minimum gap


@settings(max_examples=500, deadline=None)
@given(instants, st.sampled_from(ZONES), delays, windows(), gaps, st.integers(0, 60 * 24 * 20))
def test_late_signups_and_replans_keep_every_rule(signed_up, zone_name, steps, window, gap, late):
    # A back-dated sign-up (or a resume) planned at `now`: nothing before now, in order.
    tz = zone(zone_name)
    now = signed_up + timedelta(minutes=late)
    previous = now - timedelta(hours=2)  # the contact's last email, from any campaign
    due = plan_due_times(
        signed_up, steps, window, tz, min_gap=gap, not_before=now, previous=previous
    )
    moved = replan_in_order(now, due, window, tz, min_gap=gap, previous=previous)
    for times in (due, moved):
        assert times[0] >= now and times[0] - previous >= gap
        for at in times:
            assert inside(at, window, tz)
        for before, after in itertools.pairwise(times):
            assert after > before and after - before >= gap
    for at, delay in zip(due, steps, strict=True):
        assert at >= add_delay(signed_up, delay, tz)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(instants, st.sampled_from(ZONES), st.none() | instants), min_size=1, max_size=12
    ),
    delays,
    windows(),
    gaps,
)
def test_the_remembering_planner_plans_as_plan_due_times(signups, steps, window, gap):
    # Each sign-up twice: planned, then remembered; sign-ups read in their own zone too.
    plan = planner(steps, window, min_gap=gap)
    for signed_up, zone_name, previous in signups + signups:
        tz = zone(zone_name)
        for at in (signed_up, signed_up.astimezone(tz)):
            direct = plan_due_times(at, steps, window, tz, min_gap=gap, previous=previous)
            assert list(plan(at, tz, previous)) == direct


def test_the_planner_keeps_apart_times_that_compare_equal():
    # One instant read in UTC and in New York compares (and hashes) equal, yet "3 hours
    # later" over the spring-forward night differs between the two: no shared plan.
    tz = zone("America/New_York")
    window = Window(time(0, 0), time(23, 59))
    steps = [Delay(3, "h")]
    plan = planner(steps, window)
    in_utc = datetime(2026, 3, 8, 5, 30, tzinfo=UTC)
    in_new_york = in_utc.astimezone(tz)
    assert in_utc == in_new_york
    for signed_up in (in_utc, in_new_york):
        assert plan(signed_up, tz, None) == tuple(plan_due_times(signed_up, steps, window, tz))
    assert plan(in_utc, tz, None) != plan(in_new_york, tz, None)
