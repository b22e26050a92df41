"""Several worker processes on one PostgreSQL database: exactly once, crash-safe, clean stops.

Workers run as real processes (tests/worker_main.py: the library's worker loop with a
sender that writes every delivery id it is handed to a file per process), so a file line
is a message that reached the provider. Nothing here sleeps for a set time: the tests
wait on the database by polling with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, insert, select

from campaigns.authoring.spec import Campaign, load_folder
from campaigns.storage.publish import publish
from campaigns.storage.store import Store
from campaigns.storage.tables import contacts, deliveries, enrollments
from tests.conftest import write_clinic_campaign
from tests.helpers import utc

ROOT = Path(__file__).resolve().parent.parent
NOW = utc("2026-03-02T15:00")  # 10:00 in New York, a Monday: the window is open
DEADLINE = 240.0  # seconds; a generous bound for slow CI, never a measured duration


def one_step_campaign(folder: Path) -> Campaign:
    """The clinic campaign cut to its first email."""
    write_clinic_campaign(folder)
    spec_file = folder / "campaign.yaml"
    spec = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    spec["steps"] = spec["steps"][:1]
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return load_folder(folder)


def seed(url: str, campaign: Campaign, count: int) -> set[int]:
    """`count` contacts enrolled, each with one delivery due now; bulk inserts for speed."""
    store = Store(url)
    step = campaign.steps[0].key
    due = NOW - timedelta(minutes=1)
    numbers = range(1, count + 1)
    with store.begin() as conn:
        publish(conn, campaign, now=due)
        conn.execute(
            insert(contacts),
            [
                {
                    "id": i,
                    "email": f"patient{i}@example.com",
                    "first_name": f"Pat{i}",
                    "timezone": "America/New_York",
                    "consent_source": "clinic sign-up form",
                    "consent_at": due,
                    "created_at": due,
                }
                for i in numbers
            ],
        )
        conn.execute(
            insert(enrollments),
            [
                {
                    "id": i,
                    "contact_id": i,
                    "campaign": campaign.name,
                    "signed_up_at": due,
                    "status": "active",
                    "created_at": due,
                }
                for i in numbers
            ],
        )
        conn.execute(
            insert(deliveries),
            [
                {
                    "id": i,
                    "enrollment_id": i,
                    "step_key": step,
                    "position": 1,
                    "due_at": due,
                    "status": "scheduled",
                    "attempts": 0,
                    "updated_at": due,
                }
                for i in numbers
            ],
        )
    store.close()
    return set(numbers)


_started: list[subprocess.Popen] = []


def worker(url: str, out: Path, *args: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.worker_main",
            "--db",
            url,
            "--out",
            str(out),
            "--now",
            NOW.isoformat(),
            *args,
        ],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _started.append(process)
    return process


@pytest.fixture(autouse=True)
def _no_worker_outlives_its_test():
    """A failed test must not leave looping workers behind."""
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            process.terminate()  # a supervisor passes it on to its workers
            try:
                process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def finish(process: subprocess.Popen, timeout: float = DEADLINE) -> tuple[int, list[dict], str]:
    """Wait for a worker; its exit code, its JSON reports and its log."""
    stdout, stderr = process.communicate(timeout=timeout)
    reports = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return process.returncode, reports, stderr


def handed(out: Path) -> dict[int, list[int]]:
    """Delivery ids each worker process handed to its sender, by pid, in order."""
    return {
        int(path.stem): [int(line) for line in path.read_text().split()]
        for path in out.glob("*.ids")
    }


def statuses(url: str) -> dict[int, tuple[str, str | None, str | None]]:
    store = Store(url)
    with store.connect() as conn:
        rows = conn.execute(
            select(
                deliveries.c.id,
                deliveries.c.status,
                deliveries.c.provider_message_id,
                deliveries.c.lease_owner,
            )
        ).all()
    store.close()
    return {row.id: (row.status, row.provider_message_id, row.lease_owner) for row in rows}


def wait_until_nothing_pending(url: str) -> None:
    """Poll the database (with a deadline) until no delivery is scheduled, claimed or sending."""
    store = Store(url)
    deadline = time.monotonic() + DEADLINE
    try:
        while True:
            with store.connect() as conn:
                pending = conn.scalar(
                    select(func.count()).where(
                        deliveries.c.status.in_(("scheduled", "claimed", "sending"))
                    )
                )
            if not pending:
                return
            assert time.monotonic() < deadline, f"{pending} deliveries still pending"
            time.sleep(0.2)
    finally:
        store.close()


@pytest.fixture
def campaign(tmp_path: Path) -> Campaign:
    return one_step_campaign(tmp_path / "clinic")


def test_four_workers_send_twenty_thousand_deliveries_exactly_once(
    postgres_url, campaign, tmp_path
):
    ids = seed(postgres_url, campaign, 20_000)
    out = tmp_path / "handed"

    code, reports, log = finish(worker(postgres_url, out, "--workers", "4", "--once"))

    assert code == 0, log
    by_worker = handed(out)
    counts = Counter(i for sent in by_worker.values() for i in sent)
    assert set(counts) == ids, "a delivery never reached the sender"
    assert max(counts.values()) == 1, "a delivery reached the sender twice"
    rows = statuses(postgres_url)
    assert {status for status, _, _ in rows.values()} == {"sent"}
    assert all(pid == f"counted-{i}" and owner is None for i, (_, pid, owner) in rows.items())
    assert sorted(r["worker"] for r in reports) == [0, 1, 2, 3]
    assert sum(r["sent"] for r in reports) == 20_000


def test_a_worker_killed_mid_hand_off_loses_nothing_and_sends_nothing_twice(
    postgres_url, campaign, tmp_path
):
    ids = seed(postgres_url, campaign, 20_000)
    out = tmp_path / "handed"
    # The victim holds its leases for 2 s on the database's clock. It claims 500 rows a
    # batch and hands them off 100 at a time; the hand-off that reaches 700 messages is
    # its last: SIGKILL while those 100 rows are `sending` and 300 more are `claimed`.
    victim = worker(postgres_url, out, "--once", "--lease-seconds", "2", "--kill-after", "700")
    deadline = time.monotonic() + DEADLINE
    while not list(out.glob("*.ids")) and victim.poll() is None:
        assert time.monotonic() < deadline, "the victim never started sending"
        time.sleep(0.05)
    survivors = [worker(postgres_url, out, "--interval", "0.2") for _ in range(3)]

    victim_code, _, victim_log = finish(victim)
    wait_until_nothing_pending(postgres_url)  # after the victim's leases ran out
    for survivor in survivors:
        survivor.send_signal(signal.SIGTERM)
    results = [finish(survivor) for survivor in survivors]

    assert victim_code == -signal.SIGKILL, victim_log
    assert [code for code, _, _ in results] == [0, 0, 0], [log for _, _, log in results]
    by_worker = handed(out)
    counts = Counter(i for sent in by_worker.values() for i in sent)
    assert set(counts) == ids, "a delivery was lost"
    assert max(counts.values()) == 1, "a delivery reached the sender twice"

    victims = by_worker.pop(victim.pid)
    assert len(victims) == 700
    in_hand = set(victims[-100:])  # the hand-off the victim died in
    rows = statuses(postgres_url)
    assert {i for i, (status, _, _) in rows.items() if status == "unknown"} == in_hand
    assert {i for i, (status, _, _) in rows.items() if status == "sent"} == ids - in_hand
    assert all(owner is None for _, _, owner in rows.values())
    # The survivors took back the victim's 300 claimed rows and wrote off its 100 in hand.
    recovered = sum(r["recovered"] for _, reports, _ in results for r in reports)
    assert recovered == 400


def test_sigterm_finishes_the_hand_off_in_hand_and_releases_the_rest(
    postgres_url, campaign, tmp_path
):
    ids = seed(postgres_url, campaign, 1_000)
    out = tmp_path / "handed"
    # 500 claimed, handed off 50 at a time; SIGTERM lands during the second hand-off.
    process = worker(
        postgres_url, out, "--once", "--batch", "500", "--handoff", "50", "--term-after", "100"
    )

    code, reports, log = finish(process)

    assert code == 0, log
    (sent,) = handed(out).values()
    assert len(sent) == 100
    rows = statuses(postgres_url)
    assert {i for i, (status, _, _) in rows.items() if status == "sent"} == set(sent)
    assert {i for i, (status, _, _) in rows.items() if status == "scheduled"} == ids - set(sent)
    assert all(owner is None for _, _, owner in rows.values()), "a lease was left behind"
    (report,) = reports
    assert (report["sent"], report["released"]) == (100, 400)


def test_sigterm_to_the_parent_stops_every_worker_cleanly(postgres_url, campaign, tmp_path):
    ids = seed(postgres_url, campaign, 2_000)
    out = tmp_path / "handed"
    parent = worker(postgres_url, out, "--workers", "2", "--interval", "0.2")
    wait_until_nothing_pending(postgres_url)
    parent.send_signal(signal.SIGTERM)  # passed on to both workers, which stop cleanly

    code, reports, log = finish(parent)

    assert code == 0, log
    counts = Counter(i for sent in handed(out).values() for i in sent)
    assert set(counts) == ids and max(counts.values()) == 1
    assert {status for status, _, _ in statuses(postgres_url).values()} == {"sent"}
    assert {r["worker"] for r in reports} <= {0, 1}


def test_dripmail_run_with_workers_sends_each_email_once(postgres_url, clinic_folder, tmp_path):
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text(
        "email,first_name,timezone,signed_up_at,consent\n"
        + "".join(
            f"patient{i}@example.com,Pat{i},America/New_York,2026-03-02T10:00,web form\n"
            for i in range(12)
        )
    )
    env = {**os.environ, "DRIPMAIL_DATABASE_URL": postgres_url, "COLUMNS": "200"}

    def dripmail(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )

    imported = dripmail("import", str(clinic_folder), str(csv_file), "--now", "2026-03-02T12:00Z")
    assert imported.returncode == 0, imported.stderr
    result = dripmail("run", "--workers", "2", "--now", "2026-03-02T15:00Z", "--lease", "2m")

    assert result.returncode == 0, result.stderr
    assert "all 2 workers: sent 12," in result.stdout
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 12
    again = dripmail("run", "--workers", "2", "--now", "2026-03-02T15:00Z")
    assert "all 2 workers: sent 0," in again.stdout
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 12
