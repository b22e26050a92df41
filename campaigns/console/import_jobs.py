"""Contact imports started from the console, run in a background thread with progress.

The upload is written to a temporary file and `dripmail import`'s own function
(planning.enroll.import_ref) runs on it in a thread of its own, its progress callback
counting the rows done, so the page that started it can answer at once and the progress
page (and its status URL, which a small script polls) shows how far it is. When it ends,
the job holds the same report the CLI prints (counts, and every bad row by line number),
and the import is written to the audit trail at the console's clock, by contact-free
facts only (the campaign, a hash of the file, the counts).

Jobs live in this process's memory (the console is one process): the newest `KEEP` are
remembered, older finished ones are forgotten. One import per campaign runs at a time.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from campaigns.errors import DripmailError, InputError
from campaigns.planning.enroll import EnrollReport, import_ref
from campaigns.storage import audit
from campaigns.storage.store import Store

__all__ = ["CHUNK", "ImportJob", "ImportJobs", "JobState"]

log = logging.getLogger("dripmail.console")

CHUNK = 500  # rows per transaction, so a long import reports progress every 500 rows
KEEP = 50  # jobs remembered (finished ones beyond this are forgotten, oldest first)


class JobState(StrEnum):
    READING = "reading"  # checking the file's rows (the total is not known yet)
    IMPORTING = "importing"
    DONE = "done"
    FAILED = "failed"  # an unusable file: nothing imported, `problem` says why


@dataclass
class ImportJob:
    """One import as its pages show it; the worker thread updates `done` and `state`."""

    id: str
    user_id: int
    campaign: str
    filename: str
    digest: str  # the file's content hash, as the audit trail names the import
    state: JobState = JobState.READING
    done: int = 0
    total: int | None = None  # valid rows to import, once the file has been read
    report: EnrollReport | None = None
    problem: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in (JobState.DONE, JobState.FAILED)

    def status(self) -> dict[str, object]:
        """What the status URL answers (no address, no name: counts only)."""
        return {
            "state": str(self.state),
            "done": self.done,
            "total": self.total,
            "finished": self.finished,
        }


class ImportJobs:
    """The console's imports: start one, find it again, wait for it (tests, shutdown)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, ImportJob] = {}
        self._threads: dict[str, threading.Thread] = {}

    def get(self, job_id: str) -> ImportJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def running_into(self, campaign: str) -> ImportJob | None:
        with self._lock:
            return next(
                (j for j in self._jobs.values() if j.campaign == campaign and not j.finished),
                None,
            )

    def start(
        self,
        store: Store,
        campaign: str,
        filename: str,
        content: bytes,
        *,
        user_id: int,
        now: datetime,
        clock: Callable[[], datetime],
        consent: str | None = None,
    ) -> ImportJob:
        """Start importing `content` into `campaign` (published) as user `user_id`.

        `now` is the engine time the import plans at; `clock` is read when it ends, for
        the audit trail's entry. Refused (InputError) while an import into the same
        campaign is still running."""
        job = ImportJob(
            secrets.token_urlsafe(16),
            user_id,
            campaign,
            filename,
            hashlib.sha256(content).hexdigest()[:16],
        )
        with self._lock:
            if any(j.campaign == campaign and not j.finished for j in self._jobs.values()):
                raise InputError(f"an import into {campaign} is running: wait for it to finish")
            self._jobs[job.id] = job
            self._forget_old()
        folder = Path(tempfile.mkdtemp(prefix="dripmail-import-"))
        path = folder / "contacts.csv"
        path.write_bytes(content)

        def run() -> None:
            try:
                _run(store, job, path, now=now, clock=clock, consent=consent)
            finally:
                shutil.rmtree(folder, ignore_errors=True)

        thread = threading.Thread(target=run, name=f"import-{job.id[:6]}", daemon=True)
        with self._lock:
            self._threads[job.id] = thread
        thread.start()
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> ImportJob | None:
        """The job once its thread has ended (or after `timeout` seconds, still running)."""
        with self._lock:
            thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
        return self.get(job_id)

    def _forget_old(self) -> None:
        finished = [key for key, job in self._jobs.items() if job.finished]
        for key in finished[: max(0, len(self._jobs) - KEEP)]:
            del self._jobs[key]
            self._threads.pop(key, None)


def _run(
    store: Store,
    job: ImportJob,
    path: Path,
    *,
    now: datetime,
    clock: Callable[[], datetime],
    consent: str | None,
) -> None:
    def progress(done: int, total: int) -> None:
        job.total, job.done, job.state = total, done, JobState.IMPORTING

    try:
        report = import_ref(
            store,
            job.campaign,
            path,
            now=now,
            consent=consent,
            actor=job.user_id,
            audited_at=clock(),
            progress=progress,
            chunk_size=CHUNK,
        )
    except DripmailError as exc:
        job.problem = f"{job.filename}: {_said(exc)}"
        job.state = JobState.FAILED
        log.info("console import %s into %s failed: unusable file", job.id[:6], job.campaign)
        return
    except Exception:  # a bug, not bad input: the page says so, the log has the trace
        log.exception("console import %s into %s crashed", job.id[:6], job.campaign)
        job.problem = f"{job.filename}: the import stopped on an error; see the console's log"
        job.state = JobState.FAILED
        return
    detail = (
        f"imported {report.enrolled}, already {report.already}, "
        f"suppressed {report.suppressed}, rejected {len(report.rejected)}"
    )
    with store.begin() as conn:
        audit.record(
            conn,
            job.user_id,
            "contacts.import",
            "campaign",
            job.campaign,
            job.digest,
            detail=detail,
            at=clock(),
        )
    log.info("console import into %s by user %s: %s", job.campaign, job.user_id, detail)
    job.report = report
    job.total = job.total if job.total is not None else 0
    job.done = job.total
    job.state = JobState.DONE


def _said(exc: DripmailError) -> str:
    """The error without the temporary file's path (the page names the upload)."""
    if isinstance(exc, InputError):
        return (f"line {exc.line}: " if exc.line else "") + exc.message
    return str(exc)
