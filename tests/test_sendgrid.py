"""The SendGrid sender: the real `sendgrid` client over HTTP to a local fake endpoint.

Real SQLite store, real dispatcher, real HTTP; the sender's sleep and clock are
injected (waits are recorded and return at once), so nothing waits on the wall clock.
These tests cover one request per message (`batch: false`); test_sendgrid_batch.py
covers many messages of one step per request. The 30 % fault run, the refused key and
header injection are in the suite every adapter shares (tests/test_adapters.py).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import python_http_client.exceptions as http_errors
import sendgrid
from sqlalchemy import select

from campaigns.authoring.sender_settings import FileSenderSettings, SendGridSenderSettings
from campaigns.authoring.spec import Campaign
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.planning.enroll import enroll, import_csv
from campaigns.planning.signups import Signup
from campaigns.settings import Settings
from campaigns.storage.tables import deliveries
from senders.base import Message, Outcome, SenderConfigurationError
from senders.registry import make_sender
from senders.sendgrid import SendGridSender
from tests.helpers import utc
from tests.sendgrid_server import Fault, SendGridServer
from tests.unit.test_sendgrid import KEY

# The sender does not depend on the database: one backend keeps this file fast (the
# engine's PostgreSQL path is covered where the engine is tested).
pytestmark = pytest.mark.sqlite_only

NOW = utc("2026-03-02T15:00")  # 10:00 in New York: inside the send window
SIGNED_UP = "2026-03-02T10:00"
PUBLIC_URL = "https://mail.clinic.example"
CONSENT = "clinic sign-up form"


class FakeTime:
    """A frozen real-clock time; sleeps are recorded and return at once."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))  # near the real clock: the dispatcher compares
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
    # urllib would send 127.0.0.1 through a configured proxy.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server():
    with SendGridServer(KEY) as running:
        yield running


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@contextmanager
def sender_factory(**defaults: Any) -> Iterator[Callable[..., SendGridSender]]:
    """Builds senders on the fake endpoint (settings over `defaults`); closes them after."""
    made: list[SendGridSender] = []

    def build(
        server: SendGridServer,
        fake: FakeTime,
        *,
        key: str = KEY,
        host: str | None = None,
        **settings: Any,
    ) -> SendGridSender:
        config = SendGridSenderSettings(**{**defaults, **settings})
        environ = {"SENDGRID_API_KEY": key, "SENDGRID_API_HOST": host or server.url}
        sender = SendGridSender.from_settings(
            config, Settings.from_env(environ), sleep=fake.sleep, clock=fake.clock
        )
        made.append(sender)
        return sender

    try:
        yield build
    finally:
        for sender in made:
            sender.close()


@pytest.fixture
def senders() -> Iterator[Callable[..., SendGridSender]]:
    """One request per message unless told (test_sendgrid_batch.py covers batching)."""
    with sender_factory(batch=False) as build:
        yield build


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
    enroll(
        store,
        campaign,
        Signup("pat@example.com", first_name, "America/New_York", SIGNED_UP, CONSENT),
        now=NOW,
    )


def first_steps(store) -> list:
    with store.connect() as conn:
        return conn.execute(
            select(deliveries).where(deliveries.c.position == 1).order_by(deliveries.c.id)
        ).all()


def all_rows(store) -> list:
    with store.connect() as conn:
        return conn.execute(select(deliveries).order_by(deliveries.c.id)).all()


def message(delivery_id: str = "1", **changes) -> Message:
    fields = {
        "delivery_id": delivery_id,
        "from_name": "Balanced Ketamine Care Team",
        "from_address": "care@balancedketamine.example.com",
        "to_address": f"patient{delivery_id}@example.com",
        "to_name": "Pat",
        "subject": "Welcome",
        "preheader": None,
        "html": "<p>Hello</p>",
        "text": "Hello",
        "reply_to": "care@balancedketamine.example.com",
        "headers": {
            "List-Unsubscribe": f"<{PUBLIC_URL}/u/t>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    }
    fields.update(changes)
    return Message(**fields)


# -- the acceptance runs --------------------------------------------------------------


def test_the_clinic_campaign_reaches_200_contacts(store, clinic, tmp_path, server, fake, senders):
    enroll_many(store, clinic, tmp_path, 200)
    sender = senders(server, fake)

    report = Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    assert report.sent == 200
    assert server.validated == 200 and server.schema_failures == [] and server.problems == []
    rows = first_steps(store)
    assert {r.status for r in rows} == {"sent"}
    for row in rows:
        assert server.accepted[str(row.id)] == [row.provider_message_id]
    assert len({r.provider_message_id for r in rows}) == 200
    assert {r.status for r in all_rows(store) if r.position > 1} == {"scheduled"}
    for body in server.bodies():
        assert body["headers"]["List-Unsubscribe"].startswith(f"<{PUBLIC_URL}/u/")


def test_a_key_revoked_mid_run_keeps_what_went_out_and_stops_the_next_run(
    store, clinic, tmp_path, server, fake, senders
):
    enroll_many(store, clinic, tmp_path, 4)
    server.script(None, None, Fault.error(401, "authorization required"))
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
    assert len(server.accepted_ids) == 2


# -- one answer at a time -----------------------------------------------------------


@pytest.mark.parametrize("status", [400, 413])
def test_a_rejected_email_fails_with_sendgrids_message(
    store, clinic, server, fake, senders, status
):
    enroll_one(store, clinic)
    server.script(
        Fault.error(status, "The from email does not contain a valid address.", "from.email")
    )
    sender = senders(server, fake)

    report = Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    row = first_steps(store)[0]
    assert report.failed == 1 and row.status == "failed"
    assert "The from email does not contain a valid address." in row.error
    assert server.requests_per_delivery[str(row.id)] == 1 and fake.waits == []


def test_sandbox_mode_answers_200_and_counts_as_sent(store, clinic, server, fake, senders):
    enroll_one(store, clinic)
    sender = senders(server, fake, sandbox_mode=True)

    Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    [body] = server.bodies()
    assert body["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert server.answers() == {"200": 1}
    assert first_steps(store)[0].status == "sent"


def test_a_429_waits_until_the_reset_then_sends(store, clinic, server, fake, senders):
    enroll_one(store, clinic)
    server.script(Fault.rate_limited(int(fake.now) + 7))
    sender = senders(server, fake)

    Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    row = first_steps(store)[0]
    assert row.status == "sent" and row.attempts == 2
    [wait] = fake.waits
    assert 7 <= wait <= 7 + sender.backoff
    assert server.answers() == {"429": 1, "202": 1}


def test_a_rate_limit_beyond_max_wait_reschedules_at_the_reset(
    store, clinic, server, fake, senders
):
    enroll_one(store, clinic)
    server.script(Fault.rate_limited(int(fake.now) + 3600))
    sender = senders(server, fake, max_wait=60)

    report = Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    row = first_steps(store)[0]
    assert report.retrying == 1 and row.status == "scheduled"
    assert "429" in row.error
    assert row.due_at >= NOW + timedelta(minutes=59)  # not before SendGrid's reset
    assert fake.waits == [] and server.answers() == {"429": 1}


def test_server_errors_back_off_then_go_to_a_later_run(store, clinic, server, fake, senders):
    enroll_one(store, clinic)
    server.script(Fault.error(503), Fault.error(500), Fault.error(503))
    sender = senders(server, fake, max_attempts=3)
    dispatcher = Dispatcher(store, lambda _campaign: sender)

    dispatcher.run(now=NOW)

    row = first_steps(store)[0]
    assert row.status == "scheduled" and row.attempts == 3 and "503" in row.error
    assert row.due_at > NOW
    first, second = fake.waits  # exponential, with jitter
    assert 0.25 <= first <= 0.5 and 0.5 <= second <= 1.0
    dispatcher.run(now=row.due_at)
    row = first_steps(store)[0]
    assert row.status == "sent" and server.accepted[str(row.id)] == [row.provider_message_id]
    assert server.requests_per_delivery[str(row.id)] == 4


def test_a_refused_connection_is_retried_then_goes_to_a_later_run(
    store, clinic, server, fake, senders
):
    enroll_one(store, clinic)
    down = senders(server, fake, host=server.closed_url)

    Dispatcher(store, lambda _campaign: down).run(now=NOW)

    row = first_steps(store)[0]
    assert row.status == "scheduled" and row.attempts == 3
    assert "refused" in row.error.lower()
    assert len(fake.waits) == 2 and server.requests == []
    up = senders(server, fake)
    Dispatcher(store, lambda _campaign: up).run(now=row.due_at)
    assert first_steps(store)[0].status == "sent"


def test_an_answer_slower_than_the_timeout_is_unknown_and_never_re_sent(
    store, clinic, server, fake, senders
):
    enroll_one(store, clinic)
    server.script(Fault.slow(5.0))
    sender = senders(server, fake, timeout=0.5)
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
    assert server.accepted_ids == [str(row.id)] and server.requests_per_delivery[str(row.id)] == 1


# -- what goes in the request ---------------------------------------------------------


def test_the_request_carries_opaque_ids_only_and_tracking_off(store, clinic, server, fake, senders):
    enroll_one(store, clinic)
    sender = senders(server, fake)

    Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    row = first_steps(store)[0]
    [body] = server.bodies()
    [personalization] = body["personalizations"]
    assert personalization["to"] == [{"email": "pat@example.com", "name": "Pat"}]
    assert personalization["custom_args"] == {"delivery_id": str(row.id)}
    assert body["from"] == {
        "email": "care@balancedketamine.example.com",
        "name": "Balanced Ketamine Care Team",
    }
    assert body["reply_to"] == {"email": "care@balancedketamine.example.com"}
    assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]
    assert body["headers"]["List-Unsubscribe"].startswith(f"<{PUBLIC_URL}/u/")
    assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "message-id" not in {name.lower() for name in body["headers"]}
    assert body["tracking_settings"]["open_tracking"] == {"enable": False}
    assert body["tracking_settings"]["click_tracking"]["enable"] is False
    for absent in ("categories", "asm", "mail_settings", "custom_args"):
        assert absent not in body
    assert server.schema_failures == [] and server.problems == []


def test_settings_turn_on_categories_tracking_and_the_asm_group(
    store, clinic, server, fake, senders
):
    enroll_one(store, clinic)
    sender = senders(
        server, fake, categories=True, track_opens=True, track_clicks=True, asm_group_id=42
    )

    Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    [body] = server.bodies()
    assert len(body["categories"]) == 2
    assert all(re.fullmatch(r"[cs]-[0-9a-f]{10}", c) for c in body["categories"])
    metadata = json.dumps([body["categories"], body["personalizations"][0]["custom_args"]])
    for telling in [clinic.name, "ketamine", "sleep", *(step.key for step in clinic.steps)]:
        assert telling not in metadata
    assert body["asm"] == {"group_id": 42}
    assert body["tracking_settings"]["open_tracking"] == {"enable": True}
    assert body["tracking_settings"]["click_tracking"]["enable"] is True
    assert server.schema_failures == [] and server.problems == []


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


# -- configuration ---------------------------------------------------------------------


def test_a_host_that_is_not_sendgrids_api_stops_the_run(store, clinic, server, fake, senders):
    enroll_one(store, clinic)
    sender = senders(server, fake, host=f"{server.url}/not-sendgrid")

    with pytest.raises(SenderConfigurationError, match="SendGrid's API address"):
        Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    assert first_steps(store)[0].status == "scheduled" and server.accepted_ids == []


def test_the_host_comes_from_the_environment_then_the_campaign_file(server):
    settings = SendGridSenderSettings(api_host="https://api.eu.sendgrid.com")
    key_only = Settings.from_env({"SENDGRID_API_KEY": KEY})
    eu = make_sender("sendgrid", settings, key_only)
    local = make_sender(
        "sendgrid",
        settings,
        Settings.from_env({"SENDGRID_API_KEY": KEY, "SENDGRID_API_HOST": server.url}),
    )
    default = make_sender("sendgrid", FileSenderSettings(), key_only)
    assert (eu.host, local.host, default.host) == (
        "https://api.eu.sendgrid.com",
        server.url,
        "https://api.sendgrid.com",
    )
    assert KEY not in repr(local)


# -- the harness itself ----------------------------------------------------------------


def test_the_fake_endpoint_rejects_what_sendgrid_would(server, fake, senders):
    client = sendgrid.SendGridAPIClient(api_key=KEY, host=server.url)
    body = senders(server, fake).payload(message("9"))
    broken = {key: value for key, value in body.items() if key != "from"}
    misquoted = json.loads(json.dumps(body))
    misquoted["personalizations"][0]["to"][0]["name"] = "Smith, Pat"  # as SendGrid mis-reads it

    for bad in (broken, misquoted):
        with pytest.raises(http_errors.BadRequestsError):
            client.client.mail.send.post(request_body=bad)

    assert (
        len(server.schema_failures) == 1
        and "'from' is a required property" in (server.schema_failures[0])
    )
    assert len(server.problems) == 1 and "exactly one mailbox" in server.problems[0]
    assert server.accepted_ids == []
