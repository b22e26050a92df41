"""Moving the pending count changes into the count tables (PostgreSQL, migration 0024).

On PostgreSQL the count triggers only append each statement's changes to count_changes,
so two workers' transactions never wait on (or deadlock over) a shared count row. The
counts are the count tables plus the changes not folded yet (reporting/counts.py adds
them up in one statement, so a fold running meanwhile changes nothing a reader sees).
`fold` moves the changes in: one DELETE ... RETURNING per counter, added up per key and
upserted. Under pg_try_advisory_xact_lock, so one fold at a time and nobody waits for it.
The worker's tick folds every FOLD_EVERY; a reader folds when it finds many changes.
SQLite's triggers update the count tables directly (one writer at a time): nothing to do.
"""

from __future__ import annotations

import time

from sqlalchemy import Connection, Engine, text

__all__ = ["FOLD_EVERY", "MANY", "Folder", "fold", "fold_if_many"]

FOLD_EVERY = 30.0  # seconds between a worker's folds
MANY = 5_000  # unfolded changes a reader folds before reading
_LOCK = 0x64726970  # the advisory lock's key ('drip')

# counter -> (count table, its key columns after campaign)
_COUNTERS = {
    "enrolled": ("count_enrolled", ()),
    "deliveries": ("count_deliveries", ("step_key", "status")),
    "due": ("count_due_hours", ("hour",)),
    "sent": ("count_sent_hours", ("hour",)),
    "events": ("count_events", ("step_key", "kind")),
}


def _fold_one(conn: Connection, counter: str, table: str, keys: tuple[str, ...]) -> None:
    names = ", ".join(("campaign", *keys))
    moved = ", ".join(("campaign", "k1", "k2")[: 1 + len(keys)])
    order = ", ".join(str(n) for n in range(1, 2 + len(keys)))
    conn.execute(
        text(
            f"WITH moved AS (DELETE FROM count_changes WHERE counter = :counter "
            f"RETURNING campaign, k1, k2, n) INSERT INTO {table} ({names}, n) "
            f"SELECT {moved}, sum(n) FROM moved GROUP BY {order} HAVING sum(n) <> 0 "
            f"ORDER BY {order} ON CONFLICT ({names}) DO UPDATE SET n = {table}.n + excluded.n"
        ),
        {"counter": counter},
    )


def fold(conn: Connection) -> bool:
    """Fold the pending changes in `conn`'s transaction; False when another fold holds
    the lock (it will fold them) or on SQLite."""
    if conn.dialect.name != "postgresql":
        return False
    if not conn.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _LOCK}):
        return False
    for counter, (table, keys) in _COUNTERS.items():
        _fold_one(conn, counter, table, keys)
    # Pending hours at zero are dropped, as SQLite's triggers do.
    conn.execute(text("DELETE FROM count_due_hours WHERE n = 0"))
    return True


def fold_if_many(conn: Connection, many: int = MANY) -> None:
    """Fold, in a transaction of its own, when about `many` changes are pending (the
    span of their ids: two index look-ups)."""
    if conn.dialect.name != "postgresql":
        return
    span = conn.scalar(text("SELECT max(id) - min(id) FROM count_changes"))
    if span is not None and span >= many:
        with conn.engine.begin() as own:
            fold(own)


class Folder:
    """Folds at most every `every` seconds; the worker calls it on each tick."""

    def __init__(self, engine: Engine, every: float = FOLD_EVERY) -> None:
        self.engine = engine
        self.every = every
        self._last: float | None = None

    def tick(self) -> None:
        if self.engine.dialect.name != "postgresql":
            return
        clock = time.monotonic()
        if self._last is not None and clock - self._last < self.every:
            return
        self._last = clock
        with self.engine.begin() as conn:
            fold(conn)
