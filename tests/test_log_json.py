"""DRIPMAIL_LOG_FORMAT=json on real commands: every stderr line is a JSON object, and none
holds an address or a name."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.test_logs import API_KEY, PEOPLE, leaks

ROOT = Path(__file__).resolve().parent.parent


def _dripmail(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DRIPMAIL_", "SENDGRID_", "MAILGUN_", "POSTMARK_"))
    }
    env.update(
        PYTHONPATH=str(ROOT),
        DRIPMAIL_LOG_FORMAT="json",
        DRIPMAIL_LOG_LEVEL="DEBUG",  # SQLAlchemy's statements too: the most there is to leak
        SENDGRID_API_KEY=API_KEY,
    )
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_and_run_log_json_lines_with_no_address_or_name(tmp_path, clinic_folder):
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text(
        "email,first_name,timezone,signed_up_at,consent\n"
        + "".join(f"{a},{n},{z},2026-03-02T08:00,clinic form\n" for a, n, z in PEOPLE)
    )
    db = str(tmp_path / "json.db")
    imported = _dripmail(
        "import",
        str(clinic_folder),
        str(csv_file),
        "--db",
        db,
        "--now",
        "2026-03-02T08:00Z",
        cwd=tmp_path,
    )
    assert imported.returncode == 0, imported.stderr
    copy = tmp_path / "json-workers.db"
    shutil.copyfile(db, copy)
    run = ("run", "--once", "--now", "2026-03-04T15:00Z")
    ran = _dripmail(*run, "--db", db, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert re.search(r"sent [1-9]", ran.stdout), ran.stdout  # something to leak was sent
    # Worker processes log as the single worker does, each record naming its worker.
    workers = _dripmail(*run, "--db", str(copy), "--workers", "2", cwd=tmp_path)
    assert workers.returncode == 0, workers.stderr
    assert re.search(r"sent [1-9]", workers.stdout), workers.stdout
    from_workers = [json.loads(line) for line in workers.stderr.splitlines()]
    named = {record.get("worker") for record in from_workers} - {None}
    assert named and named <= {0, 1, 2}, from_workers  # the worker that sent names itself
    assert leaks(workers.stderr) == [], workers.stderr

    lines = ran.stderr.splitlines()
    assert lines, "DEBUG logging was on and the run logged"
    records = [json.loads(line) for line in lines]  # every line, or this fails
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys()
        assert record["time"].endswith("+00:00")
    loggers = {record["logger"] for record in records}
    assert "dripmail.dispatch" in loggers, loggers
    for result in (imported, ran):
        assert leaks(result.stdout) == [], result.stdout
        assert leaks(result.stderr) == [], result.stderr
        assert API_KEY not in result.stdout + result.stderr
