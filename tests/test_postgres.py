"""The store and the dispatcher on PostgreSQL: types, races, leases, fencing, claiming.

The end-to-end suite (test_engine.py and every other test taking `store`) already runs
on PostgreSQL too; this file covers what only shows with a server and several workers.
Two workers are two Dispatchers with their own owner ids, driven step by step so each
interleaving is exact.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, delete, func, insert, select, text, update
from sqlalchemy.exc import StatementError
from typer.testing import CliRunner

from campaigns.delivery.dispatcher import Dispatcher
from campaigns.delivery.report import RunReport
from campaigns.planning import schedule
from campaigns.planning.enroll import enroll, import_csv
from campaigns.planning.signups import Signup
from campaigns.reporting.reports import status_counts
from campaigns.storage.store import Store
from campaigns.storage.tables import campaigns, deliveries, enrollments, meta
from cli import app
from senders.base import Message, Outcome, Sender, SendResult
from tests.helpers import utc

NOW = utc("2026-03-02T15:00")  # 10:00 in New York: every first step is due
CONSENT = "clinic sign-up form"


class Recording(Sender):
    """A sender that keeps the delivery ids it is handed."""

    name = "recording"
    batch_limit = 1

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.ids: list[str] = []

    def send(self, messages: list[Message]) -> list[SendResult]:
        self.ids += [m.delivery_id for m in messages]
        return [SendResult(m.delivery_id, Outcome.SENT, provider_id=self.tag) for m in messages]

    def close(self) -> None:
        pass


@pytest.fixture
def pg(postgres_url: str):
    store = Store(postgres_url)
    yield store
    store.close()


def enroll_many(store: Store, campaign, count: int, *, at: str = "2026-03-02T10:00") -> None:
    for i in range(count):
        signup = Signup(f"patient{i}@example.com", f"Pat{i}", "America/New_York", at, CONSENT)
        enroll(store, campaign, signup, now=utc("2026-03-02T12:00"))


def rows(store: Store) -> list:
    with store.connect() as conn:
        return conn.execute(select(deliveries).order_by(deliveries.c.id)).all()


def worker(store: Store, owner: str, sender: Recording, **options) -> Dispatcher:
    return Dispatcher(store, lambda _campaign: sender, owner=owner, **options)


# -- the store's types and queries ----------------------------------------------------------


def test_times_are_stored_as_utc_and_come_back_aware(pg):
    local = datetime(2026, 3, 8, 1, 30, tzinfo=ZoneInfo("America/New_York"))
    with pg.begin() as conn:
        conn.execute(insert(campaigns).values(name="c", version="v", updated_at=local))
    with pg.connect() as conn:
        back = conn.scalar(select(campaigns.c.updated_at))
        raw = conn.scalar(text("select updated_at::text from campaigns"))
    assert back == local and back.tzinfo is UTC
    assert raw == "2026-03-08 06:30:00"  # naive UTC, whatever the server's time zone
    with pytest.raises(StatementError, match="naive datetime"), pg.begin() as conn:
        conn.execute(update(campaigns).values(updated_at=datetime(2026, 3, 8, 1, 30)))


def test_an_installation_secret_made_by_two_stores_at_once_is_one_secret(pg, postgres_url):
    """The loser of the race hits the unique key, rolls back to a savepoint, reads the winner's."""
    with pg.begin() as conn:
        conn.execute(delete(meta).where(meta.c.key == "secret_key"))
    engine = create_engine(postgres_url)
    other = engine.connect()
    other.begin()
    other.execute(insert(meta).values(key="secret_key", value="made-by-the-other-worker"))
    made: list[str] = []
    racer = threading.Thread(target=lambda: made.append(pg._meta_secret("secret_key")))
    racer.start()
    # Wait (on the database) until the racer is blocked on the other's uncommitted key.
    deadline = time.monotonic() + 30
    with engine.connect() as watch:
        while not watch.scalar(
            text(
                "select count(*) from pg_stat_activity "
                "where datname = current_database() and wait_event_type = 'Lock'"
            )
        ):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    other.commit()
    other.close()
    racer.join(timeout=30)
    engine.dispose()
    assert made == ["made-by-the-other-worker"]


def test_a_bulk_import_and_its_repeat_on_postgresql(pg, clinic, tmp_path):
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text(
        "email,first_name,timezone,signed_up_at,consent\n"
        + "".join(
            f"p{i}@example.com,P{i},Europe/London,2026-03-02T09:00,form\n" for i in range(1500)
        )
    )
    first = import_csv(pg, clinic, csv_file, now=utc("2026-03-02T12:00"))
    again = import_csv(pg, clinic, csv_file, now=utc("2026-03-02T12:00"))
    assert (first.enrolled, first.rejected) == (1500, [])
    assert (again.enrolled, again.already) == (0, 1500)
    assert status_counts(pg)[clinic.name]["scheduled"] == 1500 * len(clinic.steps)


def test_the_command_line_works_on_postgresql_from_the_environment(
    postgres_url, clinic_folder, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DRIPMAIL_DATABASE_URL", postgres_url)
    runner = CliRunner()

    def dripmail(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})

    enrolled = dripmail(
        "enroll", str(clinic_folder), "--email", "ana@example.com", "--signed-up-at",
        "2026-03-02T10:00", "--timezone", "America/New_York",
    )  # fmt: skip
    assert enrolled.exit_code == 0, enrolled.output
    first = dripmail("run", "--now", "2026-03-02T15:00Z")
    second = dripmail("run", "--now", "2026-03-02T15:00Z")
    assert "sent 1," in first.stdout and "sent 0," in second.stdout
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1
    assert "ketamine-and-sleep" in dripmail("status").stdout


def test_an_unreachable_database_is_one_line_without_the_password():
    result = CliRunner().invoke(
        app, ["status", "--db", "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/nowhere"]
    )
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot open database" in lines[0]
    assert "s3cret" not in result.output


# -- leases -------------------------------------------------------------------------------


def db_now(store: Store) -> datetime:
    with store.connect() as conn:
        return store.clock(conn)


def test_leases_run_on_the_database_clock_not_on_now_or_the_workers_clock(pg, clinic, monkeypatch):
    enroll_many(pg, clinic, 2)
    first = worker(pg, "a", Recording("a"))  # no `clock`: the database's
    before = db_now(pg)
    batch, _ = first.leases.claim(NOW)  # engine time is March; the lease is not
    after = db_now(pg)
    leases = [r.lease_expires_at for r in rows(pg) if r.status == "claimed"]
    assert len(batch) == len(leases) == 2
    assert all(before + timedelta(minutes=5) <= at <= after + timedelta(minutes=5) for at in leases)

    # A worker whose machine clock runs two hours fast must not take those leases back.
    fast = datetime.now(UTC) + timedelta(hours=2)
    monkeypatch.setattr("campaigns.storage.store.utcnow", lambda: fast)
    monkeypatch.setattr("campaigns.delivery.handoff.utcnow", lambda: fast)
    report = worker(pg, "b", Recording("b")).run(now=NOW)
    assert (report.recovered, report.sent) == (0, 0)
    assert [r.lease_owner for r in rows(pg) if r.status == "claimed"] == ["a", "a"]


def test_a_worker_whose_lease_was_taken_over_sends_and_finishes_nothing(pg, clinic):
    enroll_many(pg, clinic, 3)
    start = datetime.now(UTC)
    slow, quick = Recording("slow"), Recording("quick")
    a = worker(pg, "a", slow, clock=lambda: start)
    b = worker(pg, "b", quick, clock=lambda: start + timedelta(minutes=10))
    batch_a, _ = a.leases.claim(NOW)
    assert len(batch_a) == 3
    # A stalls past its lease: B takes the rows back...
    assert b.leases.recover(NOW) == 3
    queued = rows(pg)
    a._process(batch_a, now=NOW, report=RunReport())  # ...and A, waking, touches nothing
    row = batch_a[0].id
    a.recorder.move({row: NOW + timedelta(days=1)}, {row}, now=NOW, report=RunReport())
    assert rows(pg) == queued and slow.ids == []
    batch_b, _ = b.leases.claim(NOW)  # then B claims them itself
    assert {r.id for r in batch_b} == {r.id for r in batch_a}

    a_report = RunReport()
    a._process(batch_a, now=NOW, report=a_report)  # fenced: no longer A's rows
    b._process(batch_b, now=NOW, report=RunReport())

    assert slow.ids == [] and a_report.handed_off == 0
    assert sorted(quick.ids) == sorted(str(r.id) for r in batch_a)
    firsts = [r for r in rows(pg) if r.position == 1]
    assert {(r.status, r.provider_message_id, r.attempts) for r in firsts} == {("sent", "quick", 1)}
    # A finishing late changes nothing either: its skip, move and record updates are fenced.
    before = rows(pg)
    a._process(batch_a, now=NOW, report=RunReport())
    a.recorder.skip([(batch_a[0], "test")], now=NOW, report=RunReport())
    assert rows(pg) == before and slow.ids == []


def test_a_worker_that_died_mid_hand_off_leaves_unknown_not_a_second_send(pg, clinic):
    enroll_many(pg, clinic, 2)
    start = datetime.now(UTC)
    a = worker(pg, "a", Recording("a"), clock=lambda: start)
    batch, _ = a.leases.claim(NOW)
    # A commits `sending` and dies before it can record anything.
    with pg.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id.in_([r.id for r in batch]))
            .values(status="sending", sent_at=NOW)
        )
    later = Recording("b")
    report = worker(pg, "b", later, clock=lambda: start + timedelta(minutes=6)).run(now=NOW)
    assert report.recovered == 2 and later.ids == []
    assert [r.status for r in rows(pg) if r.position == 1] == ["unknown", "unknown"]


# -- claiming -----------------------------------------------------------------------------


def test_claims_walk_forward_from_a_keyset_cursor_and_pass_over_paused_rows(pg, clinic):
    enroll_many(pg, clinic, 5)
    with pg.begin() as conn:  # the third contact's enrollment is paused
        conn.execute(update(enrollments).where(enrollments.c.id == 3).values(status="paused"))
    due = {r.enrollment_id: r.id for r in rows(pg) if r.position == 1}
    claimer = worker(pg, "a", Recording("a"), batch_size=2)
    batches, cursor = [], None
    while True:
        batch, cursor = claimer.leases.claim(NOW, after=cursor)
        if cursor is None:
            break
        batches.append([r.id for r in batch])
    assert batches == [[due[1], due[2]], [due[4]], [due[5]]]
    assert {r.id: r.status for r in rows(pg)}[due[3]] == "scheduled"


def test_a_claim_reads_the_due_rows_not_the_history(pg, clinic):
    """With 30,000 rows already sent, a claim touches a handful of index and heap pages."""
    enroll_many(pg, clinic, 5)
    enrollment_id = rows(pg)[0].enrollment_id
    with pg.begin() as conn:
        conn.execute(
            text(
                "insert into deliveries (enrollment_id, step_key, position, due_at, status, "
                "attempts, sent_at, updated_at) "
                "select :e, 'old-' || i, 100 + i, timestamp '2025-01-01' + i * interval '1m', "
                "'sent', 1, timestamp '2025-01-01', timestamp '2025-01-01' "
                "from generate_series(1, 30000) as i"
            ),
            {"e": enrollment_id},
        )
        conn.execute(text("analyze deliveries"))
    query = worker(pg, "a", Recording("a")).leases.claim_query(NOW)
    with pg.begin() as conn:
        compiled = query.compile(dialect=conn.dialect)
        params = {
            k: v.astimezone(UTC).replace(tzinfo=None) if isinstance(v, datetime) else v
            for k, v in compiled.params.items()
        }
        (plan,) = conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + str(compiled), params
        ).scalar()
        conn.rollback()
    nodes, stack = [], [plan["Plan"]]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack += node.get("Plans", [])
    assert any(n.get("Index Name") == "ix_deliveries_claim" for n in nodes), plan
    assert not any(n["Node Type"] == "Seq Scan" for n in nodes), plan
    root = plan["Plan"]
    assert root["Actual Rows"] == 5  # each contact's first email
    assert root["Shared Hit Blocks"] + root.get("Shared Read Blocks", 0) < 40


# -- one email per opening, across workers ----------------------------------------------


def backdated(store: Store, campaign) -> None:
    """Signed up three weeks ago: every step is overdue at once."""
    enroll(
        store,
        campaign,
        Signup("pat@example.com", "Pat", "America/New_York", "2026-02-09T10:00", CONSENT),
        now=utc("2026-03-02T12:00"),
    )


def assert_one_per_opening_in_order(store: Store, campaign) -> None:
    tz = schedule.zone("America/New_York")
    steps = sorted(rows(store), key=lambda r: r.position)
    times = [r.sent_at or r.due_at for r in steps]
    assert times == sorted(times), "steps out of order"
    openings = [schedule.opening_containing(t, campaign.window, tz) for t in times]
    assert len(set(openings)) == len(openings), "two emails in one opening"


@pytest.mark.parametrize("first_to_hand_off", ["holder of step 1", "holder of step 2"])
def test_two_workers_holding_steps_of_one_contact_send_one_email_now(pg, clinic, first_to_hand_off):
    backdated(pg, clinic)
    one, two = Recording("one"), Recording("two")
    a = worker(pg, "a", one, batch_size=1)
    b = worker(pg, "b", two, batch_size=1)
    batch_a, _ = a.leases.claim(NOW)
    batch_b, _ = b.leases.claim(NOW)
    assert [r.position for r in batch_a + batch_b] == [1, 2]

    order = [(a, batch_a), (b, batch_b)]
    if first_to_hand_off == "holder of step 2":
        order.reverse()
    for dispatcher, batch in order:
        dispatcher._process(batch, now=NOW, report=RunReport())

    assert (one.ids, two.ids) == ([str(batch_a[0].id)], [])
    statuses = [r.status for r in sorted(rows(pg), key=lambda r: r.position)]
    assert statuses == ["sent"] + ["scheduled"] * 5
    assert_one_per_opening_in_order(pg, clinic)

    # Afterwards the sequence goes on one email per opening, in order.
    while pending := [r.due_at for r in rows(pg) if r.status == "scheduled"]:
        worker(pg, "c", Recording("c")).run(now=min(pending))
    assert {r.status for r in rows(pg)} == {"sent"}
    assert_one_per_opening_in_order(pg, clinic)


def test_the_dispatcher_counts_how_many_rows_wait_for_the_next_opening(pg, clinic):
    backdated(pg, clinic)
    report = worker(pg, "a", Recording("a")).run(now=NOW)
    assert (report.sent, report.deferred) == (1, 5)
    with pg.connect() as conn:
        assert conn.scalar(select(func.count()).where(deliveries.c.lease_owner.is_not(None))) == 0
