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
unsubscribes and their undo, edits, pause and resume, erasure, newsletters, a script):
row triggers on SQLite (one writer at a time), statement triggers with transition tables
on PostgreSQL, which add each statement's changes up and write each count once, in key
order, so concurrent workers take the count rows' locks in one order. The tables are
filled from the existing rows in the same transaction, after the triggers exist (on
PostgreSQL CREATE TRIGGER locks the tables against writes until the commit, so no write
of a running worker is missed or counted twice). Expand only: new tables, their triggers.
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


def _event_bump(row: str, delta: str) -> str:
    """Count `row`'s delivery under each kind of its type unless another event of the
    delivery already has that kind (so a kind counts deliveries, not events)."""
    return (
        "INSERT INTO count_events (campaign, step_key, kind, n) "
        f"SELECT e.campaign, d.step_key, k.kind, {delta} "
        "FROM count_event_kinds k JOIN deliveries d ON d.id = "
        f"{row}.delivery_id JOIN enrollments e ON e.id = d.enrollment_id "
        f"WHERE k.type = {row}.type AND NOT EXISTS (SELECT 1 FROM events x "
        "JOIN count_event_kinds m ON m.type = x.type AND m.kind = k.kind "
        f"WHERE x.delivery_id = {row}.delivery_id AND x.id <> {row}.id) "
        "ON CONFLICT (campaign, step_key, kind) DO UPDATE SET n = count_events.n + excluded.n;"
    )


SQLITE_EVENT_INSERT = _event_bump("NEW", "1")
SQLITE_EVENT_DELETE = _event_bump("OLD", "-1")
SQLITE_EVENT_UPDATE = f"{_event_bump('OLD', '-1')} {_event_bump('NEW', '1')}"
SQLITE_ENROLLED = {
    "insert": _bump("count_enrolled", {"campaign": "NEW.campaign"}, "1"),
    "delete": _bump("count_enrolled", {"campaign": "OLD.campaign"}, "-1"),
    "update": (
        f"{_bump('count_enrolled', {'campaign': 'OLD.campaign'}, '-1')} "
        f"{_bump('count_enrolled', {'campaign': 'NEW.campaign'}, '1')}"
    ),
}

# --- PostgreSQL: statement triggers over transition tables -------------------------------
_PG_HOUR = "to_char({}, 'YYYY-MM-DD HH24')"
_PG_CAMPAIGN = "(SELECT campaign FROM enrollments WHERE id = {}.enrollment_id)"
_D_COLUMNS = "enrollment_id, step_key, status, due_at, sent_at"
_E_COLUMNS = "id, delivery_id, type"


def _pg_rows(columns: str, old: bool, new: bool) -> str:
    parts = []
    if new:
        parts.append(f"SELECT {columns}, 1 AS sign FROM new_rows")
    if old:
        parts.append(f"SELECT {columns}, -1 AS sign FROM old_rows")
    return " UNION ALL ".join(parts)


def _pg_sum(table: str, keys: dict[str, str], rows: str, where: str = "true") -> str:
    # The campaign through a scalar subquery: always one primary-key look-up per row,
    # never a hash join reading all of enrollments (the planner cannot pull it up).
    names = ", ".join(keys)
    order = ", ".join(str(n) for n in range(1, len(keys) + 1))
    return (
        f"INSERT INTO {table} ({names}, n) SELECT {', '.join(keys.values())}, sum(r.sign) "
        f"FROM (SELECT x.*, {_PG_CAMPAIGN.format('x')} AS campaign FROM ({rows}) x) r "
        f"WHERE {where} GROUP BY {order} HAVING sum(r.sign) <> 0 ORDER BY {order} "
        f"ON CONFLICT ({names}) DO UPDATE SET n = {table}.n + excluded.n;"
    )


def _pg_delivery_body(old: bool, new: bool) -> str:
    rows = _pg_rows(_D_COLUMNS, old, new)
    due_hour = _PG_HOUR.format("r.due_at")
    statements = [
        _pg_sum(
            "count_deliveries",
            {"campaign": "r.campaign", "step_key": "r.step_key", "status": "r.status"},
            rows,
        ),
        _pg_sum(
            "count_due_hours",
            {"campaign": "r.campaign", "hour": due_hour},
            rows,
            f"r.status IN {PENDING}",
        ),
        _pg_sum(
            "count_sent_hours",
            {"campaign": "r.campaign", "hour": _PG_HOUR.format("r.sent_at")},
            rows,
            "r.status = 'sent' AND r.sent_at IS NOT NULL",
        ),
    ]
    if old:
        statements.append(
            "DELETE FROM count_due_hours c USING (SELECT DISTINCT "
            f"{_PG_CAMPAIGN.format('o')} AS campaign, {_PG_HOUR.format('o.due_at')} AS hour "
            "FROM old_rows o) r WHERE c.n = 0 AND c.campaign = r.campaign AND c.hour = r.hour;"
        )
    return " ".join(statements)


def _pg_event_body(old: bool, new: bool) -> str:
    """Per (delivery, kind) touched: counted after the statement minus counted before it.

    After: the delivery has an event of the kind now. Before: it had one among the events
    now there that the statement did not write (now minus new), or among the old rows.
    Set-based (the new and old rows grouped once, joined by hash; the events now there
    counted through ix_events_delivery), so a statement of many rows costs O(n log n).
    """
    empty = "SELECT NULL::integer AS delivery_id, NULL::varchar AS type WHERE false"
    new_rows = "SELECT delivery_id, type FROM new_rows" if new else empty
    old_rows = "SELECT delivery_id, type FROM old_rows" if old else empty
    return (
        "INSERT INTO count_events (campaign, step_key, kind, n) "
        f"WITH nk AS (SELECT r.delivery_id, k.kind, count(*) AS c FROM ({new_rows}) r "
        "JOIN count_event_kinds k ON k.type = r.type WHERE r.delivery_id IS NOT NULL "
        f"GROUP BY 1, 2), ok AS (SELECT DISTINCT r.delivery_id, k.kind FROM ({old_rows}) r "
        "JOIN count_event_kinds k ON k.type = r.type WHERE r.delivery_id IS NOT NULL), "
        "t AS (SELECT delivery_id, kind FROM nk UNION SELECT delivery_id, kind FROM ok), "
        "c AS (SELECT t.delivery_id, t.kind, (SELECT count(*) FROM events x "
        "JOIN count_event_kinds m ON m.type = x.type AND m.kind = t.kind "
        "WHERE x.delivery_id = t.delivery_id) AS now FROM t), "
        "delta AS (SELECT c.delivery_id, c.kind, (c.now > 0)::integer - "
        "((c.now - coalesce(nk.c, 0) > 0) OR ok.delivery_id IS NOT NULL)::integer AS d "
        "FROM c LEFT JOIN nk ON nk.delivery_id = c.delivery_id AND nk.kind = c.kind "
        "LEFT JOIN ok ON ok.delivery_id = c.delivery_id AND ok.kind = c.kind) "
        # Each delivery's campaign and step by primary-key look-ups (scalar subqueries).
        "SELECT k.campaign, k.step_key, k.kind, sum(k.d) FROM (SELECT delta.kind, delta.d, "
        "(SELECT e.campaign FROM deliveries dl JOIN enrollments e ON e.id = dl.enrollment_id "
        "WHERE dl.id = delta.delivery_id) AS campaign, (SELECT dl.step_key FROM deliveries dl "
        "WHERE dl.id = delta.delivery_id) AS step_key FROM delta WHERE delta.d <> 0) k "
        "WHERE k.campaign IS NOT NULL GROUP BY 1, 2, 3 "
        "HAVING sum(k.d) <> 0 ORDER BY 1, 2, 3 ON CONFLICT (campaign, step_key, kind) "
        "DO UPDATE SET n = count_events.n + excluded.n;"
    )


def _pg_enrolled_body(old: bool, new: bool) -> str:
    rows = _pg_rows("campaign", old, new)
    return (
        f"INSERT INTO count_enrolled (campaign, n) SELECT r.campaign, sum(r.sign) FROM ({rows}) r "
        "GROUP BY 1 HAVING sum(r.sign) <> 0 ORDER BY 1 "
        "ON CONFLICT (campaign) DO UPDATE SET n = count_enrolled.n + excluded.n;"
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
        "events": "SELECT e.campaign, d.step_key, k.kind, count(DISTINCT x.delivery_id) "
        "FROM events x JOIN count_event_kinds k ON k.type = x.type "
        "JOIN deliveries d ON d.id = x.delivery_id JOIN enrollments e "
        "ON e.id = d.enrollment_id GROUP BY 1, 2, 3",
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
    op.execute(f"INSERT INTO count_events (campaign, step_key, kind, n) {fill['events']}")


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
