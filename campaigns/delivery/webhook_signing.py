"""Standard Webhooks signing: endpoint secrets (`whsec_…`) and the `webhook-*` headers.

The scheme (https://www.standardwebhooks.com, "Signature scheme"): the signed content is
`{webhook-id}.{webhook-timestamp}.{body}`, the key the secret's base64 after `whsec_`,
decoded; the signature HMAC-SHA256 in standard base64, sent as `v1,<signature>`. The
timestamp is integer Unix seconds of the attempt (receivers refuse old ones), the id
the message's own (the same on every retry, so receivers de-duplicate by it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for 24 to 64 random bytes


def new_secret() -> str:
    """A fresh endpoint secret, `whsec_<base64 of 32 random bytes>`."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret: its base64 part, decoded."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: `v1,<base64 HMAC-SHA256>`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header of one attempt of a message."""
    return {
        "content-type": "application/json",
        "user-agent": "dripmail-webhooks",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }
