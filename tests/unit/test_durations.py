"""Every duration takes seconds: step delays, `min_gap`, `--lease`, `--older-than`, `--interval`."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from campaigns.planning.schedule import Delay, add_delay, parse_delay, parse_seconds
from campaigns.studio.views import describe_delay
from tests.helpers import utc
from tests.schedule_helpers import with_window
from tests.unit.test_cli import assert_one_line_error, dripmail


def test_seconds_are_a_unit_of_every_delay():
    assert parse_delay("30s") == Delay(30, "s")
    assert parse_delay(" 90 s ").as_timedelta() == timedelta(seconds=90)
    assert add_delay(utc("2026-03-02T12:00"), Delay(30, "s"), ZoneInfo("Europe/London")) == utc(
        "2026-03-02T12:00:30"
    )
    assert describe_delay(Delay(30, "s")) == "30 seconds after sign-up"
    with pytest.raises(ValueError, match=r"like 0d, 2d, 36h, 90m, 30s or 1w"):
        parse_delay("30 secs")


def test_an_interval_is_seconds_plain_or_with_a_unit():
    assert [parse_seconds(text) for text in ("0.5", "30", "30s", "2m")] == [0.5, 30, 30, 120]
    for bad in ("-1", "nan", "soon"):
        with pytest.raises(ValueError):
            parse_seconds(bad)


def test_min_gap_in_seconds_is_a_campaign_key(clinic_folder):
    window = 'send_window:\n  start: "09:00"\n  end: "17:00"\n  min_gap: 30s\n'
    assert with_window(clinic_folder, window).min_gap == timedelta(seconds=30)


def test_options_take_seconds_and_say_so_when_a_value_is_not_a_duration(tmp_path):
    # A database that does not exist yet: each option is refused before anything opens.
    db = str(tmp_path / "none.db")
    assert_one_line_error(
        dripmail("run", "--once", "--lease", "ten", "--db", db), "--lease:", "30s"
    )
    assert_one_line_error(
        dripmail("run", "--once", "--interval", "soon", "--db", db), "--interval:"
    )
    assert_one_line_error(
        dripmail("retry", "--unknown", "--older-than", "90 secs", "--db", db), "--older-than:"
    )
