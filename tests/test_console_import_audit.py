"""A console import's audit entry carries the time the user started it, read once from the
console's clock, as import_jobs.py says (review 1, finding 10)."""

from __future__ import annotations

from datetime import timedelta

from campaigns.console.import_jobs import ImportJobs, JobState
from campaigns.storage import audit
from campaigns.storage.publish import publish
from tests.console_support import Clock
from tests.helpers import utc

STARTED = utc("2026-03-09T14:00")
CSV = b"email,first_name,timezone,signed_up_at,consent\npat@example.com,Pat,UTC,,clinic form\n"


class Ticking(Clock):
    """The console's clock while a long import runs: each reading is a minute later."""

    def __call__(self):
        at = self.at
        self.advance(minutes=1)
        return at


def test_a_console_imports_audit_entry_is_at_the_time_it_was_started(store, clinic):
    with store.begin() as conn:
        publish(conn, clinic, now=STARTED)
    jobs = ImportJobs()
    clock = Ticking(STARTED)

    job = jobs.start(store, clinic.name, "patients.csv", CSV, user_id=7, now=STARTED, clock=clock)
    done = jobs.wait(job.id, timeout=60)

    assert done is not None and done.state is JobState.DONE
    [entry] = [e for e in audit.entries(store) if e.action == "contacts.import"]
    assert entry.at == STARTED
    assert clock.at == STARTED + timedelta(minutes=1)  # read once
