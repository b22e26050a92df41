"""Migrations on SQLite and PostgreSQL: first use, refusing an old schema, upgrading in place.

Each test gets an empty database of each kind: a SQLite file, or a fresh PostgreSQL schema.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, insert, inspect, select, text
from typer.testing import CliRunner

from campaigns.errors import ConfigurationError
from campaigns.storage.store import Store, _alembic_config, head_revision
from campaigns.storage.tables import (
    campaign_versions,
    campaigns,
    contacts,
    deliveries,
    enrollments,
    events,
    meta,
    metadata,
    suppressions,
)
from cli import app
from tests.helpers import utc

AT = utc("2026-03-02T12:00")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'dripmail.db'}"


def dripmail(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})


def migrate(url: str, revision: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), revision)
    engine.dispose()


def fill_every_table(url: str) -> None:
    """Rows in every table, as a live installation at 0001 would have them."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(meta),
            [
                {"key": "secret_key", "value": "kept-secret"},
                {"key": "suppression_key", "value": "k"},
            ],
        )
        conn.execute(
            insert(campaigns).values(name="sleep", version="v1", status="active", updated_at=AT)
        )
        conn.execute(
            insert(campaign_versions).values(
                campaign="sleep", version="v1", files='{"campaign.yaml": "name: sleep"}',
                published_at=AT,
            )
        )  # fmt: skip
        conn.execute(
            insert(contacts),
            [
                {"id": i, "email": f"p{i}@example.com", "first_name": f"P{i}",
                 "timezone": "Europe/London", "consent_source": "form", "consent_at": AT,
                 "created_at": AT}
                for i in (1, 2, 3)
            ],
        )  # fmt: skip
        conn.execute(
            insert(enrollments),
            [
                {"id": i, "contact_id": i, "campaign": "sleep", "signed_up_at": AT,
                 "status": "active", "created_at": AT}
                for i in (1, 2, 3)
            ],
        )  # fmt: skip
        # executemany wants the same keys in each (those of 0001: `variant` came in 0012)
        empty = dict.fromkeys(c.name for c in deliveries.c if c.name != "variant")
        conn.execute(
            insert(deliveries),
            [
                empty | {"id": 1, "enrollment_id": 1, "step_key": "welcome", "position": 1,
                         "due_at": AT, "status": "sent", "attempts": 1,
                         "provider_message_id": "m1", "sent_at": AT, "updated_at": AT},
                empty | {"id": 2, "enrollment_id": 2, "step_key": "welcome", "position": 1,
                         "due_at": AT, "status": "claimed", "attempts": 0,
                         "lease_owner": "host:1", "lease_expires_at": AT + timedelta(minutes=5),
                         "updated_at": AT},
                empty | {"id": 3, "enrollment_id": 3, "step_key": "welcome", "position": 1,
                         "due_at": AT, "status": "unknown", "attempts": 1, "error": "timeout",
                         "sent_at": AT, "updated_at": AT},
                empty | {"id": 4, "enrollment_id": 1, "step_key": "sleep", "position": 2,
                         "due_at": AT + timedelta(days=2), "status": "scheduled", "attempts": 0},
            ],
        )  # fmt: skip
        conn.execute(
            insert(suppressions).values(address_hash="ab" * 32, reason="bounce", created_at=AT)
        )
        conn.execute(
            insert(events).values(
                provider="sendgrid", provider_event_id="e1", delivery_id=1, type="delivered",
                occurred_at=AT, created_at=AT,
            )
        )  # fmt: skip
    engine.dispose()


def snapshot(url: str) -> dict[str, list]:
    """Every row of every dripmail table the database has (at 0001, those of 0001)."""
    engine = create_engine(url)
    reflected = MetaData()
    reflected.reflect(engine, only=lambda name, _meta: name in metadata.tables)
    with engine.connect() as conn:
        data = {
            name: sorted(map(tuple, conn.execute(select(table))), key=repr)
            for name, table in reflected.tables.items()
        }
    engine.dispose()
    return data


# Tables added since 0001: empty after an upgrade.
NEW_TABLES = (
    "webhook_tokens",
    "worker_heartbeats",
    "health_records",
    "alerts",
    "contact_events",
    "variant_winners",
    "console_users",
    "console_sessions",
    "console_failures",
    "audit_log",
    "console_reviews",
    "console_settings",
    "api_tokens",
    "webhook_endpoints",
    "webhook_messages",
    "confirmations",
)
# Tables of counts (0024): filled from the existing rows by the migration itself.
COUNT_TABLES = (
    "count_changes",
    "count_event_seen",
    "count_enrolled",
    "count_deliveries",
    "count_due_hours",
    "count_sent_hours",
    "count_event_kinds",
    "count_events",
)


# What fill_every_table's rows count as (0024's backfill): 3 enrollments in `sleep`; its
# deliveries sent, claimed, unknown (welcome) and scheduled (sleep); one delivered event.
EXPECTED_COUNTS = {
    "count_enrolled": [("sleep", 3)],
    "count_deliveries": [
        ("sleep", "sleep", "scheduled", 1),
        ("sleep", "welcome", "claimed", 1),
        ("sleep", "welcome", "sent", 1),
        ("sleep", "welcome", "unknown", 1),
    ],
    "count_due_hours": [
        ("sleep", AT.strftime("%Y-%m-%d %H"), 1),
        ("sleep", (AT + timedelta(days=2)).strftime("%Y-%m-%d %H"), 1),
    ],
    "count_sent_hours": [("sleep", AT.strftime("%Y-%m-%d %H"), 1)],
    "count_events": [("sleep", "welcome", "delivered", 1)],
    "count_event_seen": [(1, "delivered", "sleep", "welcome")],
}


def counted_from_the_rows(counted: dict[str, list]) -> dict[str, list]:
    """The count tables of a snapshot, without the fixed map of event kinds."""
    assert ("bounced_soft", "bounced_any") in counted.pop("count_event_kinds")
    # The fill writes the counts themselves: no change pending.
    assert counted.pop("count_changes") == []
    return {name: sorted(rows) for name, rows in counted.items()}


def without_new_columns(data: dict[str, list]) -> dict[str, list]:
    """A snapshot without the tables and columns added since 0001 (webhook_tokens, the
    alerts' tables, contact_events, variant_winners, the console's tables, api_tokens;
    events.campaign, enrollments.paused_at, .converted_at and .conversion_event_id,
    contacts.tags, .newsletter_unsubscribed_at, .attributes, .language, .discreet,
    .paused_until, .min_gap_days and .confirmed_at, campaigns.kind,
    .folder, .pause_kind and .pause_reason, deliveries.variant; NULL in old rows)."""
    assert all(data.pop(name) == [] for name in NEW_TABLES)
    counted = {name: data.pop(name) for name in COUNT_TABLES}
    assert counted_from_the_rows(counted) == EXPECTED_COUNTS
    assert all(row[-1] is None for row in data["events"])
    assert all(row[-3:] == (None, None, None) for row in data["enrollments"])
    assert all(row[-8:] == (None,) * 8 for row in data["contacts"])
    assert all(row[-4:] == (None, None, None, None) for row in data["campaigns"])
    assert all(row[-1] is None for row in data["deliveries"])
    return {
        **data,
        "contacts": [row[:-8] for row in data["contacts"]],
        "campaigns": [row[:-4] for row in data["campaigns"]],
        "events": [row[:-1] for row in data["events"]],
        "enrollments": [row[:-3] for row in data["enrollments"]],
        "deliveries": [row[:-1] for row in data["deliveries"]],
    }


def indexes(url: str) -> set[str]:
    engine = create_engine(url)
    names = {index["name"] for index in inspect(engine).get_indexes("deliveries")}
    engine.dispose()
    return names


def test_an_empty_database_is_set_up_on_first_use(url):
    store = Store(url)
    state = store.schema_state()
    store.close()
    assert state.current == state.head == head_revision()
    assert {"ix_deliveries_claim", "ix_deliveries_unknown"} <= indexes(url)
    result = dripmail("db", "current", "--db", url)
    assert result.exit_code == 0 and f"schema {head_revision()} (newest)" in result.stdout


def test_the_tables_in_store_py_are_exactly_the_newest_migration(url):
    migrate(url, "head")
    engine = create_engine(url)
    with engine.connect() as conn:
        differences = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    engine.dispose()
    assert differences == []


def test_alembic_check_and_the_server_defaults_find_no_difference(url):
    """`alembic check` as a developer runs it (through env.py), and the comparison once more
    with server defaults: tables.py is exactly what the newest migration makes."""
    migrate(url, "head")
    engine = create_engine(url)
    with engine.begin() as conn:
        command.check(_alembic_config(conn))  # AutogenerateDiffsDetected names any difference
        options = {"compare_type": True, "compare_server_default": True}
        differences = compare_metadata(MigrationContext.configure(conn, opts=options), metadata)
    engine.dispose()
    assert differences == []


def test_a_database_at_0001_is_refused_then_upgraded_keeping_every_row(url):
    migrate(url, "0001")
    fill_every_table(url)
    before = snapshot(url)
    assert set(before) == set(metadata.tables) - set(NEW_TABLES) - set(COUNT_TABLES)
    assert all(before.values()), "a table was left empty"

    with pytest.raises(ConfigurationError, match=r"older than this dripmail.*dripmail db upgrade"):
        Store(url)
    refused = dripmail("status", "--db", url)
    assert refused.exit_code == 2
    assert refused.stderr.strip().splitlines() == [
        f"error: the database schema (0001) is older than this dripmail ({head_revision()}): "
        "run `dripmail db upgrade`"
    ]
    assert f"needs {head_revision()}" in dripmail("db", "current", "--db", url).stdout
    assert snapshot(url) == before

    upgraded = dripmail("db", "upgrade", "--db", url)

    assert upgraded.exit_code == 0, upgraded.output
    assert f"schema upgraded from 0001 to {head_revision()}" in upgraded.stdout
    assert without_new_columns(snapshot(url)) == before
    assert "ix_deliveries_claim" in indexes(url)
    assert "ix_deliveries_status_due" not in indexes(url)
    store = Store(url)
    assert store.secret_key() == "kept-secret"  # unsubscribe links signed before still verify
    store.close()
    assert f"already at {head_revision()}" in dripmail("db", "upgrade", "--db", url).stdout

    # And back down: what 0002 and 0003 added goes, every row stays.
    engine = create_engine(url)
    with engine.begin() as conn:
        command.downgrade(_alembic_config(conn), "0001")
    engine.dispose()
    assert snapshot(url) == before and "ix_deliveries_status_due" in indexes(url)


def test_a_database_made_before_migrations_is_recognised_as_0001(url):
    # What the store's `create_all` made before migrations: the 0001 tables, no
    # alembic_version, and `schema = 1` in meta.
    migrate(url, "0001")
    fill_every_table(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(insert(meta).values(key="schema", value="1"))
    engine.dispose()
    before = snapshot(url)

    with pytest.raises(ConfigurationError, match=r"\(0001\).*dripmail db upgrade"):
        Store(url)
    result = dripmail("db", "upgrade", "--db", url)

    assert result.exit_code == 0, result.output
    assert f"from 0001 to {head_revision()}" in result.stdout
    assert without_new_columns(snapshot(url)) == before
    Store(url).close()


def test_a_schema_newer_than_this_dripmail_is_refused(url):
    migrate(url, "head")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(ConfigurationError, match=r"newer than this dripmail"):
        Store(url)


def test_workers_starting_together_on_an_empty_database_set_it_up_once(url):
    results: list[object] = []

    def start() -> None:
        try:
            store = Store(url)
            results.append(store.secret_key())
            store.close()
        except Exception as exc:  # collected, asserted below
            results.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) == 6 and all(isinstance(r, str) for r in results), results
    assert len(set(results)) == 1, "two installation secrets"
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM alembic_version")) == 1
    engine.dispose()


def test_a_worker_opening_a_new_file_while_another_holds_its_write_lock_waits(
    tmp_path, monkeypatch
):
    # SQLite refuses the switch to WAL at once, without its busy handler, while another
    # connection holds a write lock in the old journal mode: the store must wait, not fail.
    import sqlite3

    from campaigns.storage import store as store_module

    path = tmp_path / "new.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE scratch (x)")
    refused = threading.Event()
    real_sleep = store_module.time.sleep

    def waiting(seconds: float) -> None:
        refused.set()
        real_sleep(seconds)

    monkeypatch.setattr(store_module.time, "sleep", waiting)
    results: list[object] = []

    def start() -> None:
        try:
            store = Store(f"sqlite:///{path}")
            results.append(store.secret_key())
            store.close()
        except Exception as exc:  # collected, asserted below
            results.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    assert refused.wait(timeout=30), results
    holder.execute("COMMIT")
    holder.close()
    thread.join(timeout=60)
    assert len(results) == 1 and isinstance(results[0], str), results


# -- 0010: SendGrid's event names become the event model's kinds ---------------------------

# (provider, type before 0010, type after it): every SendGrid name the old webhook stored,
# and dripmail's own unsubscribe events, which keep their types.
EVENT_ROWS = [
    ("sendgrid", "processed", "accepted"),
    ("sendgrid", "delivered", "delivered"),
    ("sendgrid", "deferred", "deferred"),
    ("sendgrid", "bounce", "bounced_hard"),
    ("sendgrid", "dropped", "rejected"),
    ("sendgrid", "spamreport", "complained"),
    ("sendgrid", "unsubscribe", "unsubscribed"),
    ("sendgrid", "group_unsubscribe", "unsubscribed"),
    ("sendgrid", "open", "opened"),
    ("sendgrid", "click", "clicked"),
    ("sendgrid", "group_resubscribe", "group_resubscribe"),  # no kind: left as it was
    ("dripmail", "unsubscribe", "unsubscribe"),
    ("dripmail", "campaign_unsubscribe", "campaign_unsubscribe"),
    ("dripmail", "newsletter_unsubscribe", "newsletter_unsubscribe"),
    ("dripmail", "unsubscribe_undone", "unsubscribe_undone"),
    ("dripmail", "resubscribe", "resubscribe"),
    ("dripmail", "suppression_removed", "suppression_removed"),
]


def event_types(url: str) -> list[tuple[str, str]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(events.c.provider, events.c.type).order_by(events.c.id)).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def test_0010_stores_sendgrid_events_as_kinds_and_downgrades_back(url):
    migrate(url, "0009")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(events),
            [
                {"provider": provider, "provider_event_id": f"e{i}", "delivery_id": None,
                 "type": before, "occurred_at": AT, "created_at": AT, "campaign": None}
                for i, (provider, before, _after) in enumerate(EVENT_ROWS)
            ],
        )  # fmt: skip
    engine.dispose()

    migrate(url, "0010")

    assert event_types(url) == [(provider, after) for provider, before, after in EVENT_ROWS]

    engine = create_engine(url)
    with engine.begin() as conn:
        command.downgrade(_alembic_config(conn), "0009")
    engine.dispose()
    # Back to SendGrid's names; group_unsubscribe, which the old stats and suppressions
    # treated as unsubscribe, comes back as that.
    assert event_types(url) == [
        (provider, "unsubscribe" if before == "group_unsubscribe" else before)
        for provider, before, _after in EVENT_ROWS
    ]
