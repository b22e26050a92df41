"""Signed unsubscribe and preference links (itsdangerous), built on the public URL."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeTimedSerializer

PUBLIC_URL_ENV = "DRIPMAIL_PUBLIC_URL"
PLACEHOLDER_PUBLIC_URL = "https://unsubscribe.example.invalid"
UNSUBSCRIBE_SALT = "dripmail.unsubscribe.v1"
MAX_AGE_SECONDS = 400 * 24 * 3600  # over a year: CAN-SPAM asks 30 days at the least


@dataclass(frozen=True)
class UnsubscribeClaim:
    """Who a link unsubscribes, from what, and which email it came in."""

    contact_id: int
    campaign: str
    delivery_id: int | None


class TokenError(ValueError):
    """A token that is tampered with, foreign, or too old."""


def public_url(campaign_public_url: str | None = None) -> str | None:
    """DRIPMAIL_PUBLIC_URL, else the campaign's links.public_url, else None."""
    url = os.environ.get(PUBLIC_URL_ENV) or campaign_public_url
    return url.rstrip("/") if url else None


class Signer:
    """Makes and reads unsubscribe tokens under the installation's secret key."""

    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt=UNSUBSCRIBE_SALT)

    def token(self, claim: UnsubscribeClaim) -> str:
        return self._serializer.dumps([claim.contact_id, claim.campaign, claim.delivery_id])

    def read(self, token: str) -> UnsubscribeClaim:
        try:
            contact_id, campaign, delivery_id = self._serializer.loads(
                token, max_age=MAX_AGE_SECONDS
            )
        except (BadSignature, ValueError, TypeError) as exc:
            raise TokenError("not a valid unsubscribe link") from exc
        return UnsubscribeClaim(int(contact_id), str(campaign), delivery_id)


@dataclass(frozen=True)
class ContactLinks:
    """The per-contact URLs a rendered email carries."""

    unsubscribe_url: str
    unsubscribe_mailto: str
    preferences_url: str


def contact_links(base_url: str, token: str, mailbox: str) -> ContactLinks:
    return ContactLinks(
        unsubscribe_url=f"{base_url}/u/{token}",
        unsubscribe_mailto=f"mailto:{mailbox}?subject={quote('unsubscribe ' + token)}",
        preferences_url=f"{base_url}/p/{token}",
    )
