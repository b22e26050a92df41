"""SendGrid's signed Event Webhook against the real app: signed with a test key pair."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import MetaData, select, update
from starlette.testclient import TestClient

from campaigns.authoring.spec import load_folder
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.reporting.stats import campaign_stats
from campaigns.storage.tables import deliveries, events, suppressions
from campaigns.web.app import create_app
from tests.helpers import utc

NOW = utc("2026-03-02T12:00")
CLOCK = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)  # the real clock, as the app sees it


def keypair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key and its public half as SendGrid shows it: base64 of the DER key."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


PRIVATE, PUBLIC = keypair()


def signed(body: bytes, *, key=PRIVATE, at: datetime = CLOCK) -> dict[str, str]:
    """Headers as SendGrid sends them: ECDSA SHA-256 over timestamp + payload, base64 DER."""
    timestamp = str(int(at.timestamp()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


def app_client(store, environ=None, **options) -> TestClient:
    environ = {"SENDGRID_WEBHOOK_PUBLIC_KEY": PUBLIC} if environ is None else environ
    app = create_app(store, clock=lambda: CLOCK, environ=environ, **options)
    return TestClient(app, base_url="https://mail.clinic.test")


@pytest.fixture
def client(store):
    with app_client(store) as c:
        yield c


def post(client, items, **sign) -> object:
    body = json.dumps(items).encode()
    return client.post("/webhooks/sendgrid", content=body, headers=signed(body, **sign))


def enroll_pat(store, campaign, address="pat@example.com"):
    signup = Signup(address, "Pat", "America/New_York", "2026-03-02T10:00", "clinic form")
    return enroll(store, campaign, signup, now=NOW).enrollment_ids[0]


def first_delivery(store, enrollment_id):
    with store.connect() as conn:
        return conn.execute(
            select(deliveries)
            .where(deliveries.c.enrollment_id == enrollment_id)
            .order_by(deliveries.c.position)
        ).first()


def set_status(store, delivery_id, status):
    with store.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id)
            .values(status=status, sent_at=NOW, updated_at=NOW)
        )


def event(kind, delivery_id=None, email="pat@example.com", n=1, **extra):
    item = {
        "email": email,
        "timestamp": int(CLOCK.timestamp()) - 60,
        "event": kind,
        "sg_event_id": f"evt-{kind}-{delivery_id}-{n}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        **extra,
    }
    if delivery_id is not None:
        item["delivery_id"] = str(delivery_id)  # custom_args come back as top-level keys
    return item


def snapshot(store) -> dict[str, list]:
    meta = MetaData()
    meta.reflect(store.engine)
    with store.connect() as conn:
        return {name: conn.execute(select(t)).all() for name, t in meta.tables.items()}


def test_a_signed_batch_is_stored_and_applied(store, clinic, client):
    delivery = first_delivery(store, enroll_pat(store, clinic))
    set_status(store, delivery.id, "unknown")  # its answer was lost after sending

    answer = post(
        client,
        [
            event("processed", delivery.id),
            event("delivered", delivery.id),
            event("open", delivery.id, useragent="Mozilla/5.0", ip="203.0.113.9"),
            event("click", delivery.id, url="https://balancedketamine.example.com/contact"),
        ],
    )

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"stored": 4, "duplicates": 0, "ignored": 0}
    settled = first_delivery(store, delivery.enrollment_id)
    assert settled.status == "sent"
    assert settled.provider_message_id == "14c5d75ce93"
    with store.connect() as conn:
        stored = conn.execute(select(events.c.type, events.c.delivery_id)).all()
    # Stored as the event model's kinds, whichever provider said them.
    assert sorted(stored) == sorted(
        [(k, delivery.id) for k in ("accepted", "delivered", "opened", "clicked")]
    )
    first = campaign_stats(store, "ketamine-and-sleep").steps[0].counts
    assert (first.sent, first.delivered, first.opened, first.clicked) == (1, 1, 1, 1)


def test_the_same_event_twice_counts_once(store, clinic, client):
    delivery = first_delivery(store, enroll_pat(store, clinic))
    set_status(store, delivery.id, "sent")
    opened = event("open", delivery.id)
    assert post(client, [opened]).json()["stored"] == 1
    # SendGrid retries a batch it did not see answered; the replay is signed anew.
    assert post(client, [opened, opened]).json() == {"stored": 0, "duplicates": 2, "ignored": 0}
    with store.connect() as conn:
        assert len(conn.execute(select(events)).all()) == 1
    assert campaign_stats(store, "ketamine-and-sleep").steps[0].counts.opened == 1


def test_events_without_an_event_id_are_idempotent_by_a_composite_key(store, clinic, client):
    delivery = first_delivery(store, enroll_pat(store, clinic))
    set_status(store, delivery.id, "sent")
    bare = event("delivered", delivery.id)
    del bare["sg_event_id"]
    post(client, [bare])
    post(client, [bare])
    with store.connect() as conn:
        keys = conn.scalars(select(events.c.provider_event_id)).all()
    assert len(keys) == 1
    assert keys[0].startswith("sha256:")


def test_a_bounce_suppresses_the_address_across_campaigns(store, clinic, client, tmp_path):
    folder = tmp_path / "second"
    folder.mkdir()
    for path in Path(clinic.origin).iterdir():
        (folder / path.name).write_text(path.read_text())
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text().replace("name: ketamine-and-sleep", "name: sleep-tips", 1))
    first = first_delivery(store, enroll_pat(store, clinic))
    other = first_delivery(store, enroll_pat(store, load_folder(folder)))
    set_status(store, first.id, "sent")

    answer = post(client, [event("bounce", first.id, email="Pat@Example.com", type="bounce")])

    assert answer.status_code == 200
    with store.connect() as conn:
        held = conn.execute(select(suppressions.c.address_hash, suppressions.c.reason)).all()
        pending = conn.execute(
            select(deliveries.c.status).where(
                deliveries.c.enrollment_id.in_([first.enrollment_id, other.enrollment_id]),
                deliveries.c.id != first.id,
            )
        ).scalars()
        assert set(pending) == {"cancelled"}
    assert held == [(store.address_hash("pat@example.com"), "bounced_hard")]
    assert campaign_stats(store, "ketamine-and-sleep").steps[0].counts.bounced == 1
    # Signing up again to either campaign enrolls nothing.
    again = enroll(
        store,
        load_folder(folder),
        Signup("pat@example.com", "Pat", "UTC", None, "form"),
        now=NOW,
    )
    assert again.suppressed == 1


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("dropped", "rejected"),
        ("spamreport", "complained"),
        ("unsubscribe", "unsubscribed"),
        ("group_unsubscribe", "unsubscribed"),
    ],
)
def test_other_suppressing_events(store, clinic, client, name, kind):
    enroll_pat(store, clinic)
    post(client, [event(name)])
    with store.connect() as conn:
        assert conn.execute(select(suppressions.c.reason)).scalars().all() == [kind]


def test_a_blocked_bounce_does_not_suppress(store, clinic, client):
    # SendGrid marks temporary refusals (often about our IP, not the address) "blocked".
    enroll_pat(store, clinic)
    post(client, [event("bounce", type="blocked")])
    with store.connect() as conn:
        assert conn.execute(select(suppressions)).all() == []


def test_a_dropped_unknown_delivery_becomes_failed(store, clinic, client):
    delivery = first_delivery(store, enroll_pat(store, clinic))
    set_status(store, delivery.id, "unknown")
    post(client, [event("dropped", delivery.id, reason="Bounced Address")])
    settled = first_delivery(store, delivery.enrollment_id)
    assert (settled.status, settled.error) == ("failed", "rejected by sendgrid: Bounced Address")


@pytest.mark.sqlite_only
def test_no_address_is_stored(store, client):
    answer = post(
        client, [event("bounce", email="stranger.danger@example.org"), event("open", email="x")]
    )
    assert answer.json()["stored"] == 2
    with store.connect() as conn:
        assert conn.execute(select(suppressions.c.reason)).scalars().all() == ["bounced_hard"]
    store.close()
    for path in Path(store.path).parent.glob(Path(store.path).name + "*"):
        assert b"stranger.danger" not in path.read_bytes()


def rejected(store, client, body: bytes, headers: dict[str, str], status: int) -> None:
    before = snapshot(store)
    answer = client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert snapshot(store) == before


def test_a_flipped_byte_is_refused_and_changes_nothing(store, clinic, client):
    enroll_pat(store, clinic)
    body = json.dumps([event("bounce")]).encode()
    headers = signed(body)
    flipped = body.replace(b"pat@", b"pet@")
    rejected(store, client, flipped, headers, 403)


def test_a_signature_by_another_key_is_refused(store, clinic, client):
    enroll_pat(store, clinic)
    other, _ = keypair()
    body = json.dumps([event("bounce")]).encode()
    rejected(store, client, body, signed(body, key=other), 403)


@pytest.mark.parametrize(
    "missing",
    ["X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"],
)
def test_a_missing_header_is_refused(store, clinic, client, missing):
    enroll_pat(store, clinic)
    body = json.dumps([event("bounce")]).encode()
    headers = signed(body)
    del headers[missing]
    rejected(store, client, body, headers, 401)


@pytest.mark.parametrize(
    ("offset", "status"),
    [(timedelta(minutes=-20), 403), (timedelta(minutes=6), 403), (timedelta(minutes=-9), 200)],
)
def test_the_signature_timestamp_must_be_recent(store, clinic, client, offset, status):
    enroll_pat(store, clinic)
    body = json.dumps([event("bounce")]).encode()
    headers = signed(body, at=CLOCK + offset)
    if status == 200:
        assert client.post("/webhooks/sendgrid", content=body, headers=headers).status_code == 200
    else:
        rejected(store, client, body, headers, status)


def test_a_garbage_signature_or_timestamp_is_refused(store, clinic, client):
    body = json.dumps([event("bounce")]).encode()
    headers = signed(body)
    rejected(
        store,
        client,
        body,
        {**headers, "X-Twilio-Email-Event-Webhook-Signature": "not base64!"},
        403,
    )
    rejected(
        store, client, body, {**headers, "X-Twilio-Email-Event-Webhook-Timestamp": "soon"}, 400
    )


def test_a_signed_body_that_is_not_an_event_list_is_refused(store, client):
    for body in (b"{not json", b'{"event": "open"}'):
        rejected(store, client, body, signed(body), 400)


def test_a_signed_body_nested_100000_levels_deep_is_400_and_changes_nothing(store, clinic, client):
    enroll_pat(store, clinic)
    deep = b"[" * 100_000 + b"]" * 100_000
    # Deep inside a real event too, and nested objects: all refused before parsing.
    inside = json.dumps([event("bounce")]).encode()[:-1] + b"," + deep + b"]"
    objects = b'[{"a":' * 50_000 + b"1" + b"}]" * 50_000
    for body in (deep, inside, objects):
        rejected(store, client, body, signed(body), 400)


def test_signed_events_with_values_no_database_holds_are_never_a_500(store, clinic, client):
    enrollment = enroll_pat(store, clinic)
    delivery = first_delivery(store, enrollment)
    # An id past INTEGER is not one of ours: the event is stored unlinked.
    huge = event("open", n=1)
    huge["delivery_id"] = 10**30
    answer = post(client, [huge])
    assert answer.status_code == 200 and answer.json()["stored"] == 1, answer.text
    # A NUL, which PostgreSQL cannot store: stored (SQLite), or the whole batch refused
    # with 400 and nothing kept, never a 500.
    batch = [event("bounce", delivery.id, n=2), event("open", delivery.id, n=3)]
    batch[1]["sg_event_id"] = "evt\x00nul"
    body = json.dumps(batch).encode()
    before = snapshot(store)
    answer = client.post("/webhooks/sendgrid", content=body, headers=signed(body))
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 400:
        assert snapshot(store) == before


def test_without_the_public_key_the_endpoint_answers_503(store):
    with app_client(store, environ={}) as client:
        body = json.dumps([event("bounce")]).encode()
        rejected(store, client, body, signed(body), 503)


def test_an_oversized_body_is_refused_before_it_is_read(store):
    with app_client(store, max_webhook_body=1024) as client:
        body = json.dumps([event("open", n=i) for i in range(50)]).encode()
        rejected(store, client, body, signed(body), 413)

        def chunks():  # no Content-Length: refused as soon as the limit is passed
            yield body[:800]
            yield body[800:]

        before = snapshot(store)
        headers = signed(body)
        answer = client.post("/webhooks/sendgrid", content=chunks(), headers=headers)
        assert answer.status_code == 413
        assert snapshot(store) == before


def test_a_pem_block_pasted_as_the_key_works(store, clinic):
    pem = PRIVATE.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with app_client(store, environ={"SENDGRID_WEBHOOK_PUBLIC_KEY": pem.decode()}) as client:
        assert post(client, [event("open")]).status_code == 200
