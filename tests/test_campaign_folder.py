"""The campaign folder works everywhere, and every duration takes seconds, as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from campaigns.storage.store import Store
from campaigns.storage.tables import deliveries
from tests.helpers import utc
from tests.unit.test_cli import dripmail

NAME = "ketamine-and-sleep"


@pytest.fixture
def db(tmp_path: Path, clinic_folder: Path) -> str:
    """A SQLite file with one contact enrolled into the clinic campaign."""
    path = str(tmp_path / "clinic.db")
    result = dripmail(
        "enroll", str(clinic_folder), "--email", "ana@example.com", "--timezone",
        "America/New_York", "--signed-up-at", "2026-03-02T10:00", "--now", "2026-03-02T12:00",
        "--db", path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return path


def test_pause_and_resume_take_the_campaign_folder_even_while_it_is_being_edited(clinic_folder, db):
    spec = clinic_folder / "campaign.yaml"
    # Mid-edit: a key the file does not know. Pausing is what staff reach for right then.
    spec.write_text(spec.read_text().replace("timezone:", "colour: blue\ntimezone:", 1))

    paused = dripmail("pause", str(clinic_folder), "--now", "2026-03-03T12:00", "--db", db)
    resumed = dripmail("resume", str(clinic_folder), "--now", "2026-03-05T12:00", "--db", db)

    assert paused.exit_code == 0, paused.output
    assert paused.stdout.startswith(f"paused {NAME}: ")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.startswith(f"resumed {NAME} after 2 days, 0:00:00: ")
    # The published name keeps working, and so does the folder's campaign.yaml.
    assert dripmail("pause", NAME, "--db", db).stdout.startswith(f"paused {NAME}: ")
    assert dripmail("resume", str(spec), "--db", db).stdout.startswith(f"resumed {NAME} ")


def test_lease_and_older_than_take_seconds(db):
    sent = dripmail(
        "run", "--once", "--lease", "10s", "--interval", "30s", "--sender", "null",
        "--now", "2026-03-02T15:00Z", "--db", db,
    )  # fmt: skip
    assert sent.exit_code == 0, sent.output
    assert "sent 1" in sent.stdout

    store = Store(db)
    with store.begin() as conn:
        first = conn.scalar(select(deliveries.c.id).order_by(deliveries.c.id))
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == first)
            .values(status="unknown", updated_at=utc("2026-03-02T15:00"))
        )
    store.close()
    too_soon = dripmail(
        "retry", "--unknown", "--older-than", "90s", "--now", "2026-03-02T15:01Z", "--db", db
    )
    in_time = dripmail(
        "retry", "--unknown", "--older-than", "90s", "--now", "2026-03-02T15:02Z", "--db", db
    )
    assert "re-queued 0 unknown deliveries" in too_soon.stdout, too_soon.output
    assert "re-queued 1 unknown delivery" in in_time.stdout, in_time.output
