"""`dripmail db backup`, `verify` and `restore`: a consistent copy while a dispatch runs
(SQLite), and a pg_dump round trip (PostgreSQL)."""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from benchmarks.run import NOW, clinic_campaign, write_contacts
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.planning.enroll import import_csv
from campaigns.storage.store import Store, head_revision
from campaigns.storage.tables import contacts, deliveries, enrollments
from cli import app as cli_app
from senders.base import Message, SendResult
from senders.file import NullSender
from tests.conftest import POSTGRES_SERVER

DUE = 20_000


def dripmail(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli_app, list(args))
    return result.exit_code, result.stdout, result.stderr


class HeldSender(NullSender):
    """The null sender, stopping twice on the way for the test: once `midway` (so the test
    can note what is committed), then at `hold` sends until the backup is done, so the
    dispatch is still running, and writing, for as long as the backup takes."""

    def __init__(self, midway: int, hold: int) -> None:
        super().__init__()
        self.sent = 0
        self.stops = {
            midway: (threading.Event(), threading.Event()),
            hold: (threading.Event(), threading.Event()),
        }

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        for count in list(self.stops):
            if self.sent >= count:
                reached, resume = self.stops.pop(count)
                reached.set()
                assert resume.wait(timeout=600), "the test never let the dispatch go on"
        results = super().send(messages)
        self.sent += len(results)
        return results


def _statuses(path: Path) -> dict[int, str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT id, status FROM deliveries"))


@pytest.fixture(scope="module")
def due_database(tmp_path_factory) -> Path:
    """A SQLite store with 20,000 first emails due at NOW (made once for the module)."""
    work = tmp_path_factory.mktemp("due")
    write_contacts(work / "contacts.csv", DUE)
    store = Store(f"sqlite:///{work / 'due.db'}")
    import_csv(store, clinic_campaign(work / "campaign"), work / "contacts.csv", now=NOW)
    store.close()
    return work / "due.db"


def test_backup_during_a_dispatch_holds_every_delivery_committed_before_it(tmp_path, due_database):
    database = tmp_path / "live.db"
    database.write_bytes(due_database.read_bytes())
    store = Store(f"sqlite:///{database}")
    sender = HeldSender(midway=5_000, hold=10_000)
    (midway, go_on), (holding, backup_done) = sender.stops[5_000], sender.stops[10_000]
    dispatcher = Dispatcher(store, lambda campaign: sender)
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(dispatcher.run(now=NOW)))
    worker.start()
    try:
        assert midway.wait(timeout=600)
        # What is committed now, before the backup begins.
        before = {i for i, status in _statuses(database).items() if status == "sent"}
        assert before, "batches were recorded before the backup"
        go_on.set()
        backup = tmp_path / "backups" / "live-copy.db"
        backup.parent.mkdir()
        code, out, err = dripmail("db", "backup", str(backup), "--db", str(database))
        backup_done.set()
    finally:
        go_on.set()
        backup_done.set()
        worker.join()
    store.close()
    assert code == 0, err
    assert f"to {backup} (SQLite online backup, " in out
    assert outcome[0].sent == DUE  # the dispatch went on to the end after the backup
    assert holding.is_set()  # it waited for the backup at 10,000: the backup ran mid-dispatch
    assert list(backup.parent.iterdir()) == [backup]  # no temporary file left beside it
    assert backup.stat().st_mode & 0o777 == 0o600  # it holds every address: owner only

    code, out, err = dripmail("db", "verify", str(backup))
    assert code == 0, err
    assert (
        f"{backup}: SQLite online backup, integrity_check ok, schema {head_revision()} (newest)"
        in out
    )

    fresh = tmp_path / "fresh.db"
    code, out, err = dripmail("db", "restore", str(backup), "--db", str(fresh))
    assert code == 0, err
    assert f"restored {backup} into {fresh}" in out
    restored, original = _statuses(fresh), _statuses(database)
    assert restored.keys() == original.keys()  # every delivery row is there
    assert all(restored[i] == "sent" for i in before)
    copied_sent = sum(status == "sent" for status in restored.values())
    # A snapshot taken mid-run: at least what was committed before, not the end.
    assert len(before) <= copied_sent < DUE


def test_restore_refuses_a_store_with_data_unless_forced(tmp_path, due_database):
    backup = tmp_path / "copy.db"
    assert dripmail("db", "backup", str(backup), "--db", str(due_database))[0] == 0
    target = tmp_path / "target.db"
    target.write_bytes(due_database.read_bytes())
    with sqlite3.connect(target) as conn:
        conn.execute("DELETE FROM deliveries WHERE id % 2 = 0")
    code, _, err = dripmail("db", "restore", str(backup), "--db", str(target))
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: {target} already holds data: restore into an empty database, "
        "or add --force to replace everything in it"
    ]
    assert len(_statuses(target)) < len(_statuses(due_database))  # unchanged
    code, _, err = dripmail("db", "restore", str(backup), "--db", str(target), "--force")
    assert code == 0, err
    assert _statuses(target) == _statuses(due_database)


def test_verify_refuses_a_damaged_or_foreign_file_in_one_line(tmp_path, due_database):
    foreign = tmp_path / "notes.db"
    foreign.write_text("not a database\n")
    code, _, err = dripmail("db", "verify", str(foreign))
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: {foreign}: not a dripmail backup "
        "(neither a SQLite database nor a pg_dump custom archive)"
    ]
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE deliveries (id INTEGER)")
    code, _, err = dripmail("db", "verify", str(other))
    assert code == 2
    assert err.strip() == f"error: {other}: holds no dripmail schema version: not a dripmail backup"
    newer = tmp_path / "newer.db"
    newer.write_bytes(due_database.read_bytes())
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    code, _, err = dripmail("db", "verify", str(newer))
    assert code == 2
    assert "its schema (9999) is newer than this dripmail" in err
    assert len(err.strip().splitlines()) == 1
    damaged = tmp_path / "damaged.db"
    data = bytearray(due_database.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = b"\xff" * 4096  # a page of garbage
    damaged.write_bytes(bytes(data))
    code, _, err = dripmail("db", "verify", str(damaged))
    assert code == 2
    assert err.startswith(f"error: {damaged}: ")
    assert len(err.strip().splitlines()) == 1


# -- PostgreSQL ---------------------------------------------------------------------------


@contextmanager
def _database() -> Iterator[str]:
    name = f"dripmail_backup_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            make_url(POSTGRES_SERVER)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(POSTGRES_SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _rows(url: str) -> dict[str, list[tuple]]:
    store = Store(url, migrate=False)
    with store.connect() as conn:
        rows = {
            table.name: sorted(map(tuple, conn.execute(select(table))), key=repr)
            for table in (contacts, enrollments, deliveries)
        }
    store.close()
    return rows


def test_postgres_backup_restores_into_a_fresh_database_with_the_same_rows(tmp_path):
    write_contacts(tmp_path / "contacts.csv", 200)
    with _database() as source, _database() as fresh:
        store = Store(source)
        import_csv(
            store, clinic_campaign(tmp_path / "campaign"), tmp_path / "contacts.csv", now=NOW
        )
        store.close()
        dump = tmp_path / "clinic.dump"
        code, out, err = dripmail("db", "backup", str(dump), "--db", source)
        assert code == 0, err
        assert "(pg_dump --format=custom, " in out
        assert dump.read_bytes().startswith(b"PGDMP")

        code, out, err = dripmail("db", "verify", str(dump))
        assert code == 0, err
        listed = f"{dump}: pg_dump --format=custom, pg_restore --list reads it"
        assert f"{listed}, schema {head_revision()} (newest)" in out

        code, out, err = dripmail("db", "restore", str(dump), "--db", fresh)
        assert code == 0, err
        original = _rows(source)
        assert len(original["deliveries"]) == 200 * 6
        assert _rows(fresh) == original

        code, _, err = dripmail("db", "restore", str(dump), "--db", fresh)
        assert code == 2
        assert "already holds data" in err and len(err.strip().splitlines()) == 1
        code, _, err = dripmail("db", "restore", str(dump), "--db", fresh, "--force")
        assert code == 0, err
        assert _rows(fresh) == original


def test_a_missing_pg_dump_is_one_line_and_exit_2(tmp_path, monkeypatch):
    with _database() as source:
        Store(source).close()
        monkeypatch.setenv("PATH", str(tmp_path))  # no pg_dump on it
        code, _, err = dripmail("db", "backup", str(tmp_path / "x.dump"), "--db", source)
    assert code == 2
    assert err.strip().splitlines() == [
        "error: cannot back up: pg_dump is not installed; install PostgreSQL's client tools "
        "of the server's version (Debian: postgresql-client-15)"
    ]
    assert not (tmp_path / "x.dump").exists()
