"""The preference centre behind every email's preferences and unsubscribe links (issue 18.2):
pause, resume, fewer emails, language, discreet, send me my data, erase me."""

from __future__ import annotations

import email
import email.policy
import json
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient

from campaigns.authoring.spec import load_folder
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.errors import ConfigurationError
from campaigns.storage.tables import contacts, deliveries, enrollments, events
from campaigns.web.app import create_app
from senders.file import FileSender, NullSender
from tests.languages import write_spanish_clinic
from tests.test_privacy import database_bytes
from tests.test_unsubscribe import (
    NOW,
    delivery_rows,
    enroll_pat,
    second_campaign,
    snapshot,
    token_for,
)
from tests.test_unsubscribe_pages import Clock

MONTH = timedelta(weeks=4)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def client(store, clock, outbox):
    sender = FileSender(outbox)
    app = create_app(store, environ={}, clock=clock, sender_for=lambda _campaign: sender)
    with TestClient(app, base_url="https://mail.clinic.test") as c:
        yield c


def choose(client: TestClient, token: str, path: str = "u", **fields: str):
    """A press of one of the page's buttons: its form's fields, posted to the token URL."""
    return client.post(f"/{path}/{token}", data=fields)


def pending(store, contact_id: int) -> dict[int, object]:
    with store.connect() as conn:
        return dict(
            conn.execute(
                select(deliveries.c.id, deliveries.c.due_at)
                .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
                .where(
                    enrollments.c.contact_id == contact_id,
                    deliveries.c.status.in_(["scheduled", "claimed"]),
                )
            ).all()
        )


def contact_row(store, contact_id: int):
    with store.connect() as conn:
        return conn.execute(select(contacts).where(contacts.c.id == contact_id)).first()


def recorded(store) -> list[tuple[str, str, int | None]]:
    with store.connect() as conn:
        rows = conn.execute(select(events).order_by(events.c.id)).all()
    return [(e.provider, e.type, e.delivery_id) for e in rows]


# ------------------------------------------------------------------------------ pausing


def test_pause_a_month_moves_every_pending_email_a_month_later_in_every_campaign(
    store, clinic, client, tmp_path
):
    first = enroll_pat(store, clinic)
    second = enroll_pat(store, second_campaign(Path(clinic.origin), tmp_path))
    token, claim = token_for(store, first)
    before = pending(store, claim.contact_id)
    assert len(before) == 2 * len(clinic.steps)
    with store.connect() as conn:
        bystander_before = conn.execute(select(deliveries.c.due_at)).all()

    page = choose(client, token, "p", choice="pause", **{"for": "1m"})

    assert page.status_code == 200
    assert "Your emails are paused." in page.text
    assert "Your emails are paused until March 30, 2026." in page.text
    after = pending(store, claim.contact_id)
    assert after == {i: due + MONTH for i, due in before.items()}  # exactly, spacing kept
    assert contact_row(store, claim.contact_id).paused_until == NOW + MONTH
    assert recorded(store) == [("dripmail", "pref_paused", claim.delivery_id)]
    assert {r.enrollment_id for r in delivery_rows(store)} == {first, second}
    assert len(bystander_before) == 2 * len(clinic.steps)

    # The dispatcher at each new due time: one email per opening, none before the pause ends.
    assert (
        Dispatcher(store, lambda _c: NullSender()).run(now=NOW + MONTH - timedelta(hours=1)).sent
        == 0
    )
    # A worker ticking every two hours from the pause's end until all of it has gone.
    dispatcher, at = Dispatcher(store, lambda _c: NullSender()), NOW + MONTH
    while at <= max(after.values()) + timedelta(days=len(after)):
        dispatcher.run(now=at)
        at += timedelta(hours=2)
    with store.connect() as conn:
        sent = conn.execute(
            select(deliveries.c.id, deliveries.c.sent_at).where(deliveries.c.status == "sent")
        ).all()
    assert len(sent) == len(after)  # every one went, none before its new time
    assert all(at >= after[i] for i, at in sent)
    assert min(at for _i, at in sent) >= NOW + MONTH
    # One email per opening across both series (the clinic's window opens once a day):
    # the backlog of the two does not arrive at once (planning/pace.py).
    openings = Counter(at.date() for _i, at in sent)
    assert max(openings.values()) == 1


def test_the_same_pause_twice_changes_nothing_more(store, clinic, client):
    token, claim = token_for(store, enroll_pat(store, clinic))
    choose(client, token, choice="pause", **{"for": "1m"})
    once = pending(store, claim.contact_id)

    again = choose(client, token, choice="pause", **{"for": "1m"})

    assert "Nothing to change: that was already your choice." in again.text
    assert pending(store, claim.contact_id) == once
    assert [kind for _p, kind, _d in recorded(store)] == ["pref_paused"]


def test_a_longer_pause_moves_them_by_the_difference_and_resume_now_brings_them_back(
    store, clinic, client, clock
):
    token, claim = token_for(store, enroll_pat(store, clinic))
    before = pending(store, claim.contact_id)
    choose(client, token, choice="pause", **{"for": "2w"})
    choose(client, token, choice="pause", **{"for": "3m"})
    assert pending(store, claim.contact_id) == {
        i: due + timedelta(weeks=13) for i, due in before.items()
    }

    page = choose(client, token, choice="resume")

    assert "Your emails have resumed." in page.text
    assert pending(store, claim.contact_id) == before
    assert contact_row(store, claim.contact_id).paused_until is None
    assert [kind for _p, kind, _d in recorded(store)] == [
        "pref_paused",
        "pref_paused",
        "pref_resumed",
    ]
    assert "Nothing to change" in choose(client, token, choice="resume").text


def test_a_pause_the_page_does_not_offer_changes_nothing(store, clinic, client):
    token, _claim = token_for(store, enroll_pat(store, clinic))
    before = snapshot(store)
    page = choose(client, token, choice="pause", **{"for": "1y"})
    assert page.status_code == 400
    assert "That choice is not offered here." in page.text
    assert snapshot(store) == before


# -------------------------------------------------------- fewer, discreet and language


def test_fewer_emails_sets_a_week_between_them_and_back(store, clinic, client):
    token, claim = token_for(store, enroll_pat(store, clinic))

    page = choose(client, token, choice="fewer", value="on")
    assert "You will get at most one email a week." in page.text
    assert "You get at most one email a week." in client.get(f"/p/{token}").text
    assert contact_row(store, claim.contact_id).min_gap_days == 7
    assert "Nothing to change" in choose(client, token, choice="fewer", value="on").text

    choose(client, token, choice="fewer", value="off")
    assert contact_row(store, claim.contact_id).min_gap_days is None
    assert [kind for _p, kind, _d in recorded(store)] == ["pref_fewer_on", "pref_fewer_off"]


def test_discreet_emails_on_and_off(store, clinic, client):
    token, claim = token_for(store, enroll_pat(store, clinic))
    page = choose(client, token, choice="discreet", value="on")
    assert "Your emails will be discreet, from the next one." in page.text
    assert "Stop discreet emails" in page.text
    assert contact_row(store, claim.contact_id).discreet is True
    choose(client, token, choice="discreet", value="on")
    choose(client, token, choice="discreet", value="off")
    assert not contact_row(store, claim.contact_id).discreet
    assert [kind for _p, kind, _d in recorded(store)] == ["pref_discreet_on", "pref_discreet_off"]


def test_the_language_is_one_of_the_campaigns_and_the_page_then_speaks_it(
    store, clinic_folder, client
):
    clinic = load_folder(write_spanish_clinic(clinic_folder))
    token, claim = token_for(store, enroll_pat(store, clinic))
    page = client.get(f"/p/{token}")
    assert '<option value="es" lang="es">Español</option>' in page.text
    assert '<option value="en" lang="en" selected>English</option>' in page.text

    page = choose(client, token, choice="language", language="es")

    assert page.headers["content-language"] == "es"
    assert "Se ha guardado su idioma." in page.text
    assert contact_row(store, claim.contact_id).language == "es"
    before = snapshot(store)
    refused = choose(client, token, choice="language", language="fr")
    assert refused.status_code == 400
    assert snapshot(store) == before


def test_a_campaign_in_one_language_offers_no_language_choice(store, clinic, client):
    token, _claim = token_for(store, enroll_pat(store, clinic))
    page = client.get(f"/u/{token}")
    assert "Pause for a month" in page.text
    assert 'name="language"' not in page.text
    assert choose(client, token, choice="language", language="en").status_code == 200


# ------------------------------------------------------------------------- your data


def test_send_me_my_data_mails_the_export_once_a_day(store, clinic, client, outbox, clock):
    token, claim = token_for(store, enroll_pat(store, clinic))

    page = choose(client, token, choice="data")

    assert page.status_code == 200
    assert "We have sent your data to your email address." in page.text
    (sent,) = sorted(outbox.glob("*.eml"))
    message = email.message_from_bytes(sent.read_bytes(), policy=email.policy.default)
    assert message["To"] == "pat@example.com"
    assert message["Subject"] == "Your data from Balanced Ketamine"
    (attached,) = list(message.iter_attachments())
    assert attached.get_filename() == "my-data.json"
    assert attached.get_content_type() == "application/json"
    data = json.loads(attached.get_payload(decode=True))
    assert data["contact"]["email"] == "pat@example.com"
    assert len(data["deliveries"]) == len(clinic.steps)

    refused = choose(client, token, choice="data")
    assert refused.status_code == 429
    assert "We sent your data today already. You can ask again tomorrow." in refused.text
    assert "Send me my data" not in client.get(f"/p/{token}").text
    assert len(list(outbox.glob("*.eml"))) == 1
    assert [(kind, d) for _p, kind, d in recorded(store)] == [("data_export", claim.delivery_id)]

    clock.at = NOW + timedelta(days=1)
    assert choose(client, token, choice="data").status_code == 200
    assert len(list(outbox.glob("*.eml"))) == 2


def test_a_data_email_the_sender_cannot_send_can_be_asked_for_again(store, clinic, clock, outbox):
    class Unconfigured(NullSender):
        def send(self, messages):
            raise ConfigurationError("no SMTP host")

    app = create_app(store, environ={}, clock=clock, sender_for=lambda _c: Unconfigured())
    token, _claim = token_for(store, enroll_pat(store, clinic))
    with TestClient(app, base_url="https://mail.clinic.test") as client:
        page = choose(client, token, choice="data")
    assert page.status_code == 503
    assert "We could not send your data just now." in page.text
    assert recorded(store) == []  # not counted as today's: asking again sends it
    sender = FileSender(outbox)
    app = create_app(store, environ={}, clock=clock, sender_for=lambda _c: sender)
    with TestClient(app, base_url="https://mail.clinic.test") as client:
        assert choose(client, token, choice="data").status_code == 200
    assert len(list(outbox.glob("*.eml"))) == 1


@pytest.mark.sqlite_only
def test_erase_me_asks_once_more_then_leaves_no_byte_of_the_address(store, clinic, client):
    address = "zebulon.quill@example.org"
    token, claim = token_for(store, enroll_pat(store, clinic, address, "Philippa"))
    enroll_pat(store, clinic, "kim.other@example.org", "Kimberley")
    assert address.encode() in database_bytes(store)
    before = snapshot(store)

    asked = choose(client, token, choice="erase")

    assert asked.status_code == 200
    assert "Erase your data?" in asked.text
    assert 'name="confirm" value="yes"' in asked.text
    assert snapshot(store) == before  # the first press erases nothing

    done = choose(client, token, choice="erase", confirm="yes")

    assert "Your data is erased" in done.text
    held = database_bytes(store)
    assert address.encode() not in held
    assert b"zebulon" not in held.lower() and b"Philippa" not in held
    assert b"Kimberley" in held
    assert {r.status for r in delivery_rows(store) if r.enrollment_id == 1} == {"cancelled"}
    assert recorded(store) == [("dripmail", "erasure", claim.delivery_id)]
    later = client.get(f"/p/{token}")
    assert "Your data has been erased." in later.text
    assert "Send me my data" not in later.text
    again = choose(client, token, choice="erase", confirm="yes")
    assert "Your data is erased" in again.text
    assert [kind for _p, kind, _d in recorded(store)] == ["erasure"]


def test_a_link_scanner_fetching_every_page_changes_nothing(store, clinic, client):
    token, _claim = token_for(store, enroll_pat(store, clinic))
    before = snapshot(store)
    for path in (f"/u/{token}", f"/p/{token}"):
        assert client.get(path).status_code == 200
        client.head(path)
    # The link on the "erase me" page leads back to the page, by GET.
    assert (
        client.get(f"/u/{token}", params={"choice": "erase", "confirm": "yes"}).status_code == 200
    )
    assert snapshot(store) == before


def test_an_email_a_worker_has_claimed_goes_back_to_the_queue_and_moves_too(store, clinic, client):
    token, claim = token_for(store, enroll_pat(store, clinic))
    before = pending(store, claim.contact_id)
    with store.begin() as conn:  # what a worker's claim writes
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == claim.delivery_id)
            .values(
                status="claimed",
                lease_owner="worker-1",
                lease_expires_at=NOW + timedelta(minutes=5),
            )
        )

    choose(client, token, choice="pause", **{"for": "2w"})

    (row,) = [r for r in delivery_rows(store) if r.id == claim.delivery_id]
    assert (row.status, row.lease_owner, row.lease_expires_at) == ("scheduled", None, None)
    assert row.due_at == before[claim.delivery_id] + timedelta(weeks=2)
