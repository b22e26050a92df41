"""Per-delivery return paths (VERP): `bounces+<id>-<signature>@domain`, and reading them back.

A bounce goes to the message's envelope sender (RFC 5321 section 4.5.5), so a return
path that names the delivery tells `dripmail mailbox read` which email bounced without
trusting anything else in the bounce. The tag is the delivery id and a keyed signature
of it (HMAC-SHA256 under a key derived from the installation's secret), so nobody can
write a bounce address that names someone else's delivery.

The tag is lower-case letters, digits and one `-`: mail systems may fold the case of a
local part, and `+` is the delimiter Postfix, Exim and Dovecot use for sub-addresses
(`recipient_delimiter = +`), so `bounces+...@` reaches the `bounces` mailbox. An RFC 5321
local part is at most 64 octets; the tag takes at most 28 of them.
"""

from __future__ import annotations

import base64
import hmac
import re

from campaigns.authoring.spec import Campaign

LABEL = b"dripmail.return-path.v1"
_SIGNATURE_BYTES = 10  # 80 bits: not to be guessed, short enough for a local part
TAG_MAX = 10 + 1 + 16 + 1  # "+", up to 10 digits, "-", 16 base32 characters
MAX_ID = 2**31 - 1  # delivery ids are INTEGER columns
_TAG = re.compile(r"\+([0-9]{1,10})-([a-z2-7]{16})@", re.IGNORECASE)


def configured(campaign: Campaign) -> str | None:
    """The campaign's `sender.return_path` (SMTP only), or None: bounces go to From."""
    return getattr(campaign.spec.sender, "return_path", None)


class ReturnPaths:
    """Makes and reads VERP return paths under the installation's secret key."""

    def __init__(self, secret_key: str) -> None:
        self._key = hmac.digest(secret_key.encode(), LABEL, "sha256")

    def _signature(self, delivery_id: int) -> str:
        digest = hmac.digest(self._key, str(delivery_id).encode(), "sha256")
        return base64.b32encode(digest[:_SIGNATURE_BYTES]).decode().lower()

    def address(self, return_path: str, delivery_id: int) -> str:
        """`local+<id>-<signature>@domain` for the configured `local@domain`."""
        local, _, domain = return_path.rpartition("@")
        return f"{local}+{delivery_id}-{self._signature(delivery_id)}@{domain}"

    def delivery_id(self, address: str) -> int | None:
        """The delivery a VERP address names, when its signature verifies; else None."""
        found = _TAG.search(address)
        if found is None:
            return None
        delivery_id = int(found.group(1))
        if not 0 < delivery_id <= MAX_ID:
            return None
        expected = self._signature(delivery_id)
        if not hmac.compare_digest(expected, found.group(2).lower()):
            return None
        return delivery_id
