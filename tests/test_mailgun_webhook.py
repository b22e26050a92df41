"""Mailgun's signed webhooks against the real app, on SQLite and PostgreSQL.

Bodies are the documented payloads of tests/fixtures/mailgun, signed as Mailgun signs
them: hex HMAC-SHA256 of timestamp + token under the webhook signing key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select, update
from starlette.testclient import TestClient

from campaigns.authoring.spec import load_folder
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.reporting.stats import campaign_stats
from campaigns.storage.tables import deliveries, events, suppressions, webhook_tokens
from campaigns.web.app import create_app
from tests.helpers import utc

NOW = utc("2026-03-02T12:00")
CLOCK = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)  # the real clock, as the app sees it
SIGNING_KEY = "whsk-3f9a1c7e5b0d2468ace13579bdf02468"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mailgun"
URL = "/webhooks/mailgun"


def body(
    name: str,
    delivery_id: int | str | None = None,
    *,
    key: str = SIGNING_KEY,
    at: datetime = CLOCK,
    token: str | None = None,
    **changes,
) -> dict:
    """A fixture's payload for `delivery_id`, signed now under `key` with a fresh token."""
    payload = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    data = payload["event-data"]
    data["timestamp"] = at.timestamp() - 30  # the event happened just before the post
    data["user-variables"] = {} if delivery_id is None else {"delivery_id": str(delivery_id)}
    data.update(changes)
    payload["signature"] = signature(key=key, at=at, token=token)
    return payload


def signature(*, key: str = SIGNING_KEY, at: datetime = CLOCK, token: str | None = None) -> dict:
    timestamp = str(int(at.timestamp()))
    token = token or secrets.token_hex(25)  # 50 characters, as Mailgun's
    digest = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": digest}


def app_client(store, environ: dict | None = None) -> TestClient:
    environ = {"MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY} if environ is None else environ
    app = create_app(store, clock=lambda: CLOCK, environ=environ)
    return TestClient(app, base_url="https://mail.clinic.test")


@pytest.fixture
def client(store):
    with app_client(store) as c:
        yield c


def post(client, payload) -> object:
    return client.post(URL, content=json.dumps(payload).encode(), headers=JSON)


JSON = {"Content-Type": "application/json"}


def enroll_pat(store, campaign, address="pat@example.com"):
    signup = Signup(address, "Pat", "America/New_York", "2026-03-02T10:00", "clinic form")
    return enroll(store, campaign, signup, now=NOW).enrollment_ids[0]


def deliveries_of(store, enrollment_id) -> list:
    with store.connect() as conn:
        return conn.execute(
            select(deliveries)
            .where(deliveries.c.enrollment_id == enrollment_id)
            .order_by(deliveries.c.position)
        ).all()


def set_status(store, delivery_id, status):
    with store.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id)
            .values(status=status, sent_at=NOW, updated_at=NOW)
        )


def snapshot(store) -> dict[str, list]:
    meta = MetaData()
    meta.reflect(store.engine)
    with store.connect() as conn:
        return {name: conn.execute(select(t)).all() for name, t in meta.tables.items()}


def second_campaign(clinic, tmp_path):
    folder = tmp_path / "second"
    folder.mkdir()
    for path in Path(clinic.origin).iterdir():
        (folder / path.name).write_text(path.read_text())
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text().replace("name: ketamine-and-sleep", "name: sleep-tips", 1))
    return load_folder(folder)


# -- what events do -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("failed_permanent", "bounced_hard"),
        ("complained", "complained"),
        ("unsubscribed", "unsubscribed"),
        ("failed_suppress_bounce", "rejected"),  # already on Mailgun's own bounce list
    ],
)
def test_a_signed_bounce_or_complaint_suppresses_the_address_across_campaigns(
    store, clinic, client, tmp_path, name, reason
):
    first = deliveries_of(store, enroll_pat(store, clinic))
    other = deliveries_of(store, enroll_pat(store, second_campaign(clinic, tmp_path)))
    set_status(store, first[0].id, "sent")

    answer = post(client, body(name, first[0].id, recipient="Pat@Example.com"))

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"stored": 1, "duplicates": 0, "ignored": 0}
    with store.connect() as conn:
        held = conn.execute(select(suppressions.c.address_hash, suppressions.c.reason)).all()
        stored = conn.execute(select(events.c.provider, events.c.type, events.c.delivery_id)).all()
    assert held == [(store.address_hash("pat@example.com"), reason)]
    assert stored == [("mailgun", reason, first[0].id)]
    pending = deliveries_of(store, first[0].enrollment_id)[1:]
    pending += deliveries_of(store, other[0].enrollment_id)
    assert {d.status for d in pending} == {"cancelled"}
    # Signing up again to either campaign enrolls nothing.
    again = enroll(store, clinic, Signup("pat@example.com", "Pat", "UTC", None, "form"), now=NOW)
    assert again.suppressed == 1


def test_a_soft_bounce_and_engagement_are_counted_and_suppress_nothing(store, clinic, client):
    first = deliveries_of(store, enroll_pat(store, clinic))
    set_status(store, first[0].id, "sent")

    for name in ("accepted", "delivered", "failed_temporary", "opened", "clicked"):
        assert post(client, body(name, first[0].id)).status_code == 200

    with store.connect() as conn:
        assert conn.execute(select(suppressions)).all() == []
        kinds = sorted(conn.scalars(select(events.c.type)))
    assert kinds == ["accepted", "bounced_soft", "clicked", "delivered", "opened"]
    assert {d.status for d in deliveries_of(store, first[0].enrollment_id)[1:]} == {"scheduled"}
    counts = campaign_stats(store, "ketamine-and-sleep").steps[0].counts
    assert (counts.sent, counts.delivered) == (1, 1)


def test_a_delivered_event_settles_an_unknown_delivery_as_sent(store, clinic, client):
    first = deliveries_of(store, enroll_pat(store, clinic))
    set_status(store, first[0].id, "unknown")  # its answer was lost after sending

    assert post(client, body("delivered", first[0].id)).status_code == 200

    [settled] = deliveries_of(store, first[0].enrollment_id)[:1]
    assert settled.status == "sent"
    assert settled.provider_message_id == "20261206141224.1e7901dc78baf773@mg.clinic.example"


def test_a_message_mailgun_rejected_fails_its_unknown_delivery_and_suppresses_nobody(
    store, clinic, client
):
    first = deliveries_of(store, enroll_pat(store, clinic))
    set_status(store, first[0].id, "unknown")

    assert post(client, body("rejected", first[0].id)).status_code == 200

    [settled] = deliveries_of(store, first[0].enrollment_id)[:1]
    assert settled.status == "failed"
    assert settled.error.startswith("rejected by mailgun: Sandbox subdomains")
    with store.connect() as conn:
        assert conn.execute(select(suppressions)).all() == []


def test_mailguns_retry_of_an_event_is_signed_anew_and_counts_once(store, clinic, client):
    first = deliveries_of(store, enroll_pat(store, clinic))
    set_status(store, first[0].id, "sent")
    opened = body("opened", first[0].id)
    retried = {**opened, "signature": signature()}  # the same event, a new signature

    assert post(client, opened).json()["stored"] == 1
    assert post(client, retried).json() == {"stored": 0, "duplicates": 1, "ignored": 0}
    with store.connect() as conn:
        assert conn.scalars(select(events.c.type)).all() == ["opened"]


def test_an_event_outside_the_model_or_for_a_test_send_is_taken_and_ignored(store, client):
    assert post(client, body("stored")).json() == {"stored": 0, "duplicates": 0, "ignored": 1}
    test_send = post(client, body("delivered", "test-3f9a1c7e5b0d"))
    assert test_send.json() == {"stored": 1, "duplicates": 0, "ignored": 0}
    with store.connect() as conn:
        assert conn.scalars(select(events.c.delivery_id)).all() == [None]


# -- what is refused, with nothing changed -------------------------------------------------


def refused_with_nothing_changed(store, client, payload, status: int, words: str) -> None:
    before = snapshot(store)
    answer = post(client, payload)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]
    assert snapshot(store) == before


def test_forged_wrong_key_stale_and_future_requests_are_refused(store, clinic, client):
    first = deliveries_of(store, enroll_pat(store, clinic))
    set_status(store, first[0].id, "unknown")
    forged = body("failed_permanent", first[0].id)
    forged["signature"]["signature"] = secrets.token_hex(32)

    cases = [
        (forged, 403, "does not match"),
        (body("failed_permanent", first[0].id, key="whsk-another-key"), 403, "does not match"),
        (body("complained", first[0].id, at=CLOCK - timedelta(minutes=6)), 403, "too old"),
        (body("complained", first[0].id, at=CLOCK + timedelta(minutes=2)), 403, "in the future"),
        ({"event-data": body("complained")["event-data"]}, 401, "no signature"),
    ]
    for payload, status, words in cases:
        refused_with_nothing_changed(store, client, payload, status, words)
    assert deliveries_of(store, first[0].enrollment_id)[0].status == "unknown"


def test_a_replayed_signature_is_refused_even_with_other_events(store, clinic, client):
    first = deliveries_of(store, enroll_pat(store, clinic))
    set_status(store, first[0].id, "sent")
    opened = body("opened", first[0].id)
    assert post(client, opened).status_code == 200

    # The same request again, and its signature (which covers only timestamp and token)
    # carrying a bounce that would suppress the patient.
    bounce = body("failed_permanent", first[0].id)
    bounce["signature"] = opened["signature"]
    for replay in (opened, bounce):
        refused_with_nothing_changed(store, client, replay, 403, "used before")


def test_every_worker_refuses_a_token_another_has_seen(store, clinic):
    first = deliveries_of(store, enroll_pat(store, clinic))
    set_status(store, first[0].id, "sent")
    opened = body("opened", first[0].id)
    with app_client(store) as one, app_client(store) as other:
        assert post(one, opened).status_code == 200
        refused_with_nothing_changed(store, other, opened, 403, "used before")


def test_tokens_past_the_age_limit_are_forgotten_as_new_ones_come(store, clinic):
    first = deliveries_of(store, enroll_pat(store, clinic))
    set_status(store, first[0].id, "sent")
    early = CLOCK - timedelta(minutes=4)
    with TestClient(
        create_app(store, clock=lambda: early, environ={"MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY})
    ) as before:
        assert post(before, body("opened", first[0].id, at=early)).status_code == 200
    later = CLOCK + timedelta(minutes=20)
    with TestClient(
        create_app(store, clock=lambda: later, environ={"MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY})
    ) as after:
        assert post(after, body("clicked", first[0].id, at=later)).status_code == 200
    with store.connect() as conn:
        kept = conn.execute(select(webhook_tokens.c.provider, webhook_tokens.c.signed_at)).all()
    assert kept == [("mailgun", datetime.fromtimestamp(int(later.timestamp()), UTC))]


def test_a_rotated_key_list_verifies_under_either_key(store):
    environ = {"MAILGUN_WEBHOOK_SIGNING_KEY": f"whsk-old-key,{SIGNING_KEY}"}
    with app_client(store, environ) as client:
        assert post(client, body("stored", key="whsk-old-key")).status_code == 200
        assert post(client, body("stored")).status_code == 200
        assert post(client, body("stored", key="whsk-third")).status_code == 403


def test_without_a_signing_key_events_wait_at_mailgun(store):
    with app_client(store, environ={}) as client:
        before = snapshot(store)
        answer = post(client, body("complained", 1))
    assert answer.status_code == 503 and "MAILGUN_WEBHOOK_SIGNING_KEY" in answer.json()["error"]
    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("content", "status", "words"),
    [
        (b"signature=abc&token=def", 400, "not JSON"),
        (b"[]", 400, "not a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "nested"),
        (b'{"signature": {}, "event-data": {}}', 401, "no signature"),
        (b"{" + b" " * 300_000 + b"}", 413, "over"),
    ],
)
def test_malformed_or_oversized_bodies_are_refused(store, client, content, status, words):
    before = snapshot(store)
    answer = client.post(URL, content=content, headers=JSON)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]
    assert snapshot(store) == before


def test_a_signed_body_that_is_no_event_is_refused_and_its_token_stays_unused(store, client):
    payload = {"signature": signature(), "event-data": {"id": "x"}}
    refused_with_nothing_changed(store, client, payload, 400, "no Mailgun event")
    # The token was not spent on a refused body.
    payload["event-data"] = body("stored")["event-data"]
    assert post(client, payload).status_code == 200


def test_webhooks_log_no_address_and_no_key(store, clinic, client, caplog):
    caplog.set_level(logging.DEBUG)
    first = deliveries_of(store, enroll_pat(store, clinic))
    post(client, body("failed_permanent", first[0].id))
    post(client, body("failed_permanent", first[0].id, key="whsk-wrong"))
    logged = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    assert "mailgun webhook refused" in logged
    assert "pat@example.com" not in logged.lower() and SIGNING_KEY not in logged
