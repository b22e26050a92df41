"""A contact's links and the Message that carries them, one recipe for every caller.

Dispatch, `send-test`, the checks and the review export (`dripmail render`) all build a
step's email this way, so what a reviewer sees is what a contact gets: links on the
public URL, an unsubscribe mailto to the campaign's mailbox, the list headers. The
public URL's own rule (https, or http on a loopback address) is here too.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import urlsplit

from campaigns.authoring.spec import Campaign
from campaigns.errors import ConfigurationError
from campaigns.rendering.personalise import CompiledCampaign, Recipient
from campaigns.rendering.tokens import (
    PLACEHOLDER_PUBLIC_URL,
    ContactLinks,
    contact_links,
    public_url,
)
from campaigns.settings import PUBLIC_URL_ENV
from senders.addresses import AddressError, wire_address
from senders.base import Message, is_loopback


def check_public_url(url: str | None, *, name: str = PUBLIC_URL_ENV) -> None:
    """Unsubscribe links must be https; plain http is accepted only for a loopback address."""
    if not url:
        return
    parts = urlsplit(url.strip())
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return
    raise ConfigurationError(
        f"{name} must be an https address where `dripmail serve` is reachable "
        f"(plain http only for a loopback address such as http://127.0.0.1:8025); got {url!r}"
    )


def sample_links(public_url: str | None = None) -> tuple[str, str]:
    """(unsubscribe_url, preferences_url) for previews; real signed tokens come from elsewhere."""
    base = (public_url or PLACEHOLDER_PUBLIC_URL).rstrip("/")
    return f"{base}/u/sample-token", f"{base}/p/sample-token"


@dataclass(frozen=True)
class LinkBase:
    """What the links of every email of a campaign share (worked out once, not per email)."""

    url: str  # the public URL the links are built on, without a trailing slash
    mailbox: str  # where a mailto unsubscribe goes

    @classmethod
    def of(cls, campaign: Campaign, configured: str | None) -> LinkBase:
        """On `configured` (DRIPMAIL_PUBLIC_URL), else links.public_url, else the placeholder;
        the mailbox is links.unsubscribe_mailto, else reply_to, else the From address."""
        spec = campaign.spec
        mailbox = spec.links.unsubscribe_mailto or spec.reply_to or spec.from_.address
        with contextlib.suppress(AddressError):
            # List-Unsubscribe is written as ASCII (senders/mime.py): an internationalised
            # domain goes in the mailto as its A-label, as it does in From and Reply-To.
            mailbox = wire_address(mailbox)[0]
        return cls(public_url(configured, spec.links.public_url) or PLACEHOLDER_PUBLIC_URL, mailbox)

    def signed(self, token: str) -> ContactLinks:
        """One contact's links, carrying their signed unsubscribe token."""
        return contact_links(self.url, token, self.mailbox)

    def sample(self) -> ContactLinks:
        """Links for previews: a sample token, and a mailto that only asks to unsubscribe."""
        unsubscribe_url, preferences_url = sample_links(self.url)
        return ContactLinks(
            unsubscribe_url=unsubscribe_url,
            unsubscribe_mailto=f"mailto:{self.mailbox}?subject=unsubscribe",
            preferences_url=preferences_url,
        )


def contact_message(
    compiled: CompiledCampaign,
    step_key: str,
    recipient: Recipient,
    links: ContactLinks,
    *,
    delivery_id: str,
    date: datetime | None,
    is_test: bool = False,
    batch_form: bool = True,
    return_path: str | None = None,
    variant: str | None = None,
) -> Message:
    """The step personalised for `recipient`, with `links` in its body and list headers,
    and `return_path` (a VERP address, rendering/verp.py) as its envelope sender."""
    message = compiled.message(
        step_key,
        recipient,
        delivery_id=delivery_id,
        unsubscribe_url=links.unsubscribe_url,
        unsubscribe_mailto=links.unsubscribe_mailto,
        preferences_url=links.preferences_url,
        date=date,
        is_test=is_test,
        batch_form=batch_form,
        variant=variant,
    )
    return replace(message, return_path=return_path) if return_path else message
