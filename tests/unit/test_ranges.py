"""Every number and date has a range: out of it is one line and exit 2, never a traceback.

Delays and gaps go up to 10 years, dates from 1970 to 2100 (campaigns/planning/ranges.py).
`check` refuses exactly what `enroll` would: both read a campaign through one validation.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.authoring.spec import load_files, read_folder
from campaigns.errors import InputError
from campaigns.planning.plans import plan
from campaigns.planning.schedule import parse_delay, parse_instant, zone
from examples import ARTICLE
from tests.unit.test_cli import assert_one_line_error, dripmail

WINDOW = "  days: [mon, tue, wed, thu, fri, sat, sun]\n"


def edit(folder: Path, old: str, new: str) -> Path:
    path = folder / "campaign.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return folder


def line_of(folder: Path, needle: str) -> int:
    lines = (folder / "campaign.yaml").read_text().splitlines()
    return next(n for n, line in enumerate(lines, start=1) if needle in line)


def check_and_enroll(folder: Path, tmp_path: Path, *needles: str) -> None:
    """`check` and `enroll` both refuse the campaign with the same one line."""
    checked = dripmail("check", str(folder))
    assert_one_line_error(checked, *needles)
    enrolled = dripmail(
        "enroll", str(folder), "--email", "pat@example.com", "--db", str(tmp_path / "t.db")
    )
    assert_one_line_error(enrolled, *needles)
    assert enrolled.stderr == checked.stderr


# -- the campaign file ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "delay",
    [
        "99999999999d",  # OverflowError in check and enroll today
        "99999999999999999999999h",
        "3654d",  # check passed, enroll raised OverflowError (for the longest of these)
        "522w",
        "87673h",
    ],
)
def test_a_delay_over_10_years_is_one_line_in_check_and_enroll(clinic_folder, tmp_path, delay):
    edit(clinic_folder, "delay: 14d", f"delay: {delay}")
    where = f"campaign.yaml:{line_of(clinic_folder, delay)}"
    check_and_enroll(clinic_folder, tmp_path, where, "steps[5].delay", delay, "10 years")


def test_a_delay_of_ten_years_is_planned(clinic_folder, tmp_path):
    edit(clinic_folder, "delay: 14d", "delay: 3653d")
    assert dripmail("check", str(clinic_folder)).exit_code == 0
    result = dripmail(
        "enroll",
        str(clinic_folder),
        "--email",
        "pat@example.com",
        "--signed-up-at",
        "2100-12-31T23:59",
        "--timezone",
        "Pacific/Kiritimati",
        "--db",
        str(tmp_path / "t.db"),
    )
    assert result.exit_code == 0, result.output
    assert "6 emails planned" in result.stdout


@pytest.mark.parametrize("gap", ["99999999999w", "3000000d", "3654d"])
def test_a_min_gap_over_10_years_is_one_line_in_check_and_enroll(clinic_folder, tmp_path, gap):
    edit(clinic_folder, WINDOW, f"{WINDOW}  min_gap: {gap}\n")
    where = f"campaign.yaml:{line_of(clinic_folder, 'min_gap')}"
    check_and_enroll(clinic_folder, tmp_path, where, "send_window.min_gap", "10 years")


@pytest.mark.parametrize(
    ("closed", "needle"),
    [
        ("[2026-13-45]", "'2026-13-45' is not a date"),  # a ValueError traceback today
        ('["2026-02-30"]', "'2026-02-30' is not a date"),
        ("[0001-01-01]", "1970-01-01 to 2100-12-31"),
        ("[2101-01-01]", "1970-01-01 to 2100-12-31"),
        ('["10000-01-01"]', "is not a date"),
    ],
)
def test_a_bad_closed_date_names_the_file_line_and_item(clinic_folder, tmp_path, closed, needle):
    edit(clinic_folder, WINDOW, f"{WINDOW}  closed: {closed}\n")
    where = f"campaign.yaml:{line_of(clinic_folder, 'closed:')}"
    check_and_enroll(clinic_folder, tmp_path, where, "send_window.closed[0]:", needle)


def test_a_bad_closed_date_in_a_block_list_names_its_own_line(clinic_folder, tmp_path):
    edit(clinic_folder, WINDOW, f"{WINDOW}  closed:\n    - 2026-12-25\n    - 2026-13-45\n")
    where = f"campaign.yaml:{line_of(clinic_folder, '2026-13-45')}"
    check_and_enroll(clinic_folder, tmp_path, where, "send_window.closed[1]:", "not a date")


def _ics(folder: Path, start: str, end: str) -> None:
    edit(folder, WINDOW, f"{WINDOW}  closed: holidays.ics\n")
    (folder / "holidays.ics").write_text(
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\n"
        f"DTSTART;VALUE=DATE:{start}\nDTEND;VALUE=DATE:{end}\n"
        "END:VEVENT\nEND:VCALENDAR\n"
    )


def test_ics_dates_outside_the_range_are_refused_by_their_line(clinic_folder, tmp_path):
    # Today: 22 seconds and millions of dates held in memory, then `check` passes.
    _ics(clinic_folder, "00010101", "99991231")
    check_and_enroll(clinic_folder, tmp_path, "holidays.ics:3", "DTSTART", "1970-01-01")


def test_closures_that_shut_the_window_for_over_a_year_are_refused(clinic_folder, tmp_path):
    # Today `check` passes and `enroll` ends in "ValueError: the send window never opens".
    _ics(clinic_folder, "20260101", "20290101")
    check_and_enroll(clinic_folder, tmp_path, "send_window.closed", "shut", "366 days")


def test_a_campaign_of_more_steps_than_the_bound_is_refused(clinic_folder, tmp_path):
    count = 301  # ranges.MAX_STEPS + 1
    steps = "".join(f"- file: s{n:03}.md\n  delay: {n}d\n" for n in range(count))
    for n in range(count):
        (clinic_folder / f"s{n:03}.md").write_text(f"# Step {n}\n\nText.\n")
    text = (clinic_folder / "campaign.yaml").read_text()
    (clinic_folder / "campaign.yaml").write_text(text[: text.index("steps:")] + "steps:\n" + steps)
    check_and_enroll(clinic_folder, tmp_path, "steps", "at most 300")


def test_a_time_zone_name_too_long_for_a_file_name_is_one_line(clinic_folder, tmp_path):
    # OSError (File name too long) from zoneinfo today.
    edit(clinic_folder, "timezone: America/New_York", "timezone: " + "a" * 300)
    check_and_enroll(clinic_folder, tmp_path, "timezone", "unknown time zone")


# -- what check passes, enroll plans -------------------------------------------------------

_amounts = st.one_of(st.integers(0, 4000), st.integers(0, 10**30))
_delay_text = st.builds(lambda n, u: f"{n}{u}", _amounts, st.sampled_from("dwhms"))
_days = st.dates(min_value=datetime(1, 1, 1).date(), max_value=datetime(9999, 12, 31).date())
_signups = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
_zones = st.sampled_from(["UTC", "Pacific/Kiritimati", "Etc/GMT+12", "America/New_York"])


@settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    delays=st.lists(_delay_text, min_size=1, max_size=3),
    gap=st.one_of(st.none(), _delay_text),
    closed=st.lists(_days, max_size=3),
    signup=_signups,
    tz=_zones,
)
def test_a_campaign_that_loads_plans_every_signup_in_range(delays, gap, closed, signup, tz):
    """For any delays, gap and closures: the campaign is refused with an InputError, or
    every sign-up the range takes is planned (never an OverflowError or ValueError)."""
    files = {
        "campaign.yaml": (
            "name: c\nfrom: {name: C, address: c@example.com}\n"
            "brand: {organisation: C, postal_address: 1 Street}\n"
            "send_window:\n"
            + (f"  min_gap: {gap}\n" if gap else "")
            + f"  closed: [{', '.join(day.isoformat() for day in closed)}]\n"
            + "steps:\n"
            + "".join(f"- file: s{n}.md\n  delay: {d}\n" for n, d in enumerate(delays))
        ),
        **{f"s{n}.md": f"# Step {n}\n\nText.\n" for n in range(len(delays))},
    }
    try:
        campaign = load_files(files)
    except InputError:
        return
    try:
        at = parse_instant(signup.isoformat(), zone(tz))
    except ValueError:
        return  # out of the range: refused where it is read
    due = plan(campaign, at, tz)
    assert len(due) == len(delays)


def test_the_bounds_themselves_are_planned(clinic_folder):
    edit(clinic_folder, WINDOW, f"{WINDOW}  min_gap: 3653d\n  closed: [1970-01-01, 2100-12-31]\n")
    edit(clinic_folder, "delay: 14d", "delay: 521w")
    campaign = load_files(read_folder(clinic_folder), origin=str(clinic_folder))
    for text in ("1970-01-01T00:00Z", "2100-12-31T23:59:59.999999Z"):
        for tz in ("Pacific/Kiritimati", "Etc/GMT+12"):
            assert len(plan(campaign, parse_instant(text, zone(tz)), tz)) == 6


# -- one parser each -----------------------------------------------------------------------


def test_one_parser_each_refuses_out_of_range_values_with_a_value_error():
    from campaigns.planning import ranges
    from campaigns.planning.schedule import parse_date

    assert parse_delay("3653d").as_timedelta() == ranges.MAX_DURATION
    assert parse_date("2100-12-31").year == 2100
    for bad in ("3654d", "99999999999999999999999s"):
        with pytest.raises(ValueError, match="10 years"):
            parse_delay(bad)
    for bad in ("1969-12-31", "2101-01-01", "0001-01-01"):
        with pytest.raises(ValueError, match="1970-01-01 to 2100-12-31"):
            parse_date(bad)
    for bad in ("9999-12-31T23:59:59", "0001-01-01T00:00", "1969-12-30T23:59Z"):
        with pytest.raises(ValueError, match="1970-01-01 to 2100-12-31"):
            parse_instant(bad, zone("America/New_York"))
    # Any local time of a date in the range is taken, in any zone.
    for tz in ("Pacific/Kiritimati", "Etc/GMT+12"):
        parse_instant("1970-01-01T00:00", zone(tz))
        parse_instant("2100-12-31T23:59:59", zone(tz))


# -- command-line options ------------------------------------------------------------------


@pytest.mark.parametrize(
    "now", ["9999-12-31T23:59:59", "0001-01-01T00:00", "1969-12-30T23:59Z", "2101-01-02T00:00Z"]
)
def test_now_outside_1970_to_2100_is_one_line(clinic_folder, tmp_path, now):
    db = str(tmp_path / "t.db")
    for args in (
        ["enroll", str(clinic_folder), "--email", "pat@example.com"],
        ["run", "--once"],
        ["schedule", str(clinic_folder), "--sample"],
    ):
        assert_one_line_error(dripmail(*args, "--now", now, "--db", db), "--now", "1970-01-01")


@pytest.mark.parametrize("signed_up_at", ["9999-12-31T23:59:59", "0001-01-01T00:00", "1900-01-01"])
def test_a_signup_time_outside_the_range_is_one_line(clinic_folder, tmp_path, signed_up_at):
    result = dripmail(
        "enroll",
        str(clinic_folder),
        "--email",
        "pat@example.com",
        "--signed-up-at",
        signed_up_at,
        "--db",
        str(tmp_path / "t.db"),
    )
    assert_one_line_error(result, "signed_up_at", "1970-01-01 to 2100-12-31")


def test_an_import_leaves_out_rows_signed_up_outside_the_range(clinic_folder, tmp_path):
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text(
        "email,signed_up_at\n"
        "far@example.com,9999-12-31T23:59:59\n"
        "early@example.com,0001-01-01T00:00\n"
        "ok@example.com,2026-03-02T10:00\n"
    )
    result = dripmail(
        "import",
        str(clinic_folder),
        str(csv_file),
        "--consent",
        "form",
        "--now",
        "2026-03-02T12:00Z",
        "--db",
        str(tmp_path / "t.db"),
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert f"{csv_file}:2: signed_up_at: " in result.stderr
    assert f"{csv_file}:3: signed_up_at: " in result.stderr
    assert "imported 1, already enrolled 0, suppressed 0, rejected 2" in result.stdout


@pytest.mark.parametrize("value", ["99999999d", "99999999999999999999d", "3654d"])
def test_older_than_and_lease_over_10_years_are_one_line(tmp_path, value):
    db = str(tmp_path / "none.db")
    assert_one_line_error(
        dripmail("retry", "--unknown", "--older-than", value, "--db", db),
        "--older-than",
        "10 years",
    )
    assert_one_line_error(
        dripmail("run", "--once", "--lease", value, "--db", db), "--lease", "10 years"
    )


@pytest.mark.parametrize("value", ["1e300", "99999999999w", "inf"])
def test_an_interval_over_10_years_is_one_line(tmp_path, value):
    result = dripmail("run", "--interval", value, "--db", str(tmp_path / "none.db"))
    assert_one_line_error(result, "--interval")


@pytest.mark.parametrize(
    ("cadence", "needle"),
    [
        ("0,99999999999999999999", "10 years"),
        ("0,3654", "10 years"),
        ("0,\u00b2", "whole days"),  # a digit to str.isdigit, not to int(): ValueError today
    ],
)
def test_a_cadence_over_10_years_is_one_line_and_writes_nothing(tmp_path, cadence, needle):
    out = tmp_path / "c"
    result = dripmail("split", str(ARTICLE), "--out", str(out), "--cadence", cadence)
    assert_one_line_error(result, "cadence", needle)
    assert not out.exists()


def test_a_newsletter_date_outside_the_range_is_one_line(tmp_path):
    result = dripmail(
        "newsletter",
        "schedule",
        str(tmp_path / "issue"),
        "--to",
        "patients",
        "--local-time",
        "09:00",
        "--date",
        "9999-12-31",
        "--db",
        str(tmp_path / "t.db"),
    )
    assert_one_line_error(result, "--date", "1970-01-01 to 2100-12-31")


# -- files that are not what they should be ------------------------------------------------


@pytest.mark.parametrize("kind", ["text", "empty", "folder"])
def test_status_on_something_that_is_not_a_database_is_one_line(tmp_path, kind):
    path = tmp_path / "not.db"
    if kind == "text":
        path.write_text("hello, I am a text file\n" * 20)
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        path.mkdir()
    before = sorted(os.listdir(tmp_path))
    result = dripmail("status", "--db", str(path))
    assert_one_line_error(result, str(path))
    assert sorted(os.listdir(tmp_path)) == before  # no -wal, -shm or journal left beside it
    if kind == "empty":
        assert path.read_bytes() == b""  # not set up as a database by a command that reads


@pytest.mark.parametrize("where", ["file", "proc"])
def test_split_into_an_impossible_place_is_one_line_and_writes_nothing(tmp_path, where):
    regular = tmp_path / "notes.txt"
    regular.write_text("mine\n")
    out = regular / "campaign" if where == "file" else Path("/proc/dripmail-test/campaign")
    result = dripmail("split", str(ARTICLE), "--out", str(out))
    assert_one_line_error(result, str(out))
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]
    assert regular.read_text() == "mine\n"


def test_a_split_that_cannot_write_one_file_writes_none(tmp_path):
    out = tmp_path / "c"
    (out / "03-what-about-physical-health.md").mkdir(parents=True)  # in the way of a step
    result = dripmail("split", str(ARTICLE), "--out", str(out))
    assert_one_line_error(result, str(out), "03-what-about-physical-health.md")
    assert sorted(p.name for p in out.iterdir()) == ["03-what-about-physical-health.md"]


@pytest.mark.parametrize("size", ["0", "-5", "99999999999999999999"])
def test_a_batch_size_out_of_range_is_one_line(tmp_path, size):
    # 0 and -5 sent nothing and said nothing; the last was an OverflowError from SQLite.
    result = dripmail("run", "--once", "--batch-size", size, "--db", str(tmp_path / "none.db"))
    assert_one_line_error(result, "--batch-size", "1 to 10,000")


@pytest.mark.parametrize("limit", ["0", "-1", "99999999999999999999"])
def test_a_schedule_limit_out_of_range_is_one_line(clinic_folder, tmp_path, limit):
    # -1 is an error from PostgreSQL ("LIMIT must not be negative") as a traceback.
    result = dripmail(
        "schedule", str(clinic_folder), "--limit", limit, "--db", str(tmp_path / "none.db")
    )
    assert_one_line_error(result, "--limit", "1 to 100,000")
