"""Double opt-in (issue 18, point 1), on a SQLite file and on PostgreSQL.

Sign-ups go through the real sign-up API, the confirmation emails through a worker's
tick and the file sender, and patients confirm on the real `serve` app; time moves by
the engine's `now` and the app's clock, never by sleeping.
"""

from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from campaigns.authoring.spec import load_folder
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.delivery.sender_pool import SenderPool
from campaigns.delivery.wakeups import anything_due
from campaigns.planning.confirmations import confirmation_counts, confirmations_due
from campaigns.planning.plans import plan
from campaigns.storage.publish import publish
from campaigns.storage.tables import confirmations, contacts, deliveries, enrollments
from campaigns.web.app import create_app
from tests.conftest import write_clinic_campaign
from tests.helpers import utc

TOKEN = "double-opt-in-test-token"
PUBLIC = "http://127.0.0.1:8026"
T0 = utc("2026-03-02T12:00")
_URL = re.compile(r"https?://[^\s\"'<>)]+")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self):
        return self.now


@pytest.fixture
def double(store, tmp_path: Path):
    """(client, clock, campaign, outbox): the clinic campaign with `confirm: double`,
    published, and a worker's file sender writing to `outbox`."""
    folder = write_clinic_campaign(tmp_path / "clinic")
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text() + "confirm: double\nconfirm_within: 7d\n")
    campaign = load_folder(folder)
    with store.begin() as conn:
        publish(conn, campaign, now=T0)
    outbox = tmp_path / "outbox"
    store.settings = store.settings.model_copy(update={"public_url": PUBLIC, "outbox": str(outbox)})
    clock = Clock()
    app = create_app(store, clock=clock, environ={"DRIPMAIL_API_TOKEN": TOKEN})
    with TestClient(app, base_url=PUBLIC) as client:
        yield client, clock, campaign, outbox


def sign_up(client, address: str, **extra) -> object:
    body = {
        "email": address,
        "first_name": "Pat",
        "timezone": "Europe/London",
        "campaign": "ketamine-and-sleep",
        "consent": {"source": "clinic website form", "text": "Yes, email me the sleep series"},
        **extra,
    }
    return client.post(
        "/api/v1/enrollments", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )


def tick(store, now):
    """One worker tick at `now`, through the campaign's own (file) sender."""
    pool = SenderPool(None, store.settings)
    try:
        return Dispatcher(store, pool).run(now=now)
    finally:
        pool.close()


def emails(outbox: Path) -> dict[str, email.message.EmailMessage]:
    """Every email in the outbox by recipient."""
    found = {}
    for eml in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        found.setdefault(str(message["To"]).rsplit("<", 1)[-1].rstrip(">"), []).append(message)
    return found


def urls(message) -> set[str]:
    """Every URL in an email: its HTML and text parts and its headers."""
    text = "".join(
        part.get_content() for part in message.walk() if part.get_content_maintype() == "text"
    )
    text += str(message.get("List-Unsubscribe", ""))
    return {url.replace("&amp;", "&") for url in _URL.findall(text)}


def confirm_path(message) -> str:
    (url,) = {u for u in urls(message) if "/c/" in u}
    return urlsplit(url).path


def count(store, table) -> int:
    with store.connect() as conn:
        return conn.scalar(select(func.count()).select_from(table))


def test_hundred_sign_ups_sixty_confirm_forty_expire(store, double):
    client, clock, campaign, outbox = double
    addresses = [f"patient{i:03d}@example.com" for i in range(100)]
    for address in addresses:
        answer = sign_up(client, address)
        assert answer.status_code == 202, answer.text
        assert answer.json() == {
            "campaign": "ketamine-and-sleep",
            "status": "awaiting_confirmation",
        }
    assert count(store, enrollments) == 0
    assert count(store, deliveries) == 0
    with store.connect() as conn:  # a running worker's probe wakes it for them
        assert confirmations_due(conn, T0) and anything_due(conn, T0)

    report = tick(store, T0)
    assert report.confirmations == 100
    assert report.sent == 0
    with store.connect() as conn:
        assert not confirmations_due(conn, T0) and not anything_due(conn, T0)
    mail = emails(outbox)
    assert sorted(mail) == addresses
    first = mail[addresses[0]][0]
    assert first["Subject"] == "Please confirm your email for Balanced Ketamine"
    assert first["List-Unsubscribe"].startswith(f"<{PUBLIC}/u/")
    body = first.get_body(("plain",)).get_content()
    assert "Confirm my email: " + PUBLIC + "/c/" in body
    # Nothing about health: no word of the series (a mistyped address reaches a stranger).
    assert "sleep" not in (body + first["Subject"]).lower()
    assert not any(step.subject in body for step in campaign.steps)

    # A link scanner fetches every URL of every confirmation email: nobody is confirmed.
    for messages in mail.values():
        for url in urls(messages[0]):
            if url.startswith(PUBLIC):
                client.get(urlsplit(url).path)
                client.head(urlsplit(url).path)
    assert count(store, enrollments) == 0
    with store.connect() as conn:
        assert (
            conn.scalar(select(func.count()).where(confirmations.c.confirmed_at.is_not(None))) == 0
        )

    # A GET shows one button; only its POST confirms.
    page = client.get(confirm_path(mail[addresses[0]][0]))
    assert page.status_code == 200
    assert page.text.count("<button") == 1 and "Confirm my email" in page.text
    confirmed_at = {}
    for i, address in enumerate(addresses[:60]):
        clock.now = T0 + timedelta(hours=1, minutes=7 * i)
        answer = client.post(confirm_path(mail[address][0]))
        assert answer.status_code == 200
        assert "your email is confirmed" in answer.text
        confirmed_at[address] = clock.now
    again = client.post(confirm_path(mail[addresses[0]][0]))
    assert "already confirmed" in again.text
    assert count(store, enrollments) == 60

    # Exactly those 60 have the sequence, timed from their confirmation.
    with store.connect() as conn:
        rows = conn.execute(
            select(contacts.c.email, enrollments.c.signed_up_at, deliveries.c.due_at)
            .join(enrollments, enrollments.c.contact_id == contacts.c.id)
            .join(deliveries, deliveries.c.enrollment_id == enrollments.c.id)
            .order_by(contacts.c.email, deliveries.c.position)
        ).all()
    planned: dict[str, list] = {}
    for address, signed_up_at, due in rows:
        assert signed_up_at == confirmed_at[address]
        planned.setdefault(address, []).append(due)
    assert set(planned) == set(addresses[:60])
    for address, dues in planned.items():
        assert dues == plan(campaign, confirmed_at[address], "Europe/London")

    # After 7 simulated days the 40 others expire, with no delivery rows.
    later = T0 + timedelta(days=7, minutes=1)
    report = tick(store, later)
    assert report.expired_signups == 40
    assert count(store, deliveries) == 60 * len(campaign.steps)
    with store.connect() as conn:
        assert confirmation_counts(conn)["ketamine-and-sleep"].expired == 40
        assert confirmation_counts(conn)["ketamine-and-sleep"].confirmed == 60
        unconfirmed = conn.scalar(
            select(func.count())
            .select_from(enrollments)
            .join(contacts, contacts.c.id == enrollments.c.contact_id)
            .where(contacts.c.email.in_(addresses[60:]))
        )
        assert unconfirmed == 0
        kept = conn.execute(
            select(contacts.c.consent_at, contacts.c.confirmed_at).where(
                contacts.c.email == addresses[0]
            )
        ).one()
        assert kept == (T0, confirmed_at[addresses[0]])
    late = client.post(confirm_path(mail[addresses[99]][0]))
    assert late.status_code == 410 and "expired" in late.text
    assert count(store, enrollments) == 60


def test_repeated_sign_up_resends_at_most_once_a_day(store, double):
    client, clock, _campaign, outbox = double
    assert sign_up(client, "pat@example.com").status_code == 202
    tick(store, T0)
    for hours in (1, 5, 23):
        clock.now = T0 + timedelta(hours=hours)
        assert sign_up(client, "pat@example.com").status_code == 202
        tick(store, clock.now)
    assert len(emails(outbox)["pat@example.com"]) == 1
    clock.now = T0 + timedelta(hours=25)
    assert sign_up(client, "pat@example.com").status_code == 202
    tick(store, clock.now)
    assert len(emails(outbox)["pat@example.com"]) == 2
    with store.connect() as conn:
        row = conn.execute(select(confirmations)).one()
    assert (row.sent_at, row.resent_at) == (T0, T0 + timedelta(hours=25))


def test_api_field_asks_for_confirmation_on_a_single_opt_in_campaign(store, tmp_path):
    folder = write_clinic_campaign(tmp_path / "clinic")
    campaign = load_folder(folder)
    with store.begin() as conn:
        publish(conn, campaign, now=T0)
    app = create_app(store, clock=lambda: T0, environ={"DRIPMAIL_API_TOKEN": TOKEN})
    with TestClient(app) as client:
        assert sign_up(client, "single@example.com").status_code == 201
        answer = sign_up(client, "double@example.com", confirm="double")
        assert answer.status_code == 202
        assert sign_up(client, "x@example.com", confirm="triple").status_code == 422
    with store.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(confirmations)) == 1


@pytest.mark.sqlite_only
def test_confirmations_go_through_smtp_and_a_refused_address_is_not_asked_again(store, clinic):
    from campaigns.planning.enroll import enroll
    from campaigns.planning.signups import Signup
    from tests.smtp_server import Faults, SmtpTestServer
    from tests.test_smtp import PUBLIC_URL, assert_well_formed, sender_for

    store.settings = store.settings.model_copy(update={"public_url": PUBLIC_URL})
    for address in ("pat@example.com", "gone@example.com"):
        signup = Signup(address, "Pat", "Europe/London", None, "clinic form")
        assert enroll(store, clinic, signup, now=T0, double=True).pending == 1
    with SmtpTestServer(Faults(refuse={"gone@example.com"})) as server:
        sender = sender_for(server)
        try:
            first = Dispatcher(store, lambda _campaign: sender).run(now=T0)
            again = Dispatcher(store, lambda _campaign: sender).run(now=T0 + timedelta(hours=1))
        finally:
            sender.close()
    assert (first.confirmations, again.confirmations) == (1, 0)
    (received,) = [r for r in server.received if r.rcpt_tos == ("pat@example.com",)]
    assert received.message["Subject"] == "Please confirm your email for Balanced Ketamine"
    assert_well_formed(received)
    with store.connect() as conn:
        rows = {r.contact_id: r for r in conn.execute(select(confirmations))}
    assert [r.sent_at for r in rows.values()].count(T0) == 1
    assert all(r.send_due_at is None for r in rows.values())


def test_unsubscribing_from_the_confirmation_email_ends_the_request(store, double):
    client, clock, _campaign, outbox = double
    assert sign_up(client, "pat@example.com").status_code == 202
    tick(store, T0)
    (message,) = emails(outbox)["pat@example.com"]
    (unsubscribe,) = {u for u in urls(message) if "/u/" in u}
    one_click = client.post(urlsplit(unsubscribe).path, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    late = client.post(confirm_path(message))
    assert late.status_code == 410
    assert count(store, enrollments) == 0
    clock.now = T0 + timedelta(days=2)
    assert sign_up(client, "pat@example.com").status_code == 409  # suppressed now
    assert tick(store, clock.now).confirmations == 0


def test_the_same_sign_up_posted_twice_at_once_answers_202_both_times(store, double, monkeypatch):
    from sqlalchemy.exc import IntegrityError

    import campaigns.web.signup_api as signup_api

    client, _clock, _campaign, _outbox = double
    assert sign_up(client, "pat@example.com").status_code == 202

    def lost_the_race(*_args, **_kwargs):  # the other request's row won the unique index
        raise IntegrityError("INSERT INTO confirmations", {}, Exception("duplicate key"))

    monkeypatch.setattr(signup_api, "enroll", lost_the_race)
    answer = sign_up(client, "pat@example.com")
    assert answer.status_code == 202
    assert answer.json()["status"] == "awaiting_confirmation"
