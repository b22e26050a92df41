"""Messages that teach, where a database is involved: a bad --now, a contact not enrolled."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_cli import assert_one_line_error, dripmail


def test_a_bad_now_shows_an_example(tmp_path: Path):
    result = dripmail("retry", "--unknown", "--now", "yesterday", "--db", str(tmp_path / "x.db"))
    assert_one_line_error(result, "--now: 'yesterday' is not an ISO date-time", "2026-03-09T14:00")


def test_a_bad_sample_sign_up_time_shows_an_example(tmp_path: Path, clinic_folder: Path):
    result = dripmail(
        "schedule", str(clinic_folder), "--sample", "--signed-up-at", "monday 9am",
        "--db", str(tmp_path / "x.db"),
    )  # fmt: skip
    assert_one_line_error(result, "--signed-up-at: 'monday 9am'", "2026-03-09T14:00")


def test_schedule_for_an_address_not_enrolled_says_so(tmp_path: Path, clinic_folder: Path):
    db = str(tmp_path / "clinic.db")
    enrolled = dripmail(
        "enroll", str(clinic_folder), "--email", "ana@example.com", "--now",
        "2026-03-02T10:00Z", "--db", db,
    )  # fmt: skip
    assert enrolled.exit_code == 0, enrolled.output
    assert "6 emails planned" in enrolled.stdout
    result = dripmail("schedule", str(clinic_folder), "--email", "bo@example.com", "--db", db)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == f"error: bo@example.com is not enrolled in {clinic_folder}"
    assert "ana@example.com" in dripmail("schedule", str(clinic_folder), "--db", db).stdout
