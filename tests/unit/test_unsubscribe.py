"""Unsubscribe tokens and links, and the public URL rule: no app, no database."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from campaigns.errors import ConfigurationError
from campaigns.rendering.links import check_public_url
from campaigns.rendering.tokens import UNSUBSCRIBE_SALT, Signer, UnsubscribeClaim, contact_links


@pytest.mark.parametrize(
    "url", ["https://mail.clinic.example", "http://127.0.0.1:8025", "http://localhost:8025", None]
)
def test_public_url_https_or_loopback_http_is_accepted(url):
    check_public_url(url)


@pytest.mark.parametrize("url", ["http://mail.clinic.example", "ftp://x.example", "mail.example"])
def test_public_url_plain_http_elsewhere_is_refused(url):
    with pytest.raises(ConfigurationError, match="must be an https address"):
        check_public_url(url)


def test_token_lifetime_is_at_least_a_year():
    from campaigns.rendering.tokens import MAX_AGE_SECONDS

    assert timedelta(seconds=MAX_AGE_SECONDS) >= timedelta(days=366)


class _SignedAt(TimestampSigner):
    def get_timestamp(self) -> int:
        return 1_772_000_000


@pytest.mark.parametrize(
    "claim",
    [
        UnsubscribeClaim(7, "ketamine-and-sleep", 1234),
        UnsubscribeClaim(0, "sleep", None),
        # The largest id and name a claim holds: long enough that itsdangerous compresses it.
        UnsubscribeClaim(2**31 - 1, "a" * 64, 99),
        UnsubscribeClaim(5, "schlaf-über", 1),
    ],
)
def test_tokens_are_byte_for_byte_what_itsdangerous_makes(claim):
    """Byte for byte where itsdangerous would not compress, or the payload is long."""
    reference = URLSafeTimedSerializer("k" * 40, salt=UNSUBSCRIBE_SALT, signer=_SignedAt)
    expected = reference.dumps([claim.contact_id, claim.campaign, claim.delivery_id])
    token = Signer("k" * 40).token(claim, issued_at=1_772_000_000)
    assert token == expected
    assert Signer("k" * 40).read(Signer("k" * 40).token(claim)) == claim


def test_a_short_repetitive_claim_is_read_back():
    claim = UnsubscribeClaim(1, "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", 1)
    signer = Signer("k" * 40)
    assert signer.read(signer.token(claim)) == claim


def test_the_mailto_link_asks_for_unsubscribe_and_the_token():
    token = Signer("k" * 40).token(UnsubscribeClaim(7, "ketamine-and-sleep", 1234))
    links = contact_links("https://mail.clinic.test", token, "care@clinic.test")
    query = parse_qs(urlsplit(links.unsubscribe_mailto).query)
    assert query == {"subject": [f"unsubscribe {token}"]}
    assert links.unsubscribe_url == f"https://mail.clinic.test/u/{token}"
