"""SES events through SNS against the real app (`dripmail serve`), on both databases.

Messages are signed the way SNS signs them, with a self-signed certificate the app's
injected fetcher serves (tests/sns_signer.py), so nothing leaves this machine.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select
from starlette.testclient import TestClient

from campaigns.authoring.spec import load_folder
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.reporting.stats import campaign_stats
from campaigns.storage.tables import deliveries, events, suppressions
from campaigns.web.app import create_app
from tests.sns_signer import CERT_URL, REGION, TOPIC, SnsSigner
from tests.test_webhooks import CLOCK, NOW, enroll_pat, first_delivery, set_status, snapshot
from tests.unit.test_ses_events import MESSAGE_ID, record

ENVIRON = {"DRIPMAIL_SES_TOPIC_ARNS": f"arn:aws:sns:{REGION}:123456789012:other, {TOPIC}"}


@pytest.fixture
def signer() -> SnsSigner:
    return SnsSigner(now=CLOCK)


def app_client(store, signer: SnsSigner, environ=None) -> TestClient:
    app = create_app(store, clock=lambda: CLOCK, environ=ENVIRON if environ is None else environ)
    app.state.sns_fetch = signer.fetch
    return TestClient(app, base_url="https://mail.clinic.test")


@pytest.fixture
def client(store, signer):
    with app_client(store, signer) as c:
        yield c


def post(client, message: dict, **headers: str):
    return client.post(
        "/webhooks/ses",
        content=json.dumps(message).encode(),
        headers={
            "Content-Type": "text/plain; charset=UTF-8",  # as SNS sends it
            "x-amz-sns-message-type": message.get("Type", ""),
            **headers,
        },
    )


def event_for(name: str, delivery_id: int | None, address: str = "pat@example.com") -> dict:
    """A documented SES record, for our delivery and the given address."""
    data = record(name)
    data["mail"]["tags"]["delivery_id"] = [str(delivery_id)] if delivery_id else []
    data["mail"]["destination"] = [address]
    for key in ("bounce", "complaint"):
        for recipient in (data.get(key) or {}).get(f"{key}edRecipients", []) + (
            data.get(key) or {}
        ).get("complainedRecipients", []):
            recipient["emailAddress"] = address
    return data


def second_campaign(clinic, tmp_path: Path):
    folder = tmp_path / "second"
    folder.mkdir()
    for path in Path(clinic.origin).iterdir():
        (folder / path.name).write_text(path.read_text())
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text().replace("name: ketamine-and-sleep", "name: sleep-tips", 1))
    return load_folder(folder)


def pending_of(store, *enrollment_ids: int, leaving_out: int) -> set[str]:
    with store.connect() as conn:
        return set(
            conn.execute(
                select(deliveries.c.status).where(
                    deliveries.c.enrollment_id.in_(enrollment_ids), deliveries.c.id != leaving_out
                )
            ).scalars()
        )


@pytest.mark.parametrize(
    ("name", "reason"), [("bounce_permanent", "bounced_hard"), ("complaint", "complained")]
)
def test_a_signed_bounce_or_complaint_suppresses_across_campaigns(
    store, clinic, client, tmp_path, signer, name, reason
):
    first = first_delivery(store, enroll_pat(store, clinic))
    other = first_delivery(store, enroll_pat(store, second_campaign(clinic, tmp_path)))
    set_status(store, first.id, "sent")

    answer = post(client, signer.notification(event_for(name, first.id, "Pat@Example.com")))

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"stored": 1, "duplicates": 0}
    assert pending_of(store, first.enrollment_id, other.enrollment_id, leaving_out=first.id) == {
        "cancelled"
    }
    with store.connect() as conn:
        held = conn.execute(select(suppressions.c.address_hash, suppressions.c.reason)).all()
        stored = conn.execute(select(events.c.provider, events.c.type, events.c.delivery_id)).all()
    assert held == [(store.address_hash("pat@example.com"), reason)]
    assert stored == [("ses", reason, first.id)]
    again = enroll(store, clinic, Signup("pat@example.com", "Pat", "UTC", None, "form"), now=NOW)
    assert again.suppressed == 1
    assert signer.fetched == [CERT_URL]


def test_a_soft_bounce_and_a_delay_keep_the_address(store, clinic, client, signer):
    delivery = first_delivery(store, enroll_pat(store, clinic))
    set_status(store, delivery.id, "sent")
    for name in ("bounce_transient", "delivery_delay"):
        assert post(client, signer.notification(event_for(name, delivery.id))).status_code == 200
    with store.connect() as conn:
        assert conn.execute(select(suppressions)).all() == []
        kinds = sorted(conn.execute(select(events.c.type)).scalars())
    assert kinds == ["bounced_soft", "deferred"]


def test_a_delivered_event_settles_an_unknown_delivery(store, clinic, client, signer):
    delivery = first_delivery(store, enroll_pat(store, clinic))
    set_status(store, delivery.id, "unknown")  # its answer was lost after sending

    answer = post(client, signer.notification(event_for("delivery", delivery.id), version="2"))

    assert answer.status_code == 200
    settled = first_delivery(store, delivery.enrollment_id)
    assert (settled.status, settled.provider_message_id) == ("sent", MESSAGE_ID)
    assert campaign_stats(store, "ketamine-and-sleep").steps[0].counts.delivered == 1


def test_a_reject_fails_an_unknown_delivery_without_suppressing(store, clinic, client, signer):
    delivery = first_delivery(store, enroll_pat(store, clinic))
    set_status(store, delivery.id, "unknown")
    post(client, signer.notification(event_for("reject", delivery.id)))
    settled = first_delivery(store, delivery.enrollment_id)
    assert (settled.status, settled.error) == ("failed", "rejected by ses: Bad content")
    with store.connect() as conn:
        assert conn.execute(select(suppressions)).all() == []


def test_the_same_message_twice_counts_once(store, clinic, client, signer):
    delivery = first_delivery(store, enroll_pat(store, clinic))
    set_status(store, delivery.id, "sent")
    message = signer.notification(event_for("open", delivery.id))
    assert post(client, message).json() == {"stored": 1, "duplicates": 0}
    before = snapshot(store)
    assert post(client, message).json() == {"stored": 0, "duplicates": 1}  # SNS retries
    assert snapshot(store) == before
    with store.connect() as conn:
        assert conn.execute(select(events.c.type)).scalars().all() == ["opened"]


def refused(store, client, message, status: int, **headers: str) -> dict:
    before = snapshot(store)
    answer = post(client, message, **headers)
    assert answer.status_code == status, answer.text
    assert snapshot(store) == before
    return answer.json()


def test_a_forged_message_changes_nothing(store, clinic, client, signer):
    enroll_pat(store, clinic)
    bounce = event_for("bounce_permanent", None)
    genuine = signer.notification(bounce)
    # The signed text changed after signing: another address to suppress.
    bounce["bounce"]["bouncedRecipients"][0]["emailAddress"] = "victim@example.com"
    forged = {**genuine, "Message": json.dumps(bounce)}
    assert "does not match" in refused(store, client, forged, 403)["error"]
    # Signed with a key that is not the certificate's.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert "does not match" in refused(store, client, signer.sign(genuine, key=other), 403)["error"]
    # A certificate somewhere else than SNS: never fetched.
    elsewhere = signer.notification(bounce, SigningCertURL="https://evil.example/cert.pem")
    refused(store, client, elsewhere, 403)
    assert "https://evil.example/cert.pem" not in signer.fetched


def test_a_stale_or_foreign_topic_message_changes_nothing(store, clinic, client, signer):
    enroll_pat(store, clinic)
    bounce = event_for("bounce_permanent", None)
    stale = signer.notification(bounce, at=CLOCK - timedelta(hours=2))
    assert "too old" in refused(store, client, stale, 403)["error"]
    foreign = signer.notification(bounce, topic=f"arn:aws:sns:{REGION}:999999999999:evil")
    assert "DRIPMAIL_SES_TOPIC_ARNS" in refused(store, client, foreign, 403)["error"]


def test_malformed_bodies_are_400(store, client, signer):
    for body in (b"{not json", b"[]", b"[" * 100_000 + b"]" * 100_000):
        before = snapshot(store)
        answer = client.post("/webhooks/ses", content=body)
        assert answer.status_code == 400, answer.text
        assert snapshot(store) == before
    message = signer.notification(record("send"))
    refused(store, client, message, 400, **{"x-amz-sns-message-type": "SubscriptionConfirmation"})


def test_a_signed_notification_that_is_no_ses_event_is_acknowledged_and_ignored(
    store, client, signer
):
    before = snapshot(store)
    answer = post(client, signer.notification("just a test message from the SNS console"))
    assert answer.status_code == 200 and answer.json()["ignored"] == 1
    assert snapshot(store) == before


def test_a_subscription_is_confirmed_through_snss_own_url_only(store, client, signer):
    answer = post(client, signer.subscription())
    assert answer.status_code == 200 and answer.json() == {"confirmed": True}
    assert signer.fetched[-1].startswith(f"https://sns.{REGION}.amazonaws.com/?Action=Confirm")

    signer.fetched.clear()
    evil = f"https://evil.example/?Action=ConfirmSubscription&TopicArn={TOPIC}"
    assert post(client, signer.subscription(subscribe_url=evil)).status_code == 403
    foreign = signer.subscription(topic=f"arn:aws:sns:{REGION}:999999999999:evil")
    assert post(client, foreign).status_code == 403
    assert not any("evil" in url for url in signer.fetched)


def test_without_configured_topics_the_endpoint_answers_503(store, signer):
    with app_client(store, signer, environ={}) as client:
        refused(store, client, signer.notification(record("send")), 503)
    assert signer.fetched == []


def test_an_oversized_body_is_413(store, client):
    answer = client.post("/webhooks/ses", content=b" " * (1024 * 1024 + 1))
    assert answer.status_code == 413
