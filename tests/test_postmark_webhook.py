"""Postmark's webhooks against the real app, on SQLite and PostgreSQL: records shaped as
Postmark documents them (tests/fixtures/postmark), with HTTP basic credentials."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from campaigns.authoring.spec import load_folder
from campaigns.errors import ConfigurationError
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.reporting.stats import campaign_stats
from campaigns.storage.tables import deliveries, events, suppressions
from campaigns.web.app import create_app
from tests.test_webhooks import (
    CLOCK,
    NOW,
    TestClient,
    enroll_pat,
    first_delivery,
    set_status,
    snapshot,
)
from tests.unit.test_postmark import record

CREDENTIALS = "postmark:first-pass-1234,postmark:rotated-pass-5678"


def basic(user: str = "postmark", password: str = "rotated-pass-5678") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def app_client(store, environ=None) -> TestClient:
    environ = {"POSTMARK_WEBHOOK_CREDENTIALS": CREDENTIALS} if environ is None else environ
    app = create_app(store, clock=lambda: CLOCK, environ=environ)
    return TestClient(app, base_url="https://mail.clinic.test")


@pytest.fixture
def client(store):
    with app_client(store) as c:
        yield c


def post(client, item, headers=None):
    body = item if isinstance(item, bytes) else json.dumps(item).encode()
    return client.post("/webhooks/postmark", content=body, headers=headers or basic())


def second_campaign(clinic, tmp_path: Path):
    folder = tmp_path / "second"
    folder.mkdir()
    for path in Path(clinic.origin).iterdir():
        (folder / path.name).write_text(path.read_text())
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text().replace("name: ketamine-and-sleep", "name: sleep-tips", 1))
    return load_folder(folder)


def pending_of(store, *enrollment_ids, but=None) -> set[str]:
    with store.connect() as conn:
        return set(
            conn.execute(
                select(deliveries.c.status).where(
                    deliveries.c.enrollment_id.in_(enrollment_ids), deliveries.c.id != but
                )
            ).scalars()
        )


@pytest.mark.parametrize(
    ("name", "reason"),
    [("bounce", "bounced_hard"), ("spam_complaint", "complained")],
)
def test_a_bounce_or_complaint_suppresses_the_address_across_campaigns(
    store, clinic, client, tmp_path, name, reason
):
    first = first_delivery(store, enroll_pat(store, clinic))
    other = first_delivery(store, enroll_pat(store, second_campaign(clinic, tmp_path)))
    set_status(store, first.id, "sent")

    answer = post(
        client,
        record(name, Email="Pat@Example.com", Metadata={"delivery_id": str(first.id)}),
        basic(password="first-pass-1234"),  # either pair of the list works
    )

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"stored": 1, "duplicates": 0, "ignored": 0}
    assert pending_of(store, first.enrollment_id, other.enrollment_id, but=first.id) == {
        "cancelled"
    }
    with store.connect() as conn:
        held = conn.execute(select(suppressions.c.address_hash, suppressions.c.reason)).all()
        stored = conn.execute(select(events.c.provider, events.c.type, events.c.delivery_id)).all()
    assert held == [(store.address_hash("pat@example.com"), reason)]
    assert stored == [("postmark", reason, first.id)]
    again = enroll(store, clinic, Signup("pat@example.com", "Pat", "UTC", None, "form"), now=NOW)
    assert again.suppressed == 1


def test_a_soft_bounce_is_counted_and_suppresses_nothing(store, clinic, client):
    delivery = first_delivery(store, enroll_pat(store, clinic))
    set_status(store, delivery.id, "sent")

    post(client, record("soft_bounce", Metadata={"delivery_id": str(delivery.id)}))

    with store.connect() as conn:
        assert conn.execute(select(suppressions)).all() == []
    assert pending_of(store, delivery.enrollment_id, but=delivery.id) == {"scheduled"}


def test_a_delivered_event_settles_an_unknown_delivery(store, clinic, client):
    delivery = first_delivery(store, enroll_pat(store, clinic))
    set_status(store, delivery.id, "unknown")  # its answer was lost after sending

    for name in ("delivery", "open", "click"):
        post(client, record(name, Metadata={"delivery_id": str(delivery.id)}))

    settled = first_delivery(store, delivery.enrollment_id)
    assert settled.status == "sent"
    assert settled.provider_message_id == "883953f4-6105-42a2-a16a-77a8eac79483"
    assert campaign_stats(store, "ketamine-and-sleep").steps[0].counts.delivered == 1
    with store.connect() as conn:
        stored = conn.execute(select(events.c.type, events.c.delivery_id)).all()
    assert sorted(stored) == [(k, delivery.id) for k in ("clicked", "delivered", "opened")]


def test_an_unsubscribe_at_postmark_unsubscribes_here(store, clinic, client):
    delivery = first_delivery(store, enroll_pat(store, clinic))
    post(client, record("subscription_change", Metadata={"delivery_id": str(delivery.id)}))
    with store.connect() as conn:
        assert conn.execute(select(suppressions.c.reason)).scalars().all() == ["unsubscribed"]
    before = snapshot(store)
    # A reactivation at Postmark lifts nothing here.
    assert post(client, record("reactivation")).json() == {
        "stored": 0,
        "duplicates": 0,
        "ignored": 1,
    }
    assert snapshot(store) == before


def test_a_replayed_record_changes_nothing(store, clinic, client):
    delivery = first_delivery(store, enroll_pat(store, clinic))
    bounce = record("bounce", Metadata={"delivery_id": str(delivery.id)})
    post(client, bounce)
    before = snapshot(store)

    again = post(client, bounce)

    assert again.json() == {"stored": 0, "duplicates": 1, "ignored": 0}
    assert snapshot(store) == before


@pytest.mark.parametrize(
    "headers",
    [
        basic(password="wrong-pass"),
        basic(user="someone", password="rotated-pass-5678"),
        {"Content-Type": "application/json"},
        {"Authorization": "Bearer rotated-pass-5678"},
        {"Authorization": "Basic not base64!"},
    ],
)
def test_forged_or_wrong_credentials_are_refused_and_change_nothing(store, clinic, client, headers):
    enroll_pat(store, clinic)
    before = snapshot(store)

    answer = post(client, record("bounce"), headers)

    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Basic")
    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[" * 100_000, 400),
        (json.dumps([{"RecordType": "Bounce"}]).encode(), 400),
        (b"x" * (300 * 1024), 413),
    ],
)
def test_a_malformed_body_is_refused_and_changes_nothing(store, clinic, client, body, status):
    enroll_pat(store, clinic)
    before = snapshot(store)
    assert post(client, body).status_code == status
    assert snapshot(store) == before


def test_without_credentials_the_endpoint_answers_503(store):
    with app_client(store, environ={}) as client:
        assert post(client, record("bounce")).status_code == 503


@pytest.mark.sqlite_only
def test_no_address_is_stored(store, client):
    answer = post(client, record("bounce", Email="stranger.danger@example.org"))
    assert answer.json()["stored"] == 1
    store.close()
    for path in Path(store.path).parent.glob(Path(store.path).name + "*"):
        assert b"stranger.danger" not in path.read_bytes()


def test_malformed_credentials_stop_serve_at_start(store):
    with pytest.raises(ConfigurationError, match="POSTMARK_WEBHOOK_CREDENTIALS"):
        create_app(store, environ={"POSTMARK_WEBHOOK_CREDENTIALS": "only-a-password"})
