"""The Mailgun sender: httpx over real HTTP to a stand-in that checks Mailgun's documented API.

Real SQLite store, real dispatcher, real HTTP (tests/mailgun_server.py); the sender's
sleep and clock are injected (waits are recorded and return at once), so nothing
waits on the wall clock but the short read timeout of a slow answer. The 30 % fault
run, the refused key and header injection are in the suite every adapter shares
(tests/test_adapters.py, with Mailgun's own checks in tests/adapters.py).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from campaigns.authoring.sender_settings import MailgunSenderSettings
from campaigns.authoring.spec import Campaign
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.planning.enroll import enroll, import_csv
from campaigns.planning.signups import Signup
from campaigns.settings import Settings
from campaigns.storage.store import Store
from campaigns.storage.tables import deliveries
from senders.base import Message, Outcome, SenderConfigurationError
from senders.mailgun import MailgunSender
from tests.helpers import utc
from tests.mailgun_server import Fault, MailgunServer
from tests.unit.test_cli import assert_one_line_error, dripmail

# The sender does not depend on the database: one backend keeps this file fast.
pytestmark = pytest.mark.sqlite_only

KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
DOMAIN = "mg.balancedketamine.example.com"
NOW = utc("2026-03-02T15:00")  # 10:00 in New York: inside the send window
SIGNED_UP = "2026-03-02T10:00"
PUBLIC_URL = "https://mail.clinic.example"
CONSENT = "clinic sign-up form"


class FakeTime:
    """A frozen real-clock time; sleeps are recorded and return at once."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIPMAIL_PUBLIC_URL", PUBLIC_URL)


@pytest.fixture
def server() -> Iterator[MailgunServer]:
    with MailgunServer(KEY, DOMAIN) as running:
        yield running


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def senders() -> Iterator[Callable[..., MailgunSender]]:
    """Builds senders on the stand-in (campaign settings as keywords); closes them after."""
    made: list[MailgunSender] = []

    def build(
        server: MailgunServer,
        fake: FakeTime,
        *,
        key: str = KEY,
        host: str | None = None,
        **settings,
    ) -> MailgunSender:
        config = MailgunSenderSettings(**{"domain": DOMAIN, **settings})
        environ = {"MAILGUN_API_KEY": key, "MAILGUN_API_HOST": host or server.url}
        sender = MailgunSender.from_settings(
            config, Settings.from_env(environ), sleep=fake.sleep, clock=fake.clock
        )
        made.append(sender)
        return sender

    yield build
    for sender in made:
        sender.close()


def enroll_many(store, campaign: Campaign, folder: Path, count: int) -> None:
    """`count` contacts from a CSV, all signed up at one instant: step 1 is due at NOW."""
    lines = ["email,first_name,timezone,signed_up_at,consent"]
    lines += [
        f"patient{i:03d}@example.com,Pat{i},America/New_York,{SIGNED_UP},{CONSENT}"
        for i in range(count)
    ]
    path = folder / "signups.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = import_csv(store, campaign, path, now=NOW)
    assert report.enrolled == count and not report.rejected


def enroll_one(store, campaign: Campaign, first_name: str = "Pat") -> None:
    signup = Signup("pat@example.com", first_name, "America/New_York", SIGNED_UP, CONSENT)
    enroll(store, campaign, signup, now=NOW)


def first_steps(store) -> list:
    with store.connect() as conn:
        return conn.execute(
            select(deliveries).where(deliveries.c.position == 1).order_by(deliveries.c.id)
        ).all()


def all_rows(store) -> list:
    with store.connect() as conn:
        return conn.execute(select(deliveries).order_by(deliveries.c.id)).all()


def message(delivery_id: str = "1", **changes: Any) -> Message:
    fields = {
        "delivery_id": delivery_id,
        "from_name": "Balanced Ketamine Care Team",
        "from_address": f"care@{DOMAIN}",
        "to_address": f"patient{delivery_id}@example.com",
        "to_name": "Pat",
        "subject": "Welcome",
        "preheader": None,
        "html": "<p>Hello</p>",
        "text": "Hello",
        "date": NOW,
        "headers": {
            "Message-ID": f"<dripmail.{delivery_id}@balancedketamine.example.com>",
            "List-Unsubscribe": f"<{PUBLIC_URL}/u/t>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    }
    return Message(**{**fields, **changes})


# -- the acceptance runs --------------------------------------------------------------


def test_the_clinic_campaign_reaches_200_contacts(
    store, clinic, tmp_path, server, fake, senders, caplog
):
    caplog.set_level(logging.DEBUG)  # the HTTP client's own logging too
    enroll_many(store, clinic, tmp_path, 200)
    sender = senders(server, fake)

    report = Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    assert report.sent == 200
    assert server.problems == [] and server.requests == 200
    rows = first_steps(store)
    assert {r.status for r in rows} == {"sent"}
    accepted = {a.delivery_id: a for a in server.accepted}
    for row in rows:
        assert accepted[str(row.id)].message_id == row.provider_message_id
    assert sorted(a.recipient for a in server.accepted) == [
        f"patient{i:03d}@example.com" for i in range(200)
    ]
    assert len({r.provider_message_id for r in rows}) == 200
    assert {r.status for r in all_rows(store) if r.position > 1} == {"scheduled"}
    for one in server.accepted:
        mime = one.parsed
        # dripmail's own MIME: its unsubscribe headers, its Message-ID, text part first.
        assert mime["List-Unsubscribe"].startswith(f"<{PUBLIC_URL}/u/")
        assert mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert mime["Message-ID"].startswith("<")
        assert [p.get_content_type() for p in mime.iter_parts()] == ["text/plain", "text/html"]
        # Only the opaque delivery id rides with it; tracking is off unless asked for.
        assert one.form == {
            "to": one.recipient,
            "o:tracking-opens": "no",
            "o:tracking-clicks": "no",
            "v:delivery_id": one.delivery_id,
        }
    # Logged at DEBUG: neither an address nor the key.
    logged = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    assert any(r.name.startswith("httpx") for r in caplog.records)
    assert "patient" not in logged and "Pat1" not in logged and KEY not in logged


def test_a_key_revoked_mid_run_keeps_what_went_out_and_stops_the_next_run(
    store, clinic, tmp_path, server, fake, senders
):
    enroll_many(store, clinic, tmp_path, 4)
    server.script(None, None, Fault.error(401, "Forbidden"))
    sender = senders(server, fake, concurrency=1)
    dispatcher = Dispatcher(store, lambda _campaign: sender)

    report = dispatcher.run(now=NOW)

    # Raising would have put the two sent rows back in the queue: a second email each.
    assert (report.sent, report.retrying) == (2, 2)
    rows = first_steps(store)
    assert [r.status for r in rows] == ["sent", "sent", "scheduled", "scheduled"]
    assert all("refused the API key" in r.error for r in rows[2:])
    with pytest.raises(SenderConfigurationError, match="refused the API key"):
        dispatcher.run(now=max(r.due_at for r in rows))
    assert len(server.accepted) == 2


def test_a_domain_mailgun_does_not_know_stops_the_run(store, clinic, server, fake, senders):
    enroll_one(store, clinic)
    sender = senders(server, fake, domain="mg.other-clinic.example")

    with pytest.raises(SenderConfigurationError, match=r"Domain not found: mg\.other-clinic"):
        Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    assert first_steps(store)[0].status == "scheduled" and server.accepted == []


# -- one answer at a time -----------------------------------------------------------


def test_a_rejected_email_fails_alone_with_mailguns_message(store, clinic, server, fake, senders):
    enroll_one(store, clinic)
    server.script(
        Fault.error(400, "to parameter is not a valid address. please check documentation")
    )
    sender = senders(server, fake)

    report = Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    row = first_steps(store)[0]
    assert report.failed == 1 and row.status == "failed"
    assert "to parameter is not a valid address" in row.error
    assert server.requests_per_delivery[str(row.id)] == 1 and fake.waits == []


def test_a_429_waits_for_retry_after_then_sends(store, clinic, server, fake, senders):
    enroll_one(store, clinic)
    server.script(Fault.error(429, Retry_After="7"))
    sender = senders(server, fake)

    Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    row = first_steps(store)[0]
    assert row.status == "sent" and row.attempts == 2
    [wait] = fake.waits
    assert 7 <= wait <= 7 + sender.backoff
    assert server.answers() == {"429": 1, "200": 1}


def test_a_rate_limit_beyond_max_wait_reschedules_when_mailgun_said(
    store, clinic, server, fake, senders
):
    enroll_one(store, clinic)
    server.script(Fault.error(429, Retry_After="3600"))
    sender = senders(server, fake, max_wait=60)

    report = Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    row = first_steps(store)[0]
    assert report.retrying == 1 and row.status == "scheduled" and "429" in row.error
    assert row.due_at >= NOW + timedelta(minutes=59)  # not before Mailgun's Retry-After
    assert fake.waits == [] and server.answers() == {"429": 1}


def test_server_errors_back_off_then_go_to_a_later_run(store, clinic, server, fake, senders):
    enroll_one(store, clinic)
    server.script(Fault.error(503), Fault.error(500), Fault.error(502))
    sender = senders(server, fake, max_attempts=3)
    dispatcher = Dispatcher(store, lambda _campaign: sender)

    dispatcher.run(now=NOW)

    row = first_steps(store)[0]
    assert row.status == "scheduled" and row.attempts == 3 and "502" in row.error
    first, second = fake.waits  # exponential, with jitter
    assert 0.25 <= first <= 0.5 and 0.5 <= second <= 1.0
    dispatcher.run(now=row.due_at)
    row = first_steps(store)[0]
    assert row.status == "sent" and server.accepted[0].message_id == row.provider_message_id
    assert server.requests_per_delivery[str(row.id)] == 4


def test_a_refused_connection_is_retried_then_goes_to_a_later_run(
    store, clinic, server, fake, senders
):
    enroll_one(store, clinic)
    down = senders(server, fake, host=server.closed_url)

    Dispatcher(store, lambda _campaign: down).run(now=NOW)

    row = first_steps(store)[0]
    assert row.status == "scheduled" and row.attempts == 3
    assert "could not reach Mailgun" in row.error
    assert len(fake.waits) == 2 and server.requests == 0
    up = senders(server, fake)
    Dispatcher(store, lambda _campaign: up).run(now=row.due_at)
    assert first_steps(store)[0].status == "sent"


def test_an_answer_slower_than_the_timeout_is_unknown_and_never_re_sent(
    store, clinic, server, fake, senders
):
    enroll_one(store, clinic)
    server.script(Fault.slow(5.0))
    sender = senders(server, fake, timeout=0.3)
    dispatcher = Dispatcher(store, lambda _campaign: sender)

    report = dispatcher.run(now=NOW)
    dispatcher.run(now=NOW + timedelta(days=1))

    row = first_steps(store)[0]
    assert report.unknown == 1 and row.status == "unknown"
    assert "answer was lost" in row.error
    assert server.requests_per_delivery[str(row.id)] == 1 and fake.waits == []


def test_a_connection_dropped_after_sending_is_unknown(store, clinic, server, fake, senders):
    enroll_one(store, clinic)
    server.script(Fault.drop())
    sender = senders(server, fake)

    Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    row = first_steps(store)[0]
    assert row.status == "unknown" and row.provider_message_id is None
    assert server.accepted_ids == [str(row.id)]


# -- what goes in the request ---------------------------------------------------------


def test_results_come_back_in_the_order_of_the_messages(server, fake, senders):
    server.script(Fault.error(400, "bad"), None, Fault.drop())  # arrival order, one thread
    sender = senders(server, fake, concurrency=1)

    results = sender.send([message(str(i)) for i in range(5)])

    assert [r.delivery_id for r in results] == ["0", "1", "2", "3", "4"]
    assert [r.outcome for r in results] == [
        Outcome.PERMANENT,
        Outcome.SENT,
        Outcome.AMBIGUOUS,
        Outcome.SENT,
        Outcome.SENT,
    ]


def test_concurrency_bounds_the_requests_in_flight(server, fake, senders):
    in_flight, peak, lock = 0, 0, threading.Lock()

    def count(_delivery_id, _nth):
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        server._stopping.wait(0.02)  # hold the request a moment so others can overlap
        with lock:
            in_flight -= 1
        return None

    server.fault_for = count
    sender = senders(server, fake, concurrency=3)

    results = sender.send([message(str(i)) for i in range(12)])

    assert {r.outcome for r in results} == {Outcome.SENT}
    assert 1 <= peak <= 3


# -- the command line -------------------------------------------------------------------


def use_mailgun(folder: Path, **keys: str) -> None:
    spec = folder / "campaign.yaml"
    block = "".join(f"  {k}: {v}\n" for k, v in {"type": "mailgun", **keys}.items())
    text = re.sub(
        r"sender:\n  type: file\n  outbox: outbox\n", "sender:\n" + block, spec.read_text()
    )
    spec.write_text(text)


def test_run_without_a_key_stops_before_anything_is_claimed(tmp_path, clinic_folder, monkeypatch):
    use_mailgun(clinic_folder, domain=DOMAIN, region="eu")
    db = str(tmp_path / "clinic.db")
    enrolled = dripmail(
        "enroll", str(clinic_folder), "--email", "ana@example.com", "--timezone",
        "America/New_York", "--signed-up-at", SIGNED_UP, "--db", db,
    )  # fmt: skip
    assert enrolled.exit_code == 0, enrolled.output

    result = dripmail("run", "--once", "--now", "2026-03-02T15:00Z", "--db", db)

    assert_one_line_error(result, "the mailgun sender needs an API key", "MAILGUN_API_KEY")
    store = Store(db)
    with store.connect() as conn:
        statuses = set(conn.scalars(select(deliveries.c.status)))
    store.close()
    assert statuses == {"scheduled"}


def test_send_test_goes_through_mailgun_and_records_nothing(
    tmp_path, clinic_folder, server, monkeypatch
):
    use_mailgun(clinic_folder, domain=DOMAIN)
    monkeypatch.setenv("MAILGUN_API_KEY", KEY)
    monkeypatch.setenv("MAILGUN_API_HOST", server.url)
    db = str(tmp_path / "clinic.db")

    result = dripmail(
        "send-test", str(clinic_folder), "--step", "welcome", "--to", "staff@clinic.example",
        "--db", db,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    [sent] = server.accepted
    assert f"sent a test of welcome ({sent.message_id})" in result.stdout
    assert sent.recipient == "staff@clinic.example" and sent.delivery_id.startswith("test-")
    assert sent.parsed["Subject"] == "[TEST] Ketamine and Sleep"
    assert server.problems == [] and KEY not in result.output
