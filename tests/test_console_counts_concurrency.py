"""Counts on PostgreSQL under concurrent writers (migration 0024, storage/count_fold.py).

Two workers record their sends in transactions of several statements each, reaching the
steps in opposite orders, as the reviewer's reproduction did: with the count rows updated
inside those transactions, the second worker waited on the first and then one of them
was aborted by a deadlock. Now the triggers only append changes, so neither waits (a
lock_timeout turns any wait into a failure instead of a hang). And two events of one
kind for one delivery, inserted by two transactions at once, count the delivery once.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Connection, func, insert, select, text, update

from campaigns.reporting.counts import deliveries_by_status, events_by_kind, sent_since
from campaigns.storage.count_fold import fold
from campaigns.storage.store import Store
from campaigns.storage.tables import (
    contacts,
    count_changes,
    count_deliveries,
    deliveries,
    enrollments,
    events,
)
from tests.helpers import utc

NOW = utc("2026-03-02T12:34")


def seed(store: Store) -> None:
    """Campaign c: two enrollments, each with steps s1 and s2 being sent."""
    with store.begin() as conn:
        conn.execute(
            insert(contacts),
            [{"id": i, "email": f"p{i}@example.com", "timezone": "UTC", "created_at": NOW}
             for i in (1, 2)],
        )  # fmt: skip
        conn.execute(
            insert(enrollments),
            [{"id": i, "contact_id": i, "campaign": "c", "signed_up_at": NOW,
              "status": "active", "created_at": NOW} for i in (1, 2)],
        )  # fmt: skip
        conn.execute(
            insert(deliveries),
            [{"id": n, "enrollment_id": e, "step_key": s, "position": p, "due_at": NOW,
              "status": "sending", "attempts": 0}
             for n, e, s, p in ((1, 1, "s1", 1), (2, 1, "s2", 2), (3, 2, "s1", 1),
                                (4, 2, "s2", 2))],
        )  # fmt: skip


@pytest.fixture
def pg(postgres_url: str):
    store = Store(postgres_url)
    seed(store)
    yield store
    store.close()


def worker(store: Store) -> Connection:
    """A connection in a transaction that fails at once instead of waiting on a lock."""
    conn = store.engine.connect()
    conn.execute(text("SET lock_timeout = '5s'"))
    return conn


def record_sent(conn: Connection, delivery_id: int) -> None:
    """One statement of a recording transaction (recording.py writes one per row)."""
    conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id)
        .values(status="sent", sent_at=NOW, attempts=1)
    )


def test_two_workers_recording_steps_in_opposite_orders_never_wait(pg):
    a, b = worker(pg), worker(pg)
    try:
        # The reviewer's order: A takes s2, B s1, A s1, B s2; both in the same hour.
        record_sent(a, 2)
        record_sent(b, 3)
        record_sent(a, 1)
        record_sent(b, 4)
        b.commit()
        a.commit()
    finally:
        a.close()
        b.close()
    with pg.connect() as conn:
        assert deliveries_by_status(conn, "c", "sent") == {"s1": 2, "s2": 2}
        assert deliveries_by_status(conn, "c", "sending") == {}
        assert sent_since(conn, NOW) == {"c": 4}
    # Folding moves the changes into the counts and changes nothing read.
    with pg.begin() as conn:
        assert fold(conn)
    with pg.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(count_changes)) == 0
        assert deliveries_by_status(conn, "c", "sent") == {"s1": 2, "s2": 2}
        assert sent_since(conn, NOW) == {"c": 4}
        rows = conn.execute(select(count_deliveries).order_by(*count_deliveries.c)).all()
        assert [tuple(row) for row in rows] == [
            ("c", "s1", "sent", 2),
            ("c", "s2", "sent", 2),
        ]


def test_a_fold_while_workers_write_loses_nothing(pg):
    a = worker(pg)
    try:
        record_sent(a, 1)  # not committed: the fold cannot see it, and must not wait
        with pg.begin() as conn:
            assert fold(conn)
        record_sent(a, 2)
        a.commit()
    finally:
        a.close()
    with pg.connect() as conn:
        assert deliveries_by_status(conn, "c", "sent") == {"s1": 1, "s2": 1}


def opened(conn: Connection, event_id: int) -> None:
    conn.execute(
        insert(events).values(
            id=event_id, provider="sendgrid", provider_event_id=f"e{event_id}",
            delivery_id=1, type="opened", created_at=NOW, campaign="c",
        )
    )  # fmt: skip


def waits_on_a_lock(store: Store, conn: Connection) -> bool:
    pid = conn.connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
    with store.connect() as watcher:
        return bool(
            watcher.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid "
                     "AND wait_event_type = 'Lock'"),
                {"pid": pid},
            )
        )  # fmt: skip


@pytest.mark.parametrize("first_ends", ["commit", "rollback"])
def test_two_opens_of_one_email_at_once_count_the_email_once(pg, first_ends):
    a, b = worker(pg), pg.engine.connect()
    failure: list[BaseException] = []

    def second() -> None:
        try:
            opened(b, 2)  # waits on A's (delivery, opened) pair, then goes on
            b.commit()
        except BaseException as exc:
            failure.append(exc)

    try:
        opened(a, 1)
        thread = threading.Thread(target=second)
        thread.start()
        # No clock: ask the server until B is seen waiting on A's lock.
        while not waits_on_a_lock(pg, b):
            assert thread.is_alive(), failure
        getattr(a, first_ends)()
        thread.join()
        assert not failure
    finally:
        a.close()
        b.close()
    with pg.connect() as conn:
        assert events_by_kind(conn, "c") == {("s1", "opened"): 1}
        # Deleting the events one by one counts the email down once, at the last.
        conn.execute(events.delete().where(events.c.id == 2))
        assert events_by_kind(conn, "c").get(("s1", "opened"), 0) == (
            1 if first_ends == "commit" else 0
        )
        conn.execute(events.delete())
        assert events_by_kind(conn, "c") == {}
        conn.rollback()


def test_events_deleted_after_their_delivery_count_down(store):
    """Both databases: the (delivery, kind) pair keeps its campaign and step."""
    seed(store)
    with store.begin() as conn:
        opened(conn, 1)
    with store.connect() as conn:
        assert events_by_kind(conn, "c") == {("s1", "opened"): 1}
    with store.begin() as conn:
        conn.execute(deliveries.delete().where(deliveries.c.id == 1))
        conn.execute(events.delete().where(events.c.delivery_id == 1))
    with store.connect() as conn:
        assert events_by_kind(conn, "c") == {}
