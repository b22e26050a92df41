"""Backups of the store, taken while workers run, and their verification and restore.

SQLite: the online backup API (sqlite3.Connection.backup) copies every page in one step
inside one read transaction, so the copy is the database as of one commit, whatever the
workers write meanwhile (WAL mode: readers and the writer do not block each other). The
copy goes to a temporary file beside the target, is synced, then renamed into place: a
backup that stops half-way never leaves a half-written FILE.

PostgreSQL: `pg_dump --format=custom` (one snapshot of the whole database, taken in a
repeatable-read transaction), restored with `pg_restore --clean --if-exists` in a single
transaction. The client tools must be those of the server's major version or newer.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import inspect, select

from campaigns.errors import ConfigurationError, InputError
from campaigns.storage.store import LEGACY_REVISIONS, MIGRATIONS, VERSION_TABLE, Store
from campaigns.storage.tables import count_event_kinds, meta, metadata

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"  # the first bytes of a pg_dump custom-format archive
SQLITE = "SQLite online backup"
PG_DUMP = "pg_dump --format=custom"
CLIENT_HINT = (
    "install PostgreSQL's client tools of the server's version (Debian: postgresql-client-15)"
)


@dataclass(frozen=True)
class Backup:
    """A backup file and what made it."""

    path: Path
    method: str  # SQLITE or PG_DUMP
    size: int  # bytes


@dataclass(frozen=True)
class Verified:
    """What `verify` found in a backup file."""

    path: Path
    method: str
    revision: str | None  # the schema's migration; None when the archive does not say
    head: str  # this dripmail's newest migration
    deliveries: int | None  # SQLite: rows in the deliveries table

    @property
    def needs_upgrade(self) -> bool:
        return self.revision is not None and self.revision != self.head


def known_revisions() -> set[str]:
    """Every migration this dripmail knows, from the version files' names (as head_revision)."""
    return {path.name[:4] for path in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")}


# -- backup --------------------------------------------------------------------------------


def backup(store: Store, target: Path) -> Backup:
    """Copy `store` to `target`, consistently, while workers may be writing to it."""
    target = Path(target)
    if not target.parent.is_dir():
        raise InputError(f"no folder {target.parent}: create it first", source=target)
    if store.path is not None and target.resolve() == store.path.resolve():
        raise InputError("is the database itself: back it up to another file", source=target)
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    try:
        # Owner-only from the start: a backup holds every address and the secret keys.
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        if store.is_sqlite:
            _sqlite_backup(store, partial)
            method = SQLITE
        else:
            _pg_dump(store, partial)
            method = PG_DUMP
        _sync(partial)
        os.replace(partial, target)
        _sync(target.parent)  # the rename itself survives a power cut
    finally:
        partial.unlink(missing_ok=True)
    return Backup(target, method, target.stat().st_size)


def _sqlite_backup(store: Store, partial: Path) -> None:
    if store.path is None:
        raise ConfigurationError("an in-memory SQLite database cannot be backed up")
    with closing(_sqlite_connect(store.path)) as source, closing(sqlite3.connect(partial)) as copy:
        source.backup(copy)  # pages=-1: every page in one step, one read transaction
        # One self-contained file: no -wal beside it to lose when it is copied elsewhere.
        copy.execute("PRAGMA journal_mode=DELETE")


def _pg_dump(store: Store, partial: Path) -> None:
    _run_pg_tool("pg_dump", ["--format=custom", f"--file={partial}"], store, action="back up")


# -- verify --------------------------------------------------------------------------------


def verify(path: Path) -> Verified:
    """Check a backup file without changing it: integrity and a migration this dripmail knows."""
    path = Path(path)
    kind = _kind(path)
    if kind == PG_DUMP:
        return _verify_pg_dump(path)
    with closing(_read_only(path)) as conn:
        try:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            revision = _sqlite_revision(conn, tables)
            count = conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise InputError(f"not a readable SQLite database ({exc})", source=path) from None
    if problems != ["ok"]:
        # SQLite's report runs to many lines: the first problem, on one line, and a count.
        first = " ".join(problems[0].replace("*** in database main ***", "").split())
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(
            f"damaged: integrity_check says {first}{more}; use an older backup", source=path
        )
    return _checked(Verified(path, SQLITE, revision, _head(), count))


def _sqlite_revision(conn: sqlite3.Connection, tables: set[str]) -> str | None:
    if VERSION_TABLE in tables:
        row = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()
        return row[0] if row else None
    if meta.name in tables:  # made before migrations existed
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        return LEGACY_REVISIONS.get(row[0]) if row else None
    return None


def _verify_pg_dump(path: Path) -> Verified:
    listing = _tool("pg_restore", ["--list", str(path)], action="read")
    if f"TABLE DATA public {VERSION_TABLE}" not in listing and VERSION_TABLE not in listing:
        raise InputError("a pg_dump archive, but not of a dripmail database", source=path)
    # The revision is the version table's one row: its data, printed as a COPY block.
    data = _tool(
        "pg_restore", ["--data-only", f"--table={VERSION_TABLE}", "--file=-", str(path)], "read"
    )
    found = re.search(r"^COPY \S+ \(version_num\) FROM stdin;\n(\w+)\n", data, re.MULTILINE)
    return _checked(Verified(path, PG_DUMP, found.group(1) if found else None, _head(), None))


def _checked(found: Verified) -> Verified:
    if found.revision is None:
        raise InputError(
            "holds no dripmail schema version: not a dripmail backup", source=found.path
        )
    if found.revision not in known_revisions():
        raise InputError(
            f"its schema ({found.revision}) is newer than this dripmail ({found.head}): "
            "verify and restore it with a newer dripmail",
            source=found.path,
        )
    return found


def _kind(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            start = handle.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        raise InputError("no such file", source=path) from None
    except OSError as exc:
        raise InputError(f"cannot read it ({exc.strerror})", source=path) from None
    if start.startswith(PG_DUMP_MAGIC):
        return PG_DUMP
    if start == SQLITE_MAGIC:
        return SQLITE
    raise InputError(
        "not a dripmail backup (neither a SQLite database nor a pg_dump custom archive)",
        source=path,
    )


# -- restore -------------------------------------------------------------------------------


def restore(store: Store, source: Path, *, force: bool = False) -> Verified:
    """Put the backup `source` into `store`, which must be empty unless `force`.

    The backup is verified first, so a damaged or foreign file changes nothing. Stop the
    workers first: a restore replaces the database under them.
    """
    found = verify(source)
    if (found.method == PG_DUMP) == store.is_sqlite:
        want = (
            "a PostgreSQL database (--db postgresql+psycopg://...)"
            if store.is_sqlite
            else "a SQLite file (--db FILE)"
        )
        raise InputError(f"is a {found.method} backup: restore it into {want}", source=source)
    if not force and not is_empty(store):
        raise ConfigurationError(
            f"{store.location} already holds data: restore into an empty database, "
            "or add --force to replace everything in it"
        )
    store.close()
    if store.is_sqlite:
        assert store.path is not None
        with (
            closing(_read_only(found.path)) as backup_file,
            closing(_sqlite_connect(store.path)) as database,
        ):
            backup_file.backup(database)
    else:
        _run_pg_tool(
            "pg_restore",
            ["--clean", "--if-exists", "--no-owner", "--single-transaction", str(found.path)],
            store,
            action="restore",
        )
    return found


def is_empty(store: Store) -> bool:
    """True when no dripmail table holds a row (the schema, its secrets and the fixed map
    of counted event kinds, migration 0024, do not count)."""
    if store.path is not None and (not store.path.exists() or store.path.stat().st_size == 0):
        return True
    with store.connect() as conn:
        present = set(inspect(conn).get_table_names())
        for table in metadata.sorted_tables:
            if table.name not in present or table is meta or table is count_event_kinds:
                continue
            if conn.execute(select(1).select_from(table).limit(1)).first() is not None:
                return False
    return True


# -- helpers -------------------------------------------------------------------------------


def _head() -> str:
    return max(known_revisions())


def _sqlite_connect(path: Path) -> sqlite3.Connection:
    # The workers' own busy timeout: a checkpoint in progress is waited for, not an error.
    return sqlite3.connect(path, timeout=30)


def _read_only(path: Path) -> sqlite3.Connection:
    """The backup opened read-only: verifying or restoring it never changes it."""
    return sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _run_pg_tool(name: str, args: list[str], store: Store, *, action: str) -> None:
    url = store.engine.url
    env = dict(os.environ)
    if url.password:  # in the environment, not on a command line `ps` shows
        env["PGPASSWORD"] = str(url.password)
    libpq = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    _tool(name, [*args, f"--dbname={libpq}"], action=action, env=env)


def _tool(name: str, args: list[str], action: str, env: dict[str, str] | None = None) -> str:
    """Run a PostgreSQL client tool; its output, or its last error line as ours."""
    program = shutil.which(name)
    if program is None:
        raise ConfigurationError(f"cannot {action}: {name} is not installed; {CLIENT_HINT}")
    done = subprocess.run([program, *args], capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise ConfigurationError(f"cannot {action}: {name} failed: {reason.strip()}")
    return done.stdout
