"""Counts kept by the database for the console: per campaign, step, status, hour and kind.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06

The dashboard and a campaign's statistics read these small tables instead of counting
two million deliveries and their events on each request (campaigns/reporting/counts.py):

- count_enrolled (campaign): enrollments, whatever their status;
- count_deliveries (campaign, step_key, status): deliveries;
- count_due_hours (campaign, hour): pending deliveries (scheduled, claimed) by the UTC
  hour of due_at ('YYYY-MM-DD HH'), rows at zero deleted;
- count_sent_hours (campaign, hour): sent deliveries by the UTC hour of sent_at;
- count_event_kinds (type, kind): which event types feed which count (the statistics'
  columns, reporting/stats.COLUMNS, plus `bounced_any`, hard or soft, for the alert);
- count_events (campaign, step_key, kind): deliveries with at least one event of that
  kind (five opens of one email are one open), as the statistics have always counted.

Triggers keep them true whatever writes the rows (hand-off, recording, conversions,
unsubscribes and their undo, edits, pause and resume, erasure, newsletters, a script).
SQLite: row triggers updating the count tables (one writer at a time). PostgreSQL:
statement triggers with transition tables that only append each statement's sums to
count_changes (no row lock shared by two workers' transactions, so no waits and no
deadlocks); readers add those to the counts and storage/count_fold.py folds them in.
count_event_seen holds the (delivery, kind) pairs count_events counts, under a unique
key: an event counts its delivery only when its pair is new (two concurrent opens of
one email count once), and a pair's campaign and step count it down when its last
event goes, even after the delivery. The tables are filled from the existing rows in
the same transaction, after the triggers exist (on PostgreSQL CREATE TRIGGER locks the
tables against writes until the commit, so no write of a running worker is missed or
counted twice; the writers wait for the fill: 0.5 s for 200,000 deliveries and 100,000
events, 7.4 s for ten times that). Expand only: new tables, their triggers.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

PENDING = "('scheduled', 'claimed')"
# Event type -> count kind; a type may feed two kinds (bounced_hard: bounced, bounced_any).
KINDS = (
    ("delivered", "delivered"),
    ("bounced_hard", "bounced"),
    ("opened", "opened"),
    ("clicked", "clicked"),
    ("unsubscribed", "unsubscribed"),
    ("unsubscribe", "unsubscribed"),
    ("campaign_unsubscribe", "unsubscribed"),
    ("newsletter_unsubscribe", "unsubscribed"),
    ("complained", "complaints"),
    ("bounced_soft", "soft_bounced"),
    ("bounced_hard", "bounced_any"),
    ("bounced_soft", "bounced_any"),
)
KIND_ROWS = ", ".join(f"('{type_}', '{kind}')" for type_, kind in KINDS)
TABLES = (
    "count_changes",
    "count_event_seen",
    "count_enrolled",
    "count_deliveries",
    "count_due_hours",
    "count_sent_hours",
    "count_event_kinds",
    "count_events",
)

# --- SQLite: row triggers --------------------------------------------------------------
_HOUR = "substr({}, 1, 13)"  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff'


def _campaign(row: str) -> str:
    # '' for a delivery whose enrollment is missing (only a hand-made row): counted apart
    # instead of failing the write.
    return f"coalesce((SELECT campaign FROM enrollments WHERE id = {row}.enrollment_id), '')"


def _bump(table: str, keys: dict[str, str], delta: str, where: str = "1") -> str:
    """An upsert adding `delta` to one count (SQLite's upsert needs the WHERE)."""
    names = ", ".join(keys)
    return (
        f"INSERT INTO {table} ({names}, n) SELECT {', '.join(keys.values())}, {delta} "
        f"WHERE {where} ON CONFLICT ({names}) DO UPDATE SET n = {table}.n + excluded.n;"
    )


def _delivery_keys(row: str) -> dict[str, str]:
    return {"campaign": _campaign(row), "step_key": f"{row}.step_key", "status": f"{row}.status"}


def _due(row: str) -> dict[str, str]:
    return {"campaign": _campaign(row), "hour": _HOUR.format(f"{row}.due_at")}


def _sent(row: str) -> dict[str, str]:
    return {"campaign": _campaign(row), "hour": _HOUR.format(f"{row}.sent_at")}


def _is_due(row: str) -> str:
    return f"{row}.status IN {PENDING}"


def _is_sent(row: str) -> str:
    return f"({row}.status = 'sent' AND {row}.sent_at IS NOT NULL)"


def _drop_zero_due(row: str, when: str = "1") -> str:
    return (
        f"DELETE FROM count_due_hours WHERE {when} AND campaign = {_campaign(row)} "
        f"AND hour = {_HOUR.format(f'{row}.due_at')} AND n = 0;"
    )


_SAME_DUE = (
    f"({_is_due('OLD')} AND {_is_due('NEW')} AND OLD.enrollment_id = NEW.enrollment_id "
    f"AND {_HOUR.format('OLD.due_at')} = {_HOUR.format('NEW.due_at')})"
)
_SAME_SENT = (
    f"({_is_sent('OLD')} AND {_is_sent('NEW')} AND OLD.enrollment_id = NEW.enrollment_id "
    f"AND {_HOUR.format('OLD.sent_at')} = {_HOUR.format('NEW.sent_at')})"
)
_SAME_STATUS = (
    "(OLD.status = NEW.status AND OLD.step_key = NEW.step_key "
    "AND OLD.enrollment_id = NEW.enrollment_id)"
)
SQLITE_DELIVERY_INSERT = " ".join(
    (
        _bump("count_deliveries", _delivery_keys("NEW"), "1"),
        _bump("count_due_hours", _due("NEW"), "1", _is_due("NEW")),
        _bump("count_sent_hours", _sent("NEW"), "1", _is_sent("NEW")),
    )
)
SQLITE_DELIVERY_DELETE = " ".join(
    (
        _bump("count_deliveries", _delivery_keys("OLD"), "-1"),
        _bump("count_due_hours", _due("OLD"), "-1", _is_due("OLD")),
        _drop_zero_due("OLD", _is_due("OLD")),
        _bump("count_sent_hours", _sent("OLD"), "-1", _is_sent("OLD")),
    )
)
SQLITE_DELIVERY_UPDATE = " ".join(
    (
        _bump("count_deliveries", _delivery_keys("OLD"), "-1", f"NOT {_SAME_STATUS}"),
        _bump("count_deliveries", _delivery_keys("NEW"), "1", f"NOT {_SAME_STATUS}"),
        _bump("count_due_hours", _due("OLD"), "-1", f"{_is_due('OLD')} AND NOT {_SAME_DUE}"),
        # Only when that count went down (not on a lease renewal or a claim).
        _drop_zero_due("OLD", f"{_is_due('OLD')} AND NOT {_SAME_DUE}"),
        _bump("count_due_hours", _due("NEW"), "1", f"{_is_due('NEW')} AND NOT {_SAME_DUE}"),
        _bump("count_sent_hours", _sent("OLD"), "-1", f"{_is_sent('OLD')} AND NOT {_SAME_SENT}"),
        _bump("count_sent_hours", _sent("NEW"), "1", f"{_is_sent('NEW')} AND NOT {_SAME_SENT}"),
    )
)


_SEEN_KINDS = "(SELECT kind FROM count_event_kinds WHERE type = {}.type)"


def _event_added(row: str) -> str:
    """Count `row`'s delivery under each kind of its type that count_event_seen does not
    hold yet, then add those pairs (with the delivery's campaign and step)."""
    source = (
        f"FROM count_event_kinds k JOIN deliveries d ON d.id = {row}.delivery_id "
        f"WHERE k.type = {row}.type"
    )
    campaign = "coalesce((SELECT campaign FROM enrollments WHERE id = d.enrollment_id), '')"
    return (
        f"INSERT INTO count_events (campaign, step_key, kind, n) "
        f"SELECT {campaign}, d.step_key, k.kind, 1 {source} AND NOT EXISTS (SELECT 1 "
        f"FROM count_event_seen s WHERE s.delivery_id = {row}.delivery_id AND s.kind = k.kind) "
        "ON CONFLICT (campaign, step_key, kind) DO UPDATE SET n = count_events.n + excluded.n; "
        "INSERT INTO count_event_seen (delivery_id, kind, campaign, step_key) "
        f"SELECT {row}.delivery_id, k.kind, {campaign}, d.step_key {source} "
        "ON CONFLICT (delivery_id, kind) DO NOTHING;"
    )


def _event_removed(row: str) -> str:
    """Count down, by the pair's own campaign and step, each kind of `row`'s type that no
    event of its delivery has any more, and drop those pairs."""
    none_left = (
        "NOT EXISTS (SELECT 1 FROM events x JOIN count_event_kinds m ON m.type = x.type "
        f"AND m.kind = {{}}.kind WHERE x.delivery_id = {row}.delivery_id)"
    )
    return (
        "INSERT INTO count_events (campaign, step_key, kind, n) "
        "SELECT s.campaign, s.step_key, s.kind, -1 FROM count_event_seen s "
        f"WHERE s.delivery_id = {row}.delivery_id AND s.kind IN {_SEEN_KINDS.format(row)} "
        f"AND {none_left.format('s')} "
        "ON CONFLICT (campaign, step_key, kind) DO UPDATE SET n = count_events.n + excluded.n; "
        f"DELETE FROM count_event_seen WHERE delivery_id = {row}.delivery_id "
        f"AND kind IN {_SEEN_KINDS.format(row)} AND {none_left.format('count_event_seen')};"
    )


SQLITE_EVENT_INSERT = _event_added("NEW")
SQLITE_EVENT_DELETE = _event_removed("OLD")
SQLITE_EVENT_UPDATE = f"{_event_removed('OLD')} {_event_added('NEW')}"
SQLITE_ENROLLED = {
    "insert": _bump("count_enrolled", {"campaign": "NEW.campaign"}, "1"),
    "delete": _bump("count_enrolled", {"campaign": "OLD.campaign"}, "-1"),
    "update": (
        f"{_bump('count_enrolled', {'campaign': 'OLD.campaign'}, '-1')} "
        f"{_bump('count_enrolled', {'campaign': 'NEW.campaign'}, '1')}"
    ),
}

# --- PostgreSQL: statement triggers appending to count_changes ----------------------------
# A trigger never updates a shared count row: each statement's changes, added up per key,
# are appended to count_changes (no unique key, so no row lock is shared between two
# workers' transactions: no waits, no deadlocks). Readers add the pending changes to the
# count tables; storage/count_fold.py moves them into the count tables now and then.
_PG_HOUR = "to_char({}, 'YYYY-MM-DD HH24')"
# '' for a delivery whose enrollment is missing, as on SQLite.
_PG_CAMPAIGN = "coalesce((SELECT campaign FROM enrollments WHERE id = {}.enrollment_id), '')"
_D_COLUMNS = "enrollment_id, step_key, status, due_at, sent_at"


def _pg_rows(columns: str, old: bool, new: bool) -> str:
    parts = []
    if new:
        parts.append(f"SELECT {columns}, 1 AS sign FROM new_rows")
    if old:
        parts.append(f"SELECT {columns}, -1 AS sign FROM old_rows")
    return " UNION ALL ".join(parts)


def _pg_append(counter: str, keys: tuple[str, str, str], rows: str, where: str = "true") -> str:
    # The campaign through a scalar subquery: always one primary-key look-up per row,
    # never a hash join reading all of enrollments (the planner cannot pull it up).
    return (
        "INSERT INTO count_changes (counter, campaign, k1, k2, n) "
        f"SELECT '{counter}', {', '.join(keys)}, sum(r.sign) "
        f"FROM (SELECT x.*, {_PG_CAMPAIGN.format('x')} AS campaign FROM ({rows}) x) r "
        f"WHERE {where} GROUP BY 2, 3, 4 HAVING sum(r.sign) <> 0;"
    )


def _pg_delivery_body(old: bool, new: bool) -> str:
    rows = _pg_rows(_D_COLUMNS, old, new)
    return " ".join(
        (
            _pg_append("deliveries", ("r.campaign", "r.step_key", "r.status"), rows),
            _pg_append(
                "due",
                ("r.campaign", _PG_HOUR.format("r.due_at"), "''"),
                rows,
                f"r.status IN {PENDING}",
            ),
            _pg_append(
                "sent",
                ("r.campaign", _PG_HOUR.format("r.sent_at"), "''"),
                rows,
                "r.status = 'sent' AND r.sent_at IS NOT NULL",
            ),
        )
    )


def _pg_event_body(old: bool, new: bool) -> str:
    """A delivery counts under a kind while count_event_seen holds (delivery, kind).

    Removed first: pairs of the old rows with no event of the kind left. Then added: the
    new rows' pairs, INSERT ... ON CONFLICT DO NOTHING, counting only the rows inserted
    (a concurrent insert of the same pair waits on the unique index, then does nothing).
    The seen row keeps the delivery's campaign and step, so a removal counts down even
    when the delivery itself is gone.
    """
    statements = []
    if old:
        statements.append(
            "WITH gone AS (DELETE FROM count_event_seen s USING (SELECT DISTINCT "
            "o.delivery_id, k.kind FROM old_rows o JOIN count_event_kinds k ON k.type = o.type "
            "WHERE o.delivery_id IS NOT NULL) p WHERE s.delivery_id = p.delivery_id "
            "AND s.kind = p.kind AND NOT EXISTS (SELECT 1 FROM events x JOIN count_event_kinds m "
            "ON m.type = x.type AND m.kind = p.kind WHERE x.delivery_id = p.delivery_id) "
            "RETURNING s.campaign, s.step_key, s.kind) "
            "INSERT INTO count_changes (counter, campaign, k1, k2, n) "
            "SELECT 'events', campaign, step_key, kind, -count(*) FROM gone GROUP BY 2, 3, 4;"
        )
    if new:
        statements.append(
            "WITH added AS (INSERT INTO count_event_seen (delivery_id, kind, campaign, step_key) "
            "SELECT p.delivery_id, p.kind, coalesce((SELECT e.campaign FROM enrollments e "
            "WHERE e.id = d.enrollment_id), ''), d.step_key FROM (SELECT DISTINCT n.delivery_id, "
            "k.kind FROM new_rows n JOIN count_event_kinds k ON k.type = n.type) p "
            "JOIN deliveries d ON d.id = p.delivery_id ORDER BY 1, 2 "
            "ON CONFLICT (delivery_id, kind) DO NOTHING RETURNING campaign, step_key, kind) "
            "INSERT INTO count_changes (counter, campaign, k1, k2, n) "
            "SELECT 'events', campaign, step_key, kind, count(*) FROM added GROUP BY 2, 3, 4;"
        )
    return " ".join(statements)


def _pg_enrolled_body(old: bool, new: bool) -> str:
    rows = _pg_rows("campaign", old, new)
    return (
        "INSERT INTO count_changes (counter, campaign, k1, k2, n) "
        f"SELECT 'enrolled', r.campaign, '', '', sum(r.sign) FROM ({rows}) r "
        "GROUP BY 2 HAVING sum(r.sign) <> 0;"
    )


_OPS = {"insert": (False, True), "delete": (True, False), "update": (True, True)}
_REFERENCING = {
    "insert": "REFERENCING NEW TABLE AS new_rows",
    "delete": "REFERENCING OLD TABLE AS old_rows",
    "update": "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
}
PG_BODIES = {
    (table, op_name): body(*flags)
    for table, body in (
        ("deliveries", _pg_delivery_body),
        ("events", _pg_event_body),
        ("enrollments", _pg_enrolled_body),
    )
    for op_name, flags in _OPS.items()
}

# --- Filling the counts from the rows already there ---------------------------------------


def _fill(hour: str) -> dict[str, str]:
    of_delivery = "FROM deliveries d JOIN enrollments e ON e.id = d.enrollment_id"
    return {
        "enrolled": "SELECT campaign, count(*) FROM enrollments GROUP BY campaign",
        "deliveries": f"SELECT e.campaign, d.step_key, d.status, count(*) {of_delivery} "
        "GROUP BY e.campaign, d.step_key, d.status",
        "due": f"SELECT e.campaign, {hour.format('d.due_at')}, count(*) {of_delivery} "
        f"WHERE d.status IN {PENDING} GROUP BY 1, 2",
        "sent": f"SELECT e.campaign, {hour.format('d.sent_at')}, count(*) {of_delivery} "
        "WHERE d.status = 'sent' AND d.sent_at IS NOT NULL GROUP BY 1, 2",
        "seen": "SELECT DISTINCT x.delivery_id, k.kind, e.campaign, d.step_key "
        "FROM events x JOIN count_event_kinds k ON k.type = x.type "
        "JOIN deliveries d ON d.id = x.delivery_id JOIN enrollments e "
        "ON e.id = d.enrollment_id",
    }


def upgrade() -> None:
    op.create_table(
        "count_enrolled",
        sa.Column("campaign", sa.String(64), primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )
    op.create_table(
        "count_deliveries",
        sa.Column("campaign", sa.String(64), primary_key=True),
        sa.Column("step_key", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )
    op.create_table(
        "count_due_hours",
        sa.Column("campaign", sa.String(64), primary_key=True),
        sa.Column("hour", sa.String(13), primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )
    op.create_table(
        "count_sent_hours",
        sa.Column("campaign", sa.String(64), primary_key=True),
        sa.Column("hour", sa.String(13), primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )
    op.create_table(
        "count_event_kinds",
        sa.Column("type", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
    )
    op.create_table(
        "count_events",
        sa.Column("campaign", sa.String(64), primary_key=True),
        sa.Column("step_key", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )
    op.create_table(
        "count_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("counter", sa.String(16), nullable=False),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("k1", sa.String(64), nullable=False),
        sa.Column("k2", sa.String(32), nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
    )
    op.create_index("ix_count_changes_counter", "count_changes", ["counter", "campaign"])
    op.create_table(
        "count_event_seen",
        sa.Column("delivery_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("step_key", sa.String(64), nullable=False),
    )
    op.execute(f"INSERT INTO count_event_kinds (type, kind) VALUES {KIND_ROWS}")
    if op.get_bind().dialect.name == "postgresql":
        hour = _PG_HOUR
        for table, op_name in PG_BODIES:
            op.execute(
                f"CREATE FUNCTION count_{table}_{op_name}() RETURNS trigger LANGUAGE plpgsql "
                f"AS $$ BEGIN {PG_BODIES[table, op_name]} RETURN NULL; END $$"
            )
            op.execute(
                f"CREATE TRIGGER count_{table}_{op_name} AFTER {op_name.upper()} ON {table} "
                f"{_REFERENCING[op_name]} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION count_{table}_{op_name}()"
            )
    else:
        hour = _HOUR
        op.execute(
            "CREATE TRIGGER count_deliveries_insert AFTER INSERT ON deliveries "
            f"BEGIN {SQLITE_DELIVERY_INSERT} END"
        )
        op.execute(
            "CREATE TRIGGER count_deliveries_delete AFTER DELETE ON deliveries "
            f"BEGIN {SQLITE_DELIVERY_DELETE} END"
        )
        op.execute(
            "CREATE TRIGGER count_deliveries_update AFTER UPDATE OF status, step_key, "
            f"enrollment_id, due_at, sent_at ON deliveries BEGIN {SQLITE_DELIVERY_UPDATE} END"
        )
        op.execute(
            "CREATE TRIGGER count_events_insert AFTER INSERT ON events "
            f"WHEN NEW.delivery_id IS NOT NULL BEGIN {SQLITE_EVENT_INSERT} END"
        )
        op.execute(
            "CREATE TRIGGER count_events_delete AFTER DELETE ON events "
            f"WHEN OLD.delivery_id IS NOT NULL BEGIN {SQLITE_EVENT_DELETE} END"
        )
        op.execute(
            "CREATE TRIGGER count_events_update AFTER UPDATE OF type, delivery_id ON events "
            "WHEN OLD.type IS NOT NEW.type OR OLD.delivery_id IS NOT NEW.delivery_id "
            f"BEGIN {SQLITE_EVENT_UPDATE} END"
        )
        op.execute(
            "CREATE TRIGGER count_enrollments_insert AFTER INSERT ON enrollments "
            f"BEGIN {SQLITE_ENROLLED['insert']} END"
        )
        op.execute(
            "CREATE TRIGGER count_enrollments_delete AFTER DELETE ON enrollments "
            f"BEGIN {SQLITE_ENROLLED['delete']} END"
        )
        op.execute(
            "CREATE TRIGGER count_enrollments_update AFTER UPDATE OF campaign ON enrollments "
            f"WHEN OLD.campaign IS NOT NEW.campaign BEGIN {SQLITE_ENROLLED['update']} END"
        )
    fill = _fill(hour)
    op.execute(f"INSERT INTO count_enrolled (campaign, n) {fill['enrolled']}")
    op.execute(f"INSERT INTO count_deliveries (campaign, step_key, status, n) {fill['deliveries']}")
    op.execute(f"INSERT INTO count_due_hours (campaign, hour, n) {fill['due']}")
    op.execute(f"INSERT INTO count_sent_hours (campaign, hour, n) {fill['sent']}")
    op.execute(
        f"INSERT INTO count_event_seen (delivery_id, kind, campaign, step_key) {fill['seen']}"
    )
    op.execute(
        "INSERT INTO count_events (campaign, step_key, kind, n) SELECT campaign, "
        "step_key, kind, count(*) FROM count_event_seen GROUP BY 1, 2, 3"
    )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in ("deliveries", "events", "enrollments"):
        for op_name in _OPS:
            op.execute(
                f"DROP TRIGGER IF EXISTS count_{table}_{op_name}"
                + (f" ON {table}" if postgres else "")
            )
            if postgres:
                op.execute(f"DROP FUNCTION IF EXISTS count_{table}_{op_name}()")
    for table in reversed(TABLES):
        op.drop_table(table)
