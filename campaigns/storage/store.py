"""The connection to the database (SQLite by default, PostgreSQL too), its schema state and secrets.

The tables are in campaigns/storage/tables.py; the migrations, not `create_all`, build
and upgrade a database. A store opened on an empty database sets it up; one whose
schema is older than the code is refused until `dripmail db upgrade` has run, and one
whose schema is newer (upgraded by a later release) is refused with "upgrade dripmail".
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import ArgumentError, DatabaseError, IntegrityError, OperationalError

from campaigns.errors import ConfigurationError
from campaigns.planning.contacts import address_hash
from campaigns.settings import Settings
from campaigns.storage.tables import meta, metadata

DEFAULT_DATABASE = "dripmail.db"
MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"  # alembic's default; env.py names no other
UPGRADE_HINT = "run `dripmail db upgrade`"
ELSEWHERE_HINT = "point to yours with --db FILE or DRIPMAIL_DATABASE_URL"
# Databases made before migrations existed say `schema = 1` in `meta`: that is revision 0001.
LEGACY_REVISIONS = {"1": "0001"}
# One migration at a time per PostgreSQL database, however many workers start at once.
_MIGRATION_LOCK = 0x64726970  # "drip"


def _no_result_rows(record: logging.LogRecord) -> bool:
    """Drop SQLAlchemy's DEBUG "Row (...)" records: a fetched row holds addresses and names.

    `hide_parameters` keeps values out of the statements SQLAlchemy logs and of its
    errors, but at DEBUG it logs every row fetched too. The statements stay.
    """
    return record.msg != "Row %r"


logging.getLogger("sqlalchemy.engine.Engine").addFilter(_no_result_rows)


def sqlite_time(value: datetime) -> str:
    """An aware time as UTCDateTime stores it on SQLite: naive UTC text, microseconds always.

    The same text as SQLAlchemy's SQLite DATETIME format (`YYYY-MM-DD HH:MM:SS.ffffff`),
    made by isoformat in C rather than by %-formatting a dict per value.
    """
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def naive_utc(value: datetime) -> datetime:
    """An aware time as UTCDateTime hands it to other drivers: naive UTC."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store")
    return value.astimezone(UTC).replace(tzinfo=None)


def bulk_insert(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple]
) -> None:
    """Insert plain tuples with the driver's executemany, inside `conn`'s transaction.

    SQLAlchemy's own executemany runs every value through its column type, which was a
    third of a large import's time; here values go to the driver as they are, so
    UTCDateTime columns take `Store.driver_time` values.
    """
    if not rows:
        return
    quote = conn.dialect.identifier_preparer.quote
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    conn.exec_driver_sql(
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
        f"VALUES ({', '.join([marker] * len(columns))})",
        list(rows),
    )


def database_url(value: str | None = None, settings: Settings | None = None) -> str:
    """`--db`, else DRIPMAIL_DATABASE_URL (`settings`, default: the environment's), else
    dripmail.db here. A bare path means SQLite."""
    if not value:
        value = (Settings.from_env() if settings is None else settings).database_url
    url = value or DEFAULT_DATABASE
    if "://" not in url:
        url = f"sqlite:///{Path(url).expanduser()}"
    return url


_BUSY_TIMEOUT_S = 30


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_S * 1000}")
    _set_wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # A checkpoint copies the WAL into the database and syncs both, in the committing
    # connection. Every 1,000 pages (the default) that was a third of a dispatch run's
    # time: a batch's status changes dirty hundreds of index pages. 10,000 pages is
    # at most 40 MB of WAL.
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    # Updating a row rewrites it, leaving the old copy in free space unless secure_delete
    # zeroes it: a value cleared later (a double opt-in sign-up's held changes, a name)
    # would outlive its erasure. ON, not FAST: FAST does not zero overflow pages freed to
    # the freelist, so a value over ~4 KB (big held attributes) stayed in the file. ON
    # costs nothing new here: Debian's SQLite is built with ON as its default, so every
    # benchmark of this project already ran with it; this makes other builds the same.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _set_wal(cursor) -> None:
    # Switching a new file to WAL needs it alone, and SQLite answers "database is locked"
    # at once, without its busy handler, while another connection holds a write lock in
    # the old journal mode: workers starting together on a new file met it. Wait here.
    # sqlite3 is imported by the first SQLite connection (as SQLAlchemy's driver does),
    # not with the store: a PostgreSQL worker has no use for it (1 MB).
    import sqlite3

    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _sqlite_begin(connection) -> None:
    # A writing transaction takes the write lock at BEGIN, so two writers queue on the
    # busy timeout instead of one failing when it upgrades a read lock; readers don't.
    write = connection.get_execution_options().get("dripmail_write")
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@dataclass(frozen=True)
class SchemaState:
    """Where a database's schema stands against this code's migrations."""

    current: str | None  # None: no dripmail tables yet
    head: str

    @property
    def is_current(self) -> bool:
        return self.current == self.head

    @property
    def is_newer(self) -> bool:
        """A later dripmail upgraded the database: its revision is past this code's newest.

        Revisions are zero-padded numbers (tests/unit/test_schema_head.py), so text order
        is their order.
        """
        return self.current is not None and self.current > self.head

    def newer_error(self) -> ConfigurationError:
        """The one line a command says instead of working on a schema it does not know."""
        return ConfigurationError(
            f"the database schema ({self.current}) is newer than this dripmail "
            f"({self.head}): upgrade dripmail to the release that upgraded the database"
        )


@functools.cache
def _scripts():
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS))


@functools.cache
def head_revision() -> str:
    """The newest migration this code knows: the highest `NNNN_*.py` in versions/.

    Read from the file names because every store checks its schema when it opens, and
    alembic's ScriptDirectory loads every migration and, through Mako, Pygments' lexers:
    a few MB in each worker for one string. The migrations are a line (each revision is
    its file's number and names the one before), which a unit test checks against alembic.
    """
    files = (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
    return max(path.name[:4] for path in files)


def _alembic_config(connection: Connection):
    """An alembic Config made in code: no alembic.ini is needed in the user's folder."""
    from alembic.config import Config

    # Today's stdout, not the one alembic bound when first imported: that may have been a
    # stream since closed (a command run inside a test runner).
    config = Config(stdout=sys.stdout)
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection  # env.py migrates on this connection
    return config


def _current_revision(conn: Connection) -> str | None:
    """The database's revision; None when it holds no dripmail table at all."""
    tables = set(inspect(conn).get_table_names())
    revision = _stamped_revision(conn, tables)
    if revision is not None:
        return revision
    if not tables & set(metadata.tables):
        return None
    legacy = None
    if meta.name in tables:
        legacy = conn.scalar(select(meta.c.value).where(meta.c.key == "schema"))
    if legacy in LEGACY_REVISIONS:
        return LEGACY_REVISIONS[legacy]
    raise ConfigurationError(
        "the database has dripmail tables but no schema version; it was not made by dripmail"
    )


class Store:
    """The database: tables, a connection factory, and installation secrets.

    Opening a store sets up an empty database (the migrations, to the newest) and
    refuses one whose schema is older than this code; `migrate=False` opens it as it
    is, for `dripmail db` itself. `existing=True` (commands that only read) refuses a
    SQLite file that is not there instead of creating it: run in the wrong folder, a
    fresh empty database would answer "nothing" and hide the mistake. `settings`
    (default: read from the environment now) are the installation's, for whatever works
    on this store.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        migrate: bool = True,
        settings: Settings | None = None,
        existing: bool = False,
    ) -> None:
        self.settings = Settings.from_env() if settings is None else settings
        self.url = database_url(url, self.settings)
        try:
            # Parameters hidden: a database error (and SQLAlchemy's own logging) shows the
            # statement's shape only, never the address, name or consent text bound to it.
            self.engine: Engine = create_engine(self.url, hide_parameters=True)
        except (ArgumentError, ImportError) as exc:
            raise ConfigurationError(f"cannot use database {self.url!r}: {exc}") from None
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # How a UTCDateTime value reaches the driver, for bulk_insert.
        self.driver_time = sqlite_time if self.is_sqlite else naive_utc
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # pysqlite's own transaction handling is switched off so BEGIN IMMEDIATE works.
            event.listen(
                self.engine,
                "connect",
                lambda conn, _r: setattr(conn, "isolation_level", None),
            )
            event.listen(self.engine, "begin", _sqlite_begin)
        self._secrets: dict[str, str] = {}
        if existing and self.path is not None and not self.path.is_file():
            self.engine.dispose()
            raise ConfigurationError(f"no database at {self.location}: {ELSEWHERE_HINT}")
        if existing and self.path is not None and self.path.stat().st_size == 0:
            # SQLite would take an empty file as a new database and set it up: a command
            # that only reads says what it found instead.
            self.engine.dispose()
            raise ConfigurationError(
                f"{self.location} is an empty file, not a dripmail database: {ELSEWHERE_HINT}"
            )
        if migrate:
            self._ensure_schema()

    @property
    def path(self) -> Path | None:
        """The SQLite file, when the store is one."""
        database = self.engine.url.database
        in_memory = database == ":memory:" or (database or "").startswith("file:")
        return Path(database) if self.is_sqlite and database and not in_memory else None

    @property
    def display_url(self) -> str:
        """The URL with any password masked, for messages."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def location(self) -> str:
        """Which database this is, for messages: a SQLite file's absolute path, else the
        URL with any password masked."""
        path = self.path
        return str(path.resolve()) if path is not None else self.display_url

    # -- schema -----------------------------------------------------------------------

    def schema_state(self) -> SchemaState:
        """The database's revision next to this code's newest."""
        with self._opening(), _quiet_alembic(), self.connect() as conn:
            return SchemaState(_current_revision(conn), head_revision())

    def upgrade(self) -> tuple[str | None, str]:
        """Create or upgrade the schema to the newest migration; (before, after) revisions."""
        from alembic import command

        with self._opening():
            with self.begin() as conn:
                if not self.is_sqlite:
                    # Workers that start together on an empty database queue here; the
                    # ones after the first find the schema made. (SQLite: BEGIN IMMEDIATE.)
                    conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
                before = _current_revision(conn)
                head = head_revision()
                if SchemaState(before, head).is_newer:
                    raise SchemaState(before, head).newer_error()
                if before != head:
                    config = _alembic_config(conn)
                    if before is not None and _is_legacy(conn):
                        command.stamp(config, before)
                    command.upgrade(config, "head")
            self._load_secrets()
        return before, head

    def _ensure_schema(self) -> None:
        state = self.schema_state()
        if state.current is None:
            self.upgrade()  # first use: an empty database is set up
        elif not state.is_current:
            # Newer: a worker of the previous release, restarted after `db upgrade`, stops
            # here instead of writing rows the new schema's code would misread.
            if state.is_newer:
                raise state.newer_error()
            with _quiet_alembic():  # loading the scripts logs alembic's plugins at INFO
                known = {script.revision for script in _scripts().walk_revisions()}
            if state.current not in known:
                raise state.newer_error()
            raise ConfigurationError(
                f"the database schema ({state.current}) is older than this dripmail "
                f"({state.head}): {UPGRADE_HINT}"
            )
        else:
            self._load_secrets()

    @contextmanager
    def _opening(self) -> Iterator[None]:
        try:
            yield
        except DatabaseError as exc:
            # Cannot connect (OperationalError), or a file that is not a database (SQLite's
            # plain DatabaseError); an error in a statement is dripmail's, and goes on up.
            if type(exc) not in (OperationalError, DatabaseError):
                raise
            reason = " ".join(str(exc.orig).split())  # one line, whatever the driver says
            raise ConfigurationError(f"cannot open database {self.display_url}: {reason}") from None

    # -- connections ------------------------------------------------------------------

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A writing transaction: committed when the block ends, rolled back on any error."""
        with self.engine.connect() as conn:
            conn.execution_options(dripmail_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def bulk(self) -> Iterator[Connection]:
        """A connection for a run of writing transactions (`with conn.begin():` each).

        On SQLite its page cache is 64 MiB while it lasts: inserts land all over the
        delivery indexes, and the default 2 MiB cache spilled and re-read their pages
        (a quarter of a 100,000-contact import). It goes back after, so workers stay small.
        """
        with self.engine.connect() as conn:
            conn.execution_options(dripmail_write=True)
            # On the driver's connection: a pragma through `conn` would begin a transaction.
            driver = conn.connection.driver_connection if self.is_sqlite else None
            if driver is not None:
                default = driver.execute("PRAGMA cache_size").fetchone()[0]
                driver.execute("PRAGMA cache_size=-65536")
            try:
                yield conn
            finally:
                if driver is not None:
                    driver.execute(f"PRAGMA cache_size={int(default)}")

    def connect(self) -> Connection:
        return self.engine.connect()

    def close(self) -> None:
        self.engine.dispose()

    def clock(self, conn: Connection) -> datetime:
        """The real clock leases are measured on: the database server's on PostgreSQL.

        Every worker, on whatever machine, then agrees on when a lease ran out; a SQLite
        file is on this machine, so its clock is this machine's.
        """
        if self.is_sqlite:
            return utcnow()
        return conn.scalar(select(func.now())).astimezone(UTC)

    # Installation secrets: generated once, kept in the store, never logged.

    def _load_secrets(self) -> None:
        # Made now, not on first use, so no transaction ever waits on another for them.
        with self._opening():
            self._secrets = {
                key: self._meta_secret(key) for key in ("secret_key", "suppression_key")
            }

    def _meta_secret(self, key: str) -> str:
        with self.begin() as conn:
            value = conn.scalar(select(meta.c.value).where(meta.c.key == key))
            if value is None:
                value = secrets.token_urlsafe(32)
                try:
                    with conn.begin_nested():
                        conn.execute(insert(meta).values(key=key, value=value))
                except IntegrityError:  # another worker made it first
                    value = conn.scalar(select(meta.c.value).where(meta.c.key == key))
        return value

    def secret_key(self) -> str:
        """DRIPMAIL_SECRET_KEY, else one generated for this database and kept in it."""
        configured = self.settings.secret_key
        return configured.get_secret_value() if configured else self._secrets["secret_key"]

    def variant_key(self) -> bytes:
        """The key A/B variants are assigned under (planning/variants.py).

        Derived from the suppression key (per database, never rotated), so every worker
        and every restart assigns the same; derived, so neither use can stand in for the other.
        """
        return hmac.digest(self._secrets["suppression_key"].encode(), b"dripmail variants", sha256)

    def address_hash(self, email: str) -> str:
        """Keyed hash of a normalised address: recognises it without keeping it.

        The key is never rotated: a rotated key would let erased or bounced addresses back in.
        """
        return address_hash(self._secrets["suppression_key"], email)


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    # Every store checks the schema when it opens; alembic's INFO lines about that
    # ("Context impl ...", plugin set-up) would open every worker's log.
    logger = logging.getLogger("alembic")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _is_legacy(conn: Connection) -> bool:
    """A database made before migrations existed: its tables are there, unstamped."""
    return _stamped_revision(conn, set(inspect(conn).get_table_names())) is None


def _stamped_revision(conn: Connection, tables: set[str]) -> str | None:
    """The revision alembic stamped, read with SQLAlchemy alone: importing any part of
    alembic imports all of it (autogenerate, Mako, Pygments), which a worker opening its
    store does not need."""
    if VERSION_TABLE not in tables:
        return None
    return conn.scalar(text(f"SELECT version_num FROM {VERSION_TABLE}"))


def utcnow() -> datetime:
    """The real clock, for leases and token ages only (due times follow `now=`)."""
    return datetime.now(UTC)
