"""Outbound webhooks: every event arrives, signed, in order per contact, at least once.

A real receiver (tests/webhook_receiver.py) on a free port answers half the requests 500
and drops some connections; messages are delivered by the library, by `dripmail
webhooks deliver` in a subprocess killed with SIGKILL mid-request, and by `dripmail run`.
Time is injected (`now=`); the signature is checked with the Standard Webhooks
algorithm written here independently of the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import logging
import os
import random
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

import cli
from campaigns.authoring.spec import Campaign, load_folder
from campaigns.compliance.event_model import EventKind, ProviderEvent
from campaigns.compliance.events import apply_provider_events
from campaigns.compliance.suppressions import Scope, unsubscribe
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.delivery.webhook_endpoints import EVENT_NAMES, add_endpoint
from campaigns.delivery.webhooks import WebhookDeliverer
from campaigns.planning.conversions import ContactEvent, record_event
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.rendering.tokens import UnsubscribeClaim
from campaigns.storage.statuses import WebhookStatus
from campaigns.storage.tables import contacts, deliveries, enrollments, webhook_messages
from senders.file import FileSender
from tests.helpers import utc
from tests.webhook_receiver import Receiver, start_receiver, stop_receiver

ROOT = Path(__file__).resolve().parents[1]
START = utc("2026-03-02T12:00")
SIGNUP = "2026-03-02T06:00"
runner = CliRunner()


@pytest.fixture
def receivers():
    started: list[Receiver] = []

    def start(**options) -> Receiver:
        receiver = start_receiver(**options)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        stop_receiver(receiver)


def verifies(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The Standard Webhooks check, written from the specification: HMAC-SHA256 over
    `{id}.{timestamp}.{body}` keyed with the base64 after `whsec_`, base64, `v1,` each."""
    key = base64.b64decode(secret.split("_", 1)[1])
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return any(
        version == "v1" and hmac.compare_digest(value, expected)
        for version, _, value in (
            part.partition(",") for part in headers["webhook-signature"].split()
        )
    )


def messages(store) -> list:
    with store.connect() as conn:
        return conn.execute(select(webhook_messages).order_by(webhook_messages.c.id)).all()


def deliver_all(store, deliverer: WebhookDeliverer, now: datetime, until: datetime | None = None):
    """Deliver, moving engine time to each next attempt, until nothing is pending (or `until`)."""
    pending = webhook_messages.c.status == WebhookStatus.PENDING
    while True:
        deliverer.drain(now=now)
        with store.connect() as conn:
            if not conn.scalar(select(func.count()).where(pending)):
                return now
            # A message waiting behind an earlier one of its contact is due already.
            upcoming = conn.scalar(
                select(func.min(webhook_messages.c.next_attempt_at)).where(
                    pending, webhook_messages.c.next_attempt_at > now
                )
            )
        assert upcoming is not None, "pending messages that nothing will ever deliver"
        if until is not None and upcoming > until:
            return now
        now = upcoming


def with_goal(folder: Path) -> Campaign:
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text() + "goal: {event: booked, within: 30d}\n")
    return load_folder(folder)


def contact_id(store, email: str) -> int:
    with store.connect() as conn:
        return conn.scalar(select(contacts.c.id).where(contacts.c.email == email))


def first_delivery(store, email: str) -> int:
    with store.connect() as conn:
        return conn.scalar(
            select(func.min(deliveries.c.id))
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .join(contacts, contacts.c.id == enrollments.c.contact_id)
            .where(contacts.c.email == email, deliveries.c.sent_at.is_not(None))
        )


def test_a_flaky_receiver_gets_every_event_signed_and_in_order_per_contact(
    store, clinic_folder, tmp_path, receivers
):
    campaign = with_goal(clinic_folder)
    receiver = receivers(flaky=True)
    _, secret = add_endpoint(store, receiver.url, EVENT_NAMES, include_email=False, now=START)
    people = [f"patient{i}@example.com" for i in range(6)]
    for email in people:
        enroll(store, campaign, Signup(email, "Pat", None, SIGNUP, "form"), now=START)
    dispatcher = Dispatcher(store, lambda _c: FileSender(tmp_path / "outbox"))
    deliverer = WebhookDeliverer(store, rng=random.Random(3))
    ids = {email: contact_id(store, email) for email in people}
    t = START
    while t < START + timedelta(days=7):  # the worker's ticks, an hour apart
        t += timedelta(hours=1)
        dispatcher.run(now=t)
        deliverer.drain(now=t)
        if t == START + timedelta(days=3):
            unsubscribe(
                store,
                UnsubscribeClaim(ids[people[0]], campaign.name, first_delivery(store, people[0])),
                Scope.ALL,
                now=t,
            )
            apply_provider_events(
                store,
                [
                    ProviderEvent(
                        "sendgrid",
                        "ev-bounce",
                        EventKind.BOUNCED_HARD,
                        delivery_id=first_delivery(store, people[1]),
                        address=people[1],
                    ),
                    ProviderEvent("sendgrid", "ev-spam", EventKind.COMPLAINED, address=people[2]),
                ],
                now=t,
            )
            record_event(store, ContactEvent("booked", t), email=people[3], source="api", now=t)
    deliver_all(store, deliverer, t)
    stored = messages(store)
    kinds = {m.event for m in stored}
    assert kinds == {"enrolled", "sent", "unsubscribed", "bounced", "complained", "converted"}

    # Every message arrived (at least once), each request signed as the spec says.
    assert {m.status for m in messages(store)} == {WebhookStatus.DELIVERED}
    accepted = {r.headers["webhook-id"]: r for r in receiver.accepted()}
    assert set(accepted) == {m.message_id for m in stored}
    assert sum(not r.accepted for r in receiver.requests) >= len(stored) // 2
    for request in receiver.requests:
        assert verifies(secret, request.headers, request.body)
        assert not verifies(secret, request.headers, request.body + b" ")
    # Ids only: no address, no name; the shape the README shows.
    for m in stored:
        body = json.loads(accepted[m.message_id].body)
        assert body["type"] == m.event and body["data"]["contact_id"] == m.contact_id
        assert "@" not in accepted[m.message_id].body.decode()
        assert "Pat" not in accepted[m.message_id].body.decode()
    sent = next(json.loads(accepted[m.message_id].body) for m in stored if m.event == "sent")
    assert set(sent["data"]) == {"contact_id", "enrollment_id", "campaign", "step", "delivery_id"}
    # In order per contact: no request for a contact's message before the one before it
    # was accepted.
    first_request = {}
    for r in receiver.requests:
        first_request.setdefault(r.headers["webhook-id"], r.number)
    for cid in ids.values():
        own = [m.message_id for m in stored if m.contact_id == cid]
        for earlier, later in itertools.pairwise(own):
            assert accepted[earlier].number < first_request[later]


def test_an_endpoint_failing_for_72_hours_is_given_up_and_status_shows_it(store, clinic, receivers):
    receiver = receivers(always_fail=True)
    add_endpoint(store, receiver.url, ["enrolled", "unsubscribed"], include_email=False, now=START)
    for email in ("a@example.com", "b@example.com"):
        enroll(store, clinic, Signup(email, None, None, SIGNUP, "form"), now=START)
    a = contact_id(store, "a@example.com")
    unsubscribe(store, UnsubscribeClaim(a, clinic.name, None), Scope.ALL, now=START)
    deliverer = WebhookDeliverer(store, rng=random.Random(5))
    deliver_all(store, deliverer, START, until=START + timedelta(hours=71))
    assert {m.status for m in messages(store)} == {WebhookStatus.PENDING}
    # a's second event waits for its first: never tried while the first is pending.
    unsubscribed = next(m for m in messages(store) if m.event == "unsubscribed")
    assert unsubscribed.attempts == 0
    shown = runner.invoke(cli.app, ["webhooks", "status", "--db", store.url])
    assert "pending 3, delivered 0, failed 0 (given up)" in shown.output
    assert "last error: HTTP 500: receiver is down" in shown.output

    deliver_all(store, deliverer, START + timedelta(hours=71))
    rows = messages(store)
    assert [m.status for m in rows] == [WebhookStatus.FAILED] * 3
    assert all(m.attempts >= 10 for m in rows if m.event == "enrolled")
    shown = runner.invoke(cli.app, ["webhooks", "status", "--db", store.url])
    assert shown.exit_code == 0, shown.output
    assert "pending 0, delivered 0, failed 3 (given up)" in shown.output
    assert "next attempt: -" in shown.output
    # Each try got a 500 whose body is kept only as a short error.
    assert all(len(m.last_error) <= 220 for m in rows)


def test_a_delivering_process_killed_mid_request_loses_nothing(store, clinic, receivers):
    receiver = receivers(holding=True)
    _, secret = add_endpoint(
        store, receiver.url, ["enrolled", "unsubscribed"], include_email=False, now=START
    )
    for i in range(3):
        enroll(store, clinic, Signup(f"p{i}@example.com", None, None, SIGNUP, "f"), now=START)
    p0 = contact_id(store, "p0@example.com")
    unsubscribe(store, UnsubscribeClaim(p0, clinic.name, None), Scope.ALL, now=START)
    command = [sys.executable, "-m", "cli", "webhooks", "deliver", "--once"]
    command += ["--now", "2026-03-02T12:01", "--db", store.url]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE)
    try:
        assert receiver.arrived_held.wait(60), "the deliverer never called"
    finally:
        process.kill()  # SIGKILL, mid-request
        process.wait()
    receiver.release()
    held = receiver.requests[0].headers["webhook-id"]
    leased = [m for m in messages(store) if m.lease_owner is not None]
    # The claimed batch is leased: the message mid-request and those after it.
    assert held in {m.message_id for m in leased} and len(leased) == 3
    assert all(m.status == WebhookStatus.PENDING for m in messages(store))
    # The lease runs out (its expiry moved back here, rather than waiting two minutes).
    with store.begin() as conn:
        conn.execute(update(webhook_messages).values(lease_expires_at=START - timedelta(minutes=1)))
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "delivered 4, retrying 0, given up 0" in again.stdout
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert set(ids) == {m.message_id for m in messages(store)}
    assert ids.count(held) == 2  # the duplicate carries the same webhook-id
    twice = [r for r in receiver.requests if r.headers["webhook-id"] == held]
    assert twice[0].body == twice[1].body
    assert all(verifies(secret, r.headers, r.body) for r in receiver.requests)


def test_no_endpoint_no_outbox_rows_and_include_email_adds_the_address(store, clinic, receivers):
    enroll(store, clinic, Signup("pat@example.com", "Pat", None, SIGNUP, "f"), now=START)
    assert messages(store) == []
    receiver = receivers()
    add_endpoint(store, receiver.url, ["enrolled"], include_email=True, now=START)
    enroll(store, clinic, Signup("sam@example.com", "Sam", None, SIGNUP, "f"), now=START)
    deliver_all(store, WebhookDeliverer(store), START)
    (request,) = receiver.requests
    body = json.loads(request.body)
    assert body["data"]["email"] == "sam@example.com"
    assert "Sam" not in request.body.decode()
    assert body["timestamp"] == "2026-03-02T12:00:00Z"


def test_cli_add_list_remove(tmp_path):
    db = str(tmp_path / "d.db")
    refused = runner.invoke(
        cli.app, ["webhooks", "add", "http://crm.example.org/h", "--events", "sent", "--db", db]
    )
    assert refused.exit_code == 2
    assert "must be https" in refused.output
    unknown = runner.invoke(
        cli.app, ["webhooks", "add", "https://crm.example.org/h", "--events", "opened", "--db", db]
    )
    assert unknown.exit_code == 2 and "unknown event 'opened'" in unknown.output
    for url in ("https://crm.example.org/h", "http://[::1]:8080/h", "http://localhost/h"):
        added = runner.invoke(
            cli.app, ["webhooks", "add", url, "--events", "sent,bounced", "--db", db]
        )
        assert added.exit_code == 0, added.output
    secret = added.output.strip().splitlines()[-1]
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 64
    listed = runner.invoke(cli.app, ["webhooks", "list", "--db", db])
    assert "1  https://crm.example.org/h  events: sent,bounced  address: no" in listed.output
    assert "whsec_" not in listed.output
    removed = runner.invoke(
        cli.app, ["webhooks", "remove", "https://crm.example.org/h", "--db", db]
    )
    assert removed.output.startswith("removed webhook endpoint 1 (https://crm.example.org/h)")
    missing = runner.invoke(cli.app, ["webhooks", "remove", "9", "--db", db])
    assert missing.exit_code != 0 and "no webhook endpoint '9'" in missing.output


def test_dripmail_run_delivers_webhooks_beside_email(store, clinic, receivers, tmp_path):
    receiver = receivers()
    _, secret = add_endpoint(store, receiver.url, ["sent"], include_email=False, now=START)
    enroll(store, clinic, Signup("pat@example.com", None, None, SIGNUP, "f"), now=START)
    outbox = str(tmp_path / "outbox")
    command = ["run", "--once", "--now", "2026-03-02T15:00", "--sender", "file"]
    result = runner.invoke(cli.app, [*command, "--outbox", outbox, "--db", store.url])
    assert result.exit_code == 0, result.output
    assert "sent 1" in result.output
    (request,) = receiver.requests
    body = json.loads(request.body)
    assert body["type"] == "sent" and body["data"]["step"] == clinic.steps[0].key
    assert verifies(secret, request.headers, request.body)
    assert [m.status for m in messages(store)] == [WebhookStatus.DELIVERED]


def test_two_workers_never_hold_one_message_or_a_contact_out_of_order(store, clinic, receivers):
    receiver = receivers()
    add_endpoint(store, receiver.url, ["enrolled", "unsubscribed"], include_email=False, now=START)
    for i in range(4):
        enroll(store, clinic, Signup(f"p{i}@example.com", None, None, SIGNUP, "f"), now=START)
    for i in range(4):
        claim = UnsubscribeClaim(contact_id(store, f"p{i}@example.com"), clinic.name, None)
        unsubscribe(store, claim, Scope.ALL, now=START)
    first, second = WebhookDeliverer(store), WebhookDeliverer(store)
    mine = first.claim(START, 2)
    theirs = second.claim(START, 100)
    by_id = {m.id: m for m in messages(store)}
    assert len(mine) == 2 and len(theirs) == 2  # only each contact's first message
    assert not {c.id for c in mine} & {c.id for c in theirs}
    assert {by_id[c.id].event for c in mine + theirs} == {"enrolled"}
    assert second.claim(START, 100) == []  # the rest wait behind leased ones
    for claimed in mine:
        first.record(claimed, None, now=START)
    # Delivered: the contact's next message is free to go, to whichever worker asks.
    assert {by_id[c.id].event for c in second.claim(START, 100)} == {"unsubscribed"}
    first.close()
    second.close()


def test_no_endpoint_url_or_secret_in_the_logs(store, clinic, receivers, caplog):
    caplog.set_level(logging.DEBUG)
    receiver = receivers(always_fail=True)
    url = receiver.url + "?token=receivers-own-token"
    _, secret = add_endpoint(store, url, ["enrolled"], include_email=True, now=START)
    enroll(store, clinic, Signup("pat@example.com", "Pat", None, SIGNUP, "f"), now=START)
    WebhookDeliverer(store).drain(now=START)
    assert receiver.requests
    assert "receivers-own-token" not in caplog.text
    assert secret not in caplog.text and "pat@example.com" not in caplog.text
