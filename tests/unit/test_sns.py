"""SNS message checks, offline: a self-signed certificate stands in for SNS's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from campaigns.web.sns import SnsVerifier, sns_url, string_to_sign
from campaigns.web.webhooks import WebhookRejected
from tests.sns_signer import CERT_URL, REGION, TOPIC, SnsSigner, certificate

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def signer() -> SnsSigner:
    return SnsSigner(now=NOW)


def verify(signer: SnsSigner, message, *, topics=frozenset({TOPIC}), now=NOW, verifier=None):
    signer.fetched.clear()
    return (verifier or SnsVerifier(topics)).verify(message, now=now, fetch=signer.fetch)


def refused(signer: SnsSigner, message, status: int = 403, **options) -> str:
    with pytest.raises(WebhookRejected) as raised:
        verify(signer, message, **options)
    assert raised.value.status == status, raised.value.message
    return raised.value.message


def test_the_string_to_sign_is_awss_canonical_form():
    message = {
        "Type": "Notification",
        "MessageId": "id-1",
        "TopicArn": TOPIC,
        "Message": 'line one\nline "two"',
        "Timestamp": "2026-03-10T15:00:00.000Z",
        "Subject": "hello",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }
    assert string_to_sign(message) == (
        b'Message\nline one\nline "two"\nMessageId\nid-1\nSubject\nhello\n'
        b"Timestamp\n2026-03-10T15:00:00.000Z\nTopicArn\n"
        + TOPIC.encode()
        + b"\nType\nNotification\n"
    )
    del message["Subject"]  # "Subject (if present)"
    assert b"Subject" not in string_to_sign(message)


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_message_signed_by_sns_is_believed(signer, version):
    message = signer.notification({"eventType": "Send"}, version=version, Subject="s")
    assert verify(signer, message) == message
    assert signer.fetched == [CERT_URL]


def test_the_certificate_is_fetched_once_then_cached(signer):
    verifier = SnsVerifier(frozenset({TOPIC}))
    signer.fetched.clear()
    for _ in range(3):
        verifier.verify(signer.notification({"eventType": "Send"}), now=NOW, fetch=signer.fetch)
    assert signer.fetched == [CERT_URL]


def test_a_subscription_confirmation_is_verified_with_its_own_fields(signer):
    message = signer.subscription()
    assert verify(signer, message)["Type"] == "SubscriptionConfirmation"
    tampered = {**message, "SubscribeURL": message["SubscribeURL"] + "x"}
    assert "does not match" in refused(signer, tampered)


@pytest.mark.parametrize(
    "change",
    [
        {"Message": json.dumps({"eventType": "Bounce"})},
        {"MessageId": "another"},
        {"Timestamp": "2026-03-10T14:59:59.000Z"},
        {"Type": "SubscriptionConfirmation", "SubscribeURL": "x", "Token": "t"},
        {"Signature": "bm90IGEgc2lnbmF0dXJl"},
        {"Signature": "%%% not base64"},
        {"SignatureVersion": "2"},
    ],
)
def test_a_changed_message_is_refused(signer, change):
    message = {**signer.notification({"eventType": "Send"}), **change}
    assert "does not match" in refused(signer, message)


def test_a_message_signed_with_another_key_is_refused(signer):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = signer.sign({**signer.notification({"eventType": "Send"})}, key=other)
    assert "does not match" in refused(signer, forged)


def test_a_topic_not_configured_is_refused_before_anything_is_fetched(signer):
    stranger = f"arn:aws:sns:{REGION}:999999999999:someone-else"
    message = signer.notification({"eventType": "Send"}, topic=stranger)
    assert "DRIPMAIL_SES_TOPIC_ARNS" in refused(signer, message)
    assert signer.fetched == []


@pytest.mark.parametrize(
    ("at", "words"),
    [(NOW - timedelta(hours=1, seconds=1), "too old"), (NOW + timedelta(minutes=6), "future")],
)
def test_stale_and_future_messages_are_refused(signer, at, words):
    assert words in refused(signer, signer.notification({"eventType": "Send"}, at=at))
    assert signer.fetched == []


@pytest.mark.parametrize(
    "url",
    [
        f"http://sns.{REGION}.amazonaws.com/SimpleNotificationService-1.pem",
        f"https://sns.{REGION}.amazonaws.com.evil.example/SimpleNotificationService-1.pem",
        f"https://evil.example/sns.{REGION}.amazonaws.com/SimpleNotificationService-1.pem",
        f"https://sns.{REGION}.amazonaws.com@evil.example/SimpleNotificationService-1.pem",
        f"https://evil.example\\@sns.{REGION}.amazonaws.com/SimpleNotificationService-1.pem",
        f"https://sns.{REGION}.amazonaws.com:8443/SimpleNotificationService-1.pem",
        f"https://sns.{REGION}.amazonaws.com/../../evil/SimpleNotificationService-1.pem",
        f"https://sns.{REGION}.amazonaws.com/%2e%2e/SimpleNotificationService-1.pem",
        f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-1.pem?x=https://evil",
        f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-1.pem#frag",
        f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-1.txt",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",  # another region
        "https://sqs.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem",
        f"https://SNS.{REGION}.AMAZONAWS.COM/SimpleNotificationService-1.pem",
        "file:///etc/passwd",
        "",
    ],
)
def test_a_certificate_url_that_is_not_snss_is_never_fetched(signer, url):
    message = signer.notification({"eventType": "Send"}, SigningCertURL=url)
    refused(signer, message)
    assert signer.fetched == []


def test_snss_own_url_shapes_are_accepted():
    assert sns_url(CERT_URL, REGION) == CERT_URL
    china = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-a1.pem"
    assert sns_url(china, "cn-north-1") == china
    subscribe = f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}"
    assert sns_url(subscribe, REGION, query=True) == subscribe


def test_an_expired_certificate_is_refused(signer):
    old = SnsSigner(now=NOW - timedelta(days=800))  # its certificate ran out long ago
    message = old.notification({"eventType": "Send"}, at=NOW)
    with pytest.raises(WebhookRejected, match="not valid now"):
        SnsVerifier(frozenset({TOPIC})).verify(message, now=NOW, fetch=old.fetch)


def test_a_fetched_answer_that_is_no_certificate_is_refused(signer):
    liar = SnsSigner(now=NOW, served={CERT_URL: b"<html>not a certificate</html>"})
    with pytest.raises(WebhookRejected, match="certificate"):
        SnsVerifier(frozenset({TOPIC})).verify(
            liar.notification({"eventType": "Send"}), now=NOW, fetch=liar.fetch
        )


@pytest.mark.parametrize(
    "message",
    [
        [],
        {"Type": "Notification"},
        {"Type": "Something", "MessageId": "x"},
    ],
)
def test_a_body_that_is_no_sns_message_is_malformed(signer, message):
    refused(signer, message, status=400)


def test_a_subscribe_url_must_be_snss_and_confirm_this_topic(signer):
    verifier = SnsVerifier(frozenset({TOPIC}))
    good = signer.subscription()
    assert verifier.subscribe_url(good) == good["SubscribeURL"]
    for url in (
        "https://evil.example/?Action=ConfirmSubscription&TopicArn=" + TOPIC,
        f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe&TopicArn={TOPIC}",
        f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:x",
        f"http://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}",
    ):
        with pytest.raises(WebhookRejected):
            verifier.subscribe_url({**good, "SubscribeURL": url})


def test_the_self_signed_certificate_is_what_the_verifier_reads():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert b"BEGIN CERTIFICATE" in certificate(key, now=NOW)
