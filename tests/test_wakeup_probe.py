"""The SQLite worker's once-a-second probe (review 1, finding 9): a database error in it is
logged, without an address, and the worker goes on; it probes at the tick's own time
(`run --now`), not the wall clock's."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import text

from campaigns.authoring.spec import Campaign
from campaigns.delivery.report import RunReport
from campaigns.delivery.wakeups import Probe
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.storage.publish import publish
from campaigns.storage.store import Store
from tests.helpers import utc
from tests.test_prompt_first_emails import open_around_the_clock

pytestmark = pytest.mark.sqlite_only  # the probe is SQLite's wake-up (Listener: PostgreSQL)

ADDRESS = "zebulon.quill@example.org"
THEN = utc("2026-03-02T12:00")  # `dripmail run --now 2026-03-02T12:00`


class Seconds:
    """The probe's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.at = 0.0

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def campaign(tmp_path: Path, store: Store) -> Campaign:
    clinic = open_around_the_clock(tmp_path / "clinic")
    with store.begin() as conn:
        publish(conn, clinic, now=THEN)
    return clinic


def sign_up(store: Store, campaign: Campaign) -> None:
    patient = Signup(ADDRESS, timezone="UTC", consent="clinic website form")
    enroll(store, campaign, patient, now=THEN)


def test_a_database_error_in_the_probe_is_logged_and_the_next_probe_goes_on(
    store, campaign, caplog
):
    seconds = Seconds()
    probe = Probe(store, clock=seconds)
    sign_up(store, campaign)
    with store.begin() as conn:  # the probe's query now fails, as a broken file would
        conn.execute(text("ALTER TABLE deliveries RENAME TO deliveries_away"))

    seconds.at += 1
    with caplog.at_level(logging.WARNING, logger="dripmail.wakeups"):
        assert probe.due(THEN) is False  # no exception: the worker's nap goes on

    assert "probe for due emails failed (OperationalError)" in caplog.text
    assert ADDRESS not in caplog.text
    with store.begin() as conn:
        conn.execute(text("ALTER TABLE deliveries_away RENAME TO deliveries"))
    seconds.at += 1
    assert probe.due(THEN) is True  # the database is back: the welcome wakes the worker


def test_the_probe_takes_the_ticks_time_not_the_wall_clocks(store, campaign):
    """With a campaign held, rows due since the tick began wake the worker: "since" is the
    tick's `now` (here a `run --now` in the past), not today's date."""
    seconds = Seconds()
    probe = Probe(store, clock=seconds)
    probe.ticking(THEN)
    probe.ticked(RunReport(held=("another-series",)))

    sign_up(store, campaign)  # its welcome is due at THEN, during the tick
    seconds.at += 1

    assert probe.due(THEN) is True
