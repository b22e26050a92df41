"""SIGKILL a file-sender run at random moments, then run to completion: one whole .eml
per (contact, step), an index that lists every file once, no row left `unknown`.

Each run is a process of its own on one SQLite file, as `dripmail run --once` is; it is
forked from this one after the campaign is compiled, so a run starts in milliseconds.
The kill moments come from a seeded RNG (a number of files to wait for, then a short
pause), so a failure can be replayed; nothing is asserted about timing.
"""

from __future__ import annotations

import csv
import email
import email.policy
import multiprocessing
import os
import random
import signal
import sqlite3
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from campaigns.delivery.dispatcher import Dispatcher
from campaigns.delivery.workers import run_worker
from campaigns.planning.enroll import import_csv
from campaigns.storage.store import Store
from senders.file import INDEX
from tests.helpers import utc

SEED = 20261206
KILLS = 20
CONTACTS = 20
BATCH = 4  # claimed and handed over 4 at a time: many transactions for a kill to land in
DEADLINE = 60.0  # seconds any one run may take before the test gives up on it
SIGNED_UP = "2026-03-02T10:00"  # New York; the clinic campaign's steps: 0, 2, 4, 7, 10, 14 days
DAYS = (0, 2, 4, 7, 10, 14)


def dripmail_run(url: str, folder: str, now: datetime) -> None:
    """`dripmail run --once --now NOW` in `folder` (the campaign's outbox is `outbox/`)."""
    os.chdir(folder)
    store = Store(url)
    try:
        for _ in run_worker(store, now=now, once=True, batch_size=BATCH):
            pass
    finally:
        store.close()


def emails(outbox: Path) -> list[Path]:
    return sorted(outbox.glob("*.eml")) if outbox.exists() else []


def leases_run_out(database: Path) -> None:
    """What the next run finds once a killed run's leases have expired."""
    with sqlite3.connect(database) as conn:
        conn.execute(
            "UPDATE deliveries SET lease_expires_at = '2000-01-01 00:00:00.000000' "
            "WHERE lease_expires_at IS NOT NULL"
        )
    conn.close()


@pytest.mark.sqlite_only
def test_killed_file_sender_runs_leave_one_whole_email_per_step(clinic, tmp_path):
    database = tmp_path / "dripmail.db"
    url = f"sqlite:///{database}"
    contacts_csv = tmp_path / "contacts.csv"
    contacts_csv.write_text(
        "email,first_name,timezone,signed_up_at,consent\n"
        + "".join(
            f"p{i}@example.com,Pat{i},America/New_York,{SIGNED_UP},web form\n"
            for i in range(CONTACTS)
        ),
        encoding="utf-8",
    )
    store = Store(url)
    import_csv(store, clinic, contacts_csv, now=utc("2026-03-02T12:00"))
    Dispatcher(store, lambda _c: None).warm_up()  # compiled once, here, before any fork
    store.close()

    outbox = tmp_path / "outbox"
    fork = multiprocessing.get_context("fork")
    rng = random.Random(SEED)
    nows = [utc("2026-03-02T15:00") + timedelta(days=d) for d in DAYS]
    kills = 0
    for step, now in enumerate(nows, start=1):
        expected = CONTACTS * step  # files once this step has gone to everyone
        # The kills are spread over the first five steps; the last has room for any left.
        while kills < min(KILLS, KILLS * step // (len(nows) - 1)):
            done = len(emails(outbox))
            if done >= expected:
                break
            # A moment: after a few more files (none: while it starts, settles, claims),
            # plus a short pause, so kills land in every phase of a run.
            target = done + rng.randint(0, min(3, expected - done - 1))
            pause = rng.uniform(0, 0.005)
            run = fork.Process(target=dripmail_run, args=(url, str(tmp_path), now))
            run.start()
            deadline = time.monotonic() + DEADLINE
            while len(emails(outbox)) < target and run.is_alive():
                assert time.monotonic() < deadline, "a run never got going"
                time.sleep(0.001)
            time.sleep(pause)
            if run.is_alive():
                os.kill(run.pid, signal.SIGKILL)
            run.join(DEADLINE)
            kills += run.exitcode == -signal.SIGKILL
            leases_run_out(database)
        finish = fork.Process(target=dripmail_run, args=(url, str(tmp_path), now))
        finish.start()
        finish.join(DEADLINE)
        assert finish.exitcode == 0
    assert kills == KILLS

    with sqlite3.connect(database) as conn:
        rows = conn.execute(
            "SELECT d.id, e.contact_id, d.step_key, d.status, d.provider_message_id "
            "FROM deliveries d JOIN enrollments e ON e.id = d.enrollment_id"
        ).fetchall()
    conn.close()
    assert len(rows) == CONTACTS * len(DAYS)
    assert Counter(status for *_, status, _ in rows) == {"sent": len(rows)}, "a row left open"

    files = emails(outbox)
    by_delivery = Counter(path.name.rsplit("-d", 1)[1].removesuffix(".eml") for path in files)
    assert by_delivery == Counter({str(row[0]): 1 for row in rows}), "not one file per step"
    assert {row[4] for row in rows} == {path.name for path in files}
    for path in files:
        data = path.read_bytes()
        assert data, f"{path.name} is empty"
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert not parsed.defects, path.name
        assert parsed.get_body(("html",)) is not None and parsed.get_body(("plain",)) is not None
    assert not [p.name for p in outbox.iterdir() if p.name.endswith(".tmp")], "a partial file"

    text = (outbox / INDEX).read_text(encoding="utf-8")
    assert text.endswith("\n"), "a torn last line"
    listed = [row["file"] for row in csv.DictReader(text.splitlines())]
    assert sorted(listed) == [path.name for path in files], "the index does not list each once"
