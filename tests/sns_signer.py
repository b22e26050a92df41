"""A stand-in for Amazon SNS's signing, for tests that must run offline.

It makes its own CA-less, self-signed RSA certificate, signs messages as SNS does
(the canonical string of "Verifying the signatures of Amazon SNS messages",
https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html,
SHA1withRSA for SignatureVersion 1, SHA256withRSA for 2) and serves that certificate
through a fetcher the app is given in place of an HTTPS GET. The fetcher records every
URL it is asked for, so a test can tell that a refused URL was never fetched.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from campaigns.web.sns import string_to_sign

REGION = "eu-west-1"
TOPIC = f"arn:aws:sns:{REGION}:123456789012:dripmail-ses-events"
CERT_URL = (
    f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem"
)


def certificate(key: rsa.RSAPrivateKey, *, now: datetime, days: int = 365) -> bytes:
    """A self-signed PEM certificate for `key`, valid from a day before `now`."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"sns.{REGION}.amazonaws.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class SnsSigner:
    """Signs SNS messages with its own key; `fetch` serves its certificate."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    cert_url: str = CERT_URL
    fetched: list[str] = field(default_factory=list)
    served: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.served.setdefault(self.cert_url, certificate(self.key, now=self.now))

    def fetch(self, url: str) -> bytes:
        """The app's fetcher: the certificate (or a SubscribeURL's answer), recorded."""
        self.fetched.append(url)
        if url in self.served:
            return self.served[url]
        if "Action=ConfirmSubscription" in url:
            return b"<ConfirmSubscriptionResponse/>"
        raise AssertionError(f"the app fetched an unexpected URL: {url}")

    def sign(
        self, message: dict[str, Any], *, version: str = "1", key: Any = None
    ) -> dict[str, Any]:
        """`message` with SignatureVersion, SigningCertURL and Signature set."""
        signed = {**message, "SignatureVersion": version}
        signed.setdefault("SigningCertURL", self.cert_url)
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = (key or self.key).sign(string_to_sign(signed), padding.PKCS1v15(), algorithm)
        signed["Signature"] = base64.b64encode(signature).decode()
        return signed

    def notification(
        self,
        record: Any,
        *,
        at: datetime | None = None,
        topic: str = TOPIC,
        message_id: str | None = None,
        version: str = "1",
        **extra: Any,
    ) -> dict[str, Any]:
        """A signed Notification carrying `record` (an SES event) as its Message."""
        message = {
            "Type": "Notification",
            "MessageId": message_id or str(uuid.uuid4()),
            "TopicArn": topic,
            "Message": record if isinstance(record, str) else json.dumps(record),
            "Timestamp": _iso(at or self.now),
            "UnsubscribeURL": f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe"
            f"&SubscriptionArn={topic}:c7fe3a54-ab0e-4ec2-88e0-db410a0f2bee",
            **extra,
        }
        return self.sign(message, version=version)

    def subscription(
        self, *, topic: str = TOPIC, subscribe_url: str | None = None, at: datetime | None = None
    ) -> dict[str, Any]:
        """A signed SubscriptionConfirmation for `topic`."""
        token = "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a7"
        message = {
            "Type": "SubscriptionConfirmation",
            "MessageId": str(uuid.uuid4()),
            "Token": token,
            "TopicArn": topic,
            "Message": f"You have chosen to subscribe to the topic {topic}.\n"
            "To confirm the subscription, visit the SubscribeURL included in this message.",
            "SubscribeURL": subscribe_url
            or f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription"
            f"&TopicArn={topic}&Token={token}",
            "Timestamp": _iso(at or self.now),
        }
        return self.sign(message)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
