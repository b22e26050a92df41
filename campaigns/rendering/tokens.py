"""Signed unsubscribe and preference links (itsdangerous), built on the public URL."""

from __future__ import annotations

import hmac
import json
import time
import zlib
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, int_to_bytes

from campaigns import boundedjson

PLACEHOLDER_PUBLIC_URL = "https://unsubscribe.example.invalid"
UNSUBSCRIBE_SALT = "dripmail.unsubscribe.v1"
CONFIRM_SALT = "dripmail.confirm.v1"  # a purpose of its own: neither token passes for the other
MAX_AGE_SECONDS = 400 * 24 * 3600  # over a year: CAN-SPAM asks 30 days at the least
_WORTH_COMPRESSING = 64  # bytes of JSON
# A token is ~200 characters (a 19-digit id, a 63-character campaign name, a delivery
# id). The cap also bounds what a compressed payload can inflate to (zlib: ~1000:1).
MAX_TOKEN_LENGTH = 1024
MAX_ID = 2**31 - 1  # ids are INTEGER columns: a larger one would fail in PostgreSQL


@dataclass(frozen=True)
class UnsubscribeClaim:
    """Who a link unsubscribes, from what, and which email it came in."""

    contact_id: int
    campaign: str
    delivery_id: int | None


class TokenError(ValueError):
    """A token that is tampered with, foreign, or too old."""


def public_url(configured: str | None, campaign_public_url: str | None) -> str | None:
    """`configured` (DRIPMAIL_PUBLIC_URL, Settings.public_url), else the campaign's
    links.public_url, else None."""
    url = configured or campaign_public_url
    return url.rstrip("/") if url else None


class _BoundedJSON:
    """itsdangerous's payload serializer, parsing through `boundedjson` (depth-capped)."""

    @staticmethod
    def loads(payload: str | bytes) -> Any:
        return boundedjson.loads(payload, what="token")

    @staticmethod
    def dumps(obj: Any, **_kwargs: Any) -> str:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _id(value: Any) -> int:
    """A stored id from a payload: an int (never a bool), in the database's range."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID:
        return value
    raise TokenError("not a valid unsubscribe link")


def claim_from_payload(payload: Any) -> UnsubscribeClaim:
    """The claim a signed payload makes, or TokenError when its shape is not ours: a
    valid signature over `["x", 1, {}]` (a leaked key, a bug) is refused, not trusted."""
    if not isinstance(payload, list) or len(payload) != 3:
        raise TokenError("not a valid unsubscribe link")
    contact_id, campaign, delivery_id = payload
    if not isinstance(campaign, str) or not 0 < len(campaign) <= 64:
        raise TokenError("not a valid unsubscribe link")
    delivery = None if delivery_id is None else _id(delivery_id)
    return UnsubscribeClaim(_id(contact_id), campaign, delivery)


class Signer:
    """Makes and reads unsubscribe tokens under the installation's secret key."""

    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeTimedSerializer(
            secret_key, salt=UNSUBSCRIBE_SALT, serializer=_BoundedJSON
        )
        self._key = self._serializer.make_signer().derive_key()

    def token(self, claim: UnsubscribeClaim, *, issued_at: int | None = None) -> str:
        """What URLSafeTimedSerializer.dumps makes, in a fraction of its time.

        A worker signs one token per email: itsdangerous derives the key and builds a
        signer object per call (~18 µs); this keeps the derived key. Same format, so
        `read` (itsdangerous) accepts it, as it accepts every link already sent.
        """
        payload = json.dumps(
            [claim.contact_id, claim.campaign, claim.delivery_id],
            separators=(",", ":"),
            ensure_ascii=False,  # as itsdangerous's compact JSON
        ).encode()
        # itsdangerous compresses when that saves two bytes, marked by a leading ".". A
        # short payload rarely gains (zlib adds 6 bytes of framing) and setting up zlib's
        # window costs more than the rest of the token: it is left as it is (`read`
        # takes either form).
        compressed = zlib.compress(payload) if len(payload) >= _WORTH_COMPRESSING else payload
        if len(compressed) < len(payload) - 1:
            value = b"." + base64_encode(compressed)
        else:
            value = base64_encode(payload)
        stamp = int(time.time()) if issued_at is None else issued_at
        value += b"." + base64_encode(int_to_bytes(stamp))
        signature = hmac.digest(self._key, value, "sha1")  # itsdangerous's default digest
        return (value + b"." + base64_encode(signature)).decode("ascii")

    def read(self, token: str) -> UnsubscribeClaim:
        """The claim of a token we signed, or TokenError (tampered, foreign, too old,
        too long, or a signed payload that is not a claim)."""
        return claim_from_payload(_signed_payload(self._serializer, token, "unsubscribe"))


def _signed_payload(serializer: URLSafeTimedSerializer, token: str, kind: str) -> Any:
    """The payload of a token `serializer` signed, or TokenError naming the `kind` of link."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError(f"not a valid {kind} link")
    try:
        # BadData covers a bad signature, an expired one, and a payload that does
        # not decompress or parse (BadPayload, which is not a BadSignature).
        return serializer.loads(token, max_age=MAX_AGE_SECONDS)
    except (BadData, ValueError, TypeError) as exc:
        raise TokenError(f"not a valid {kind} link") from exc


@dataclass(frozen=True)
class ConfirmClaim:
    """The one request a confirm link was made for: the row, its contact, its campaign,
    and its round (`requested_at` in microseconds since the epoch; planning/
    confirmations.round_of). A row id alone is not enough: SQLite gives a deleted row's
    id to the next sign-up, and a new round of the same contact reuses its row."""

    confirmation_id: int
    contact_id: int
    campaign: str
    round: int


class ConfirmSigner:
    """Makes and reads double opt-in links (`/c/<token>`): a ConfirmClaim, signed.

    How long the link is good for is the request's own `expires_at` (the campaign's
    `confirm_within`), checked where it is confirmed; the signature's age is capped
    only at MAX_AGE_SECONDS, like the unsubscribe links.
    """

    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeTimedSerializer(
            secret_key, salt=CONFIRM_SALT, serializer=_BoundedJSON
        )

    def token(self, claim: ConfirmClaim) -> str:
        return self._serializer.dumps(
            ["c", claim.confirmation_id, claim.contact_id, claim.campaign, claim.round]
        )

    def read(self, token: str) -> ConfirmClaim:
        """The claim of a token we signed, or TokenError."""
        payload = _signed_payload(self._serializer, token, "confirmation")
        if not isinstance(payload, list) or len(payload) != 5 or payload[0] != "c":
            raise TokenError("not a valid confirmation link")
        _, confirmation_id, contact_id, campaign, round_ = payload
        if not isinstance(campaign, str) or not 0 < len(campaign) <= 64:
            raise TokenError("not a valid confirmation link")
        if not isinstance(round_, int) or isinstance(round_, bool) or round_ < 0:
            raise TokenError("not a valid confirmation link")
        try:
            return ConfirmClaim(_id(confirmation_id), _id(contact_id), campaign, round_)
        except TokenError:
            raise TokenError("not a valid confirmation link") from None


@dataclass(frozen=True)
class ContactLinks:
    """The per-contact URLs a rendered email carries."""

    unsubscribe_url: str
    unsubscribe_mailto: str
    preferences_url: str


def contact_links(base_url: str, token: str, mailbox: str) -> ContactLinks:
    return ContactLinks(
        unsubscribe_url=f"{base_url}/u/{token}",
        # A token is URL-safe base64 and dots: only the space needs quoting.
        unsubscribe_mailto=f"mailto:{mailbox}?subject=unsubscribe%20{token}",
        preferences_url=f"{base_url}/p/{token}",
    )
