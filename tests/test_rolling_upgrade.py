"""Upgrading without stopping sending: the previous release's worker against `db upgrade`.

"The previous release" is real code: the commit just before the newest migration came
into this repository's history (first parent of the commit that added it), taken out of
git with `git archive`. So the test needs the history (CI runs on a full clone). That
release's worker, stopped mid hand-off by a relay that holds its reply, sees
`db upgrade` (this code) apply the newest migration under it, then goes on sending;
restarted, it refuses the newer schema in one line; this release's worker sends the
rest. Every email reaches the relay exactly once, none is lost.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from campaigns.storage.store import MIGRATIONS, head_revision
from tests.smtp_server import Faults, SmtpTestServer

ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 180.0  # seconds: a bound for a broken run, never a speed figure
CONTACTS = 60
NOW = "2026-03-02T15:00Z"


def git(*args: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, timeout=120
    ).stdout


def previous_release(into: Path) -> tuple[Path, str]:
    """The source of dripmail as it was before its newest migration, and that one's revision."""
    head = head_revision()
    (newest,) = (MIGRATIONS / "versions").glob(f"{head}_*.py")
    path = newest.relative_to(ROOT).as_posix()
    added = git(
        "log", "--first-parent", "--no-renames", "--diff-filter=A", "--format=%H", "--", path
    )
    assert added, f"{path} is in no commit: this test needs the repository's history (a full clone)"
    commit = added.decode().split()[-1]  # the oldest: where the migration first came in
    with tarfile.open(fileobj=io.BytesIO(git("archive", f"{commit}^1"))) as archive:
        archive.extractall(into, filter="data")
    known = max(
        p.name[:4]
        for p in (into / MIGRATIONS.relative_to(ROOT) / "versions").glob("*.py")
        if p.name[:4].isdigit()
    )
    assert known < head, (known, head)
    return into, known


def dripmail(code: Path, cwd: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """`dripmail *args` as the release whose source is in `code`."""
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(code), "COLUMNS": "200", **env},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return process.returncode, out, err


def ok(process: subprocess.Popen[str]) -> str:
    code, out, err = finish(process)
    assert code == 0, err
    return out


def contacts_csv(path: Path, first: int, count: int) -> Path:
    path.write_text(
        "email,first_name,timezone,signed_up_at,consent\n"
        + "".join(
            f"patient{i}@example.com,Pat{i},America/New_York,2026-03-02T10:00,web form\n"
            for i in range(first, first + count)
        )
    )
    return path


def statuses(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT status, COUNT(*) FROM deliveries GROUP BY status"))
            return {status: count for status, count in rows}
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_previous_releases_worker_keeps_sending_while_db_upgrade_applies_the_next(
    backend, request, tmp_path
):
    old, known = previous_release(tmp_path / "previous")
    new = ROOT
    url = (
        request.getfixturevalue("postgres_url")
        if backend == "postgresql"
        else f"sqlite:///{tmp_path / 'dripmail.db'}"
    )
    work = tmp_path / "clinic"
    work.mkdir()
    with SmtpTestServer(Faults(hold_after=5)) as relay:
        env = {
            "DRIPMAIL_DATABASE_URL": url,
            "DRIPMAIL_PUBLIC_URL": "https://mail.clinic.example",
            "DRIPMAIL_SMTP_HOST": "127.0.0.1",
            "DRIPMAIL_SMTP_PORT": str(relay.port),
            "DRIPMAIL_SMTP_SECURITY": "none",
        }
        # The clinic as the previous release set it up: schema, campaign, sign-ups.
        assert f"schema created at {known}" in ok(dripmail(old, work, env, "db", "upgrade"))
        article, defaults = (
            old / "examples" / "ketamine-and-sleep.txt",
            old / "examples" / "clinic-defaults.yaml",
        )
        ok(
            dripmail(
                old, work, env, "split", str(article), "--out", "sleep", "--defaults", str(defaults)
            )
        )
        ok(
            dripmail(
                old,
                work,
                env,
                "import",
                "sleep",
                str(contacts_csv(work / "a.csv", 0, CONTACTS)),
                "--now",
                "2026-03-02T12:00Z",
            )
        )

        # Its worker sends; the relay holds the sixth message's reply: mid hand-off.
        worker = dripmail(
            old, work, env, "run", "--now", NOW, "--sender", "smtp", "--batch-size", "10"
        )
        try:
            while len(relay.received) < 5:
                assert worker.poll() is None, worker.communicate()
                time.sleep(0.01)

            # Meanwhile this release upgrades the schema under it.
            upgraded = ok(dripmail(new, work, env, "db", "upgrade"))
            assert f"schema upgraded from {known} to {head_revision()}" in upgraded
            assert worker.poll() is None  # still in its hand-off

            relay.faults.release.set()
            code, out, err = finish(worker)
        finally:
            relay.faults.release.set()
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        assert code == 0, err
        assert f"sent {CONTACTS}," in out  # every due email, before and after the upgrade

        # Restarted, the previous release refuses the newer schema: one line, exit 2.
        code, out, err = finish(dripmail(old, work, env, "run", "--now", NOW))
        assert code == 2
        line = err.splitlines()[-1]  # (that release logged alembic's plugins at INFO first)
        assert "Traceback" not in err
        assert line.startswith(
            f"error: the database schema ({head_revision()}) is newer than this dripmail ({known})"
        )
        assert "upgrade dripmail" in line

        # This release signs more people up and sends; nothing is sent twice.
        ok(
            dripmail(
                new,
                work,
                env,
                "import",
                "sleep",
                str(contacts_csv(work / "b.csv", CONTACTS, CONTACTS)),
                "--now",
                "2026-03-02T12:00Z",
            )
        )
        assert f"sent {CONTACTS}," in ok(
            dripmail(new, work, env, "run", "--now", NOW, "--sender", "smtp")
        )
        received = [message.delivery_id for message in relay.received]

    assert len(received) == len(set(received)) == 2 * CONTACTS
    by_status = statuses(url)
    assert by_status["sent"] == 2 * CONTACTS
    assert set(by_status) == {"sent", "scheduled"}  # the later steps, not due yet


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_schema_newer_than_this_release_is_refused_in_one_line(backend, request, tmp_path):
    url = (
        request.getfixturevalue("postgres_url")
        if backend == "postgresql"
        else f"sqlite:///{tmp_path / 'dripmail.db'}"
    )
    env = {"DRIPMAIL_DATABASE_URL": url}
    ok(dripmail(ROOT, tmp_path, env, "db", "upgrade"))
    engine = create_engine(url)
    with engine.begin() as conn:  # as a later release's `db upgrade` would leave it
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    head = head_revision()
    refusal = (
        f"error: the database schema (0099) is newer than this dripmail ({head}): "
        "upgrade dripmail to the release that upgraded the database"
    )

    for command in (["run", "--once"], ["run", "--workers", "2"], ["status"], ["db", "upgrade"]):
        code, out, err = finish(dripmail(ROOT, tmp_path, env, *command))
        assert (code, err.splitlines()) == (2, [refusal]), command
        assert "sent" not in out

    code, out, err = finish(dripmail(ROOT, tmp_path, env, "db", "current"))
    assert (code, err.splitlines()) == (2, [refusal])


def test_version_and_status_show_dripmail_and_schema_versions(tmp_path):
    head = head_revision()
    code, out, _ = finish(dripmail(ROOT, tmp_path, {}, "--version"))
    assert code == 0
    assert re.fullmatch(rf"dripmail \S+ \(database schema {head}\)\n", out)

    database = tmp_path / "dripmail.db"
    ok(dripmail(ROOT, tmp_path, {}, "db", "upgrade", "--db", str(database)))
    out = ok(dripmail(ROOT, tmp_path, {}, "status", "--db", str(database)))
    assert re.search(rf"^schema: {head} \(dripmail \S+ knows up to {head}\)$", out, re.MULTILINE)
