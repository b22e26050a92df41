"""Amazon SNS messages checked before anything is believed: topic, age, signature.

SNS signs each message it posts to an HTTPS subscriber with the private key of a
certificate it serves from `SigningCertURL`. As AWS's "Verifying the signatures of
Amazon SNS messages" asks
(https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html):

- the string to sign is "Name\\nvalue\\n" for Message, MessageId, Subject (if present),
  Timestamp, TopicArn and Type of a Notification; Message, MessageId, SubscribeURL,
  Timestamp, Token, TopicArn and Type of a (Un)SubscriptionConfirmation;
- SignatureVersion 1 signs it with SHA1withRSA, 2 with SHA256withRSA; `Signature` is
  base64;
- the certificate is fetched over HTTPS from SNS itself: only
  `https://sns.<region>.amazonaws.com/<name>.pem` (`.amazonaws.com.cn` in China), in the
  topic's own region, is ever fetched. Any other scheme, host, port, user part, query
  or path trick is refused before a connection is made, and redirects are not followed.
  Certificates are cached by URL (SNS rotates them rarely); the fetcher is injectable
  so tests run offline;
- the TopicArn must be one the installation subscribed (DRIPMAIL_SES_TOPIC_ARNS),
  checked before any certificate is fetched, so a stranger cannot make us fetch.

A message older than MAX_AGE (by its signed Timestamp, on the real clock) is refused:
a captured message replayed later is refused even though its signature is good. SNS
retries a failed HTTP delivery with the same Timestamp, within a minute under the
default delivery policy.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from campaigns.web.webhooks import WebhookRejected

Fetch = Callable[[str], bytes]

MAX_AGE = timedelta(hours=1)
MAX_AHEAD = timedelta(minutes=5)  # clock skew between SNS and us
MAX_CERTIFICATE = 64 * 1024  # a PEM certificate is about 2 KB
CACHE_SIZE = 16
FETCH_TIMEOUT = 5.0
TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
# The signed fields of each message type, in the order they are signed.
_CONFIRMATION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION,
    "UnsubscribeConfirmation": _CONFIRMATION,
}
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
_REGION = r"[a-z]{2}(?:-[a-z]+){1,2}-[0-9]{1,2}"
_SNS_HOST = re.compile(rf"sns\.({_REGION})\.amazonaws\.com(?:\.cn)?")
_CERT_PATH = re.compile(r"/[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*(?:\.[A-Za-z0-9_-]+)*\.pem")
_TOPIC = re.compile(rf"arn:aws(?:-cn|-us-gov)?:sns:({_REGION}):[0-9]{{12}}:[A-Za-z0-9_-]{{1,256}}")


def topic_region(arn: str) -> str | None:
    """The region of an SNS topic ARN (arn:aws:sns:eu-west-1:123456789012:name)."""
    match = _TOPIC.fullmatch(arn)
    return match.group(1) if match else None


def sns_url(url: Any, region: str | None, *, query: bool = False) -> str:
    """`url` when it is SNS's own HTTPS address in `region`; else WebhookRejected (403).

    Only the exact shape is accepted, so no parser difference (a user part, a
    backslash, an encoded character, a port) can point the fetch elsewhere.
    `query`: the URL may carry a query (a SubscribeURL does; a certificate's does not).
    """
    text = url if isinstance(url, str) else ""
    # No encoded character before the query (a SubscribeURL's query may encode its ARN).
    if (
        not text.isascii()
        or re.search(r"[\s\\@]", text)
        or "%" in text.partition("?")[0]
        or len(text) > 2048
    ):
        raise WebhookRejected(403, "the SNS URL is not an https://sns.<region>.amazonaws.com/ URL")
    parts = urlsplit(text)
    host = _SNS_HOST.fullmatch(parts.netloc)
    path_ok = _CERT_PATH.fullmatch(parts.path) if not query else parts.path == "/"
    if (
        parts.scheme != "https"
        or host is None
        or not path_ok
        or parts.fragment
        or (bool(parts.query) != query)
        or parts.username is not None
    ):
        raise WebhookRejected(403, "the SNS URL is not an https://sns.<region>.amazonaws.com/ URL")
    if region is not None and host.group(1) != region:
        raise WebhookRejected(403, "the SNS URL is not in the topic's region")
    return text


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The canonical string SNS signs for this message type (see the module docstring)."""
    lines = []
    for name in _SIGNED[message["Type"]]:
        value = message.get(name)
        if value is None and name == "Subject":
            continue  # "Subject (if present)"
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode("utf-8")


def fetch_https(url: str) -> bytes:
    """GET `url` (already checked by sns_url) without following redirects, size-capped."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None  # a redirect could lead anywhere: refuse it

    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=FETCH_TIMEOUT) as response:
            if response.status != 200:
                raise OSError(f"HTTP {response.status}")
            data = response.read(MAX_CERTIFICATE + 1)
    except (OSError, urllib.error.URLError) as exc:
        raise WebhookRejected(502, f"could not fetch from SNS ({type(exc).__name__})") from None
    if len(data) > MAX_CERTIFICATE:
        raise WebhookRejected(502, "SNS answered more than a certificate")
    return data


class SnsVerifier:
    """Checks SNS messages for the configured topics; caches certificates by URL."""

    def __init__(self, topics: frozenset[str], *, max_age: timedelta = MAX_AGE) -> None:
        self.topics = topics
        self.max_age = max_age
        self._keys: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, message: Any, *, now: datetime, fetch: Fetch) -> Mapping[str, Any]:
        """The message if SNS signed it, for a configured topic, recently; else raise
        WebhookRejected (400 malformed, 403 not believed)."""
        if not isinstance(message, Mapping) or message.get("Type") not in TYPES:
            raise WebhookRejected(400, "the body is not an SNS message")
        names = (*_SIGNED[message["Type"]], "Signature", "SignatureVersion", "SigningCertURL")
        for name in names:
            value = message.get(name)
            if not (isinstance(value, str) or (name == "Subject" and value is None)):
                raise WebhookRejected(400, f"the SNS message has no {name}")
        topic = message["TopicArn"]
        region = topic_region(topic)
        if topic not in self.topics or region is None:
            raise WebhookRejected(403, "the SNS topic is not one of DRIPMAIL_SES_TOPIC_ARNS")
        signed_at = _timestamp(message["Timestamp"])
        if signed_at < now - self.max_age:
            raise WebhookRejected(403, "the SNS message is too old")
        if signed_at > now + MAX_AHEAD:
            raise WebhookRejected(403, "the SNS message is dated in the future")
        algorithm = _HASHES.get(message["SignatureVersion"])
        if algorithm is None:
            raise WebhookRejected(403, "unknown SNS SignatureVersion")
        key = self._key(sns_url(message["SigningCertURL"], region), now=now, fetch=fetch)
        try:
            signature = base64.b64decode(message["Signature"], validate=True)
            key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
        except (binascii.Error, ValueError, InvalidSignature):
            raise WebhookRejected(403, "the SNS signature does not match the message") from None
        return message

    def subscribe_url(self, message: Mapping[str, Any]) -> str:
        """A verified SubscriptionConfirmation's SubscribeURL, if it is SNS's own and
        confirms this very topic (else WebhookRejected)."""
        url = sns_url(message.get("SubscribeURL"), topic_region(message["TopicArn"]), query=True)
        query = parse_qs(urlsplit(url).query)
        if query.get("Action") != ["ConfirmSubscription"] or query.get("TopicArn") != [
            message["TopicArn"]
        ]:
            raise WebhookRejected(403, "the SubscribeURL does not confirm this topic")
        return url

    def _key(self, url: str, *, now: datetime, fetch: Fetch) -> rsa.RSAPublicKey:
        """The public key of the certificate at `url`: cached, else fetched and checked."""
        with self._lock:
            certificate = self._keys.get(url)
            if certificate is not None:
                self._keys.move_to_end(url)
        if certificate is None:
            try:
                certificate = x509.load_pem_x509_certificate(fetch(url))
            except ValueError:
                raise WebhookRejected(403, "SNS's signing certificate is not one") from None
            if not isinstance(certificate.public_key(), rsa.RSAPublicKey):
                raise WebhookRejected(403, "SNS's signing certificate has no RSA key")
            with self._lock:
                self._keys[url] = certificate
                while len(self._keys) > CACHE_SIZE:
                    self._keys.popitem(last=False)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise WebhookRejected(403, "SNS's signing certificate is not valid now")
        return cast(rsa.RSAPublicKey, certificate.public_key())  # checked when it was cached


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise WebhookRejected(400, "the SNS Timestamp is not a time") from None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
