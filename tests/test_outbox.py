"""Files stay where they belong (issue 16, point 10), with a database.

The operator, not the campaign file, chooses an outbox outside the working folder
(`DRIPMAIL_OUTBOX`, `dripmail run --outbox`); publishing refuses a step file that is a
link leading out of the campaign folder, as check, render and the studio do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from campaigns.storage.store import Store
from tests.test_cli import snapshot
from tests.unit.test_cli import assert_one_line_error, dripmail

NOW = "2026-03-02T15:00Z"  # the welcome email of a 10:00 New York sign-up is due


@pytest.fixture
def enrolled(store: Store, clinic_folder: Path, tmp_path: Path, monkeypatch) -> str:
    """The database URL, with one contact whose first email is due at NOW; cwd: tmp_path."""
    monkeypatch.chdir(tmp_path)
    result = dripmail(
        "enroll",
        str(clinic_folder),
        "--email",
        "ana@example.com",
        "--timezone",
        "America/New_York",
        "--signed-up-at",
        "2026-03-02T10:00",
        "--db",
        store.url,
    )
    assert result.exit_code == 0, result.output
    return store.url


def emails_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.eml"))


def test_run_outbox_puts_the_emails_in_the_operators_folder(enrolled, tmp_path):
    elsewhere = tmp_path / "spool" / "dripmail"
    result = dripmail("run", "--now", NOW, "--outbox", str(elsewhere), "--db", enrolled)
    assert result.exit_code == 0, result.output
    assert "sent 1," in result.stdout
    assert len(emails_in(elsewhere)) == 1
    assert (elsewhere / "index.csv").is_file()
    assert not (tmp_path / "outbox").exists()  # the campaign file's `outbox: outbox`


def test_dripmail_outbox_sets_it_and_run_outbox_wins(enrolled, tmp_path, monkeypatch):
    from_env = tmp_path / "from-env"
    monkeypatch.setenv("DRIPMAIL_OUTBOX", str(from_env))
    assert "sent 1," in dripmail("run", "--now", NOW, "--db", enrolled).stdout
    assert len(emails_in(from_env)) == 1
    assert not (tmp_path / "outbox").exists()

    # The second email (2 days later), with both set: the option is the operator's last word.
    chosen = tmp_path / "chosen"
    later = "2026-03-04T15:00Z"
    result = dripmail("run", "--now", later, "--outbox", str(chosen), "--db", enrolled)
    assert "sent 1," in result.stdout, result.output
    assert len(emails_in(chosen)) == 1
    assert len(emails_in(from_env)) == 1


def test_each_worker_process_writes_to_run_outbox(enrolled, tmp_path):
    elsewhere = tmp_path / "spool"
    result = dripmail(
        "run",
        "--once",
        "--now",
        NOW,
        "--workers",
        "2",
        "--outbox",
        str(elsewhere),
        "--db",
        enrolled,
    )
    assert result.exit_code == 0, result.output
    assert "all 2 workers: sent 1," in result.stdout
    assert len(emails_in(elsewhere)) == 1
    assert not (tmp_path / "outbox").exists()


def test_publishing_refuses_a_step_linked_outside_the_campaign_folder(
    store: Store, clinic_folder: Path, tmp_path: Path
):
    secret = tmp_path / "secret.md"
    secret.write_text("# Private notes\n\nTOP-SECRET\n", encoding="utf-8")
    step = clinic_folder / "03-what-about-physical-health.md"
    step.unlink()
    step.symlink_to(secret)
    before = snapshot(store.url)

    result = dripmail("enroll", str(clinic_folder), "--email", "ana@example.com", "--db", store.url)

    assert_one_line_error(
        result, f"{clinic_folder / 'campaign.yaml'}:", "steps[2].file:", "outside the campaign"
    )
    assert snapshot(store.url) == before
