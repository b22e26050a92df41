"""`dripmail send-test`: one rendered step to a staff address, marked as a test."""

from __future__ import annotations

import secrets
from datetime import datetime

from campaigns.authoring.spec import Campaign
from campaigns.delivery.sender_pool import SenderPool
from campaigns.errors import InputError, NotFoundError
from campaigns.planning.contacts import normalise_email
from campaigns.rendering.compile import compile_campaign
from campaigns.rendering.links import LinkBase, contact_message
from campaigns.rendering.personalise import Recipient
from campaigns.rendering.tokens import Signer, UnsubscribeClaim
from campaigns.storage.store import Store
from senders.base import SendResult


def send_test(
    store: Store,
    campaign: Campaign,
    step_key: str,
    to: str,
    *,
    sender: str | None,
    now: datetime,
    language: str | None = None,
    variant: str | None = None,
) -> SendResult:
    """Send one rendered step to a staff address, marked as a test; no delivery is recorded.

    In `language` as a contact reading it would get it (the default when the campaign
    lacks it). A step with A/B variants goes as `variant` (default: its first, as the
    studio shows).
    """
    try:
        address = normalise_email(to)
    except ValueError as exc:
        raise InputError(str(exc), field="--to") from None
    compiled = compile_campaign(campaign)
    if step_key not in compiled.steps:
        keys = ", ".join(compiled.steps)
        raise NotFoundError(f"no step {step_key!r} in {campaign.name} (steps: {keys})")
    variants = list(compiled.variants.get(step_key, {}))
    if variant is not None and variant not in variants:
        names = ", ".join(variants) or "none"
        raise NotFoundError(f"step {step_key!r} has no variant {variant!r} (variants: {names})")
    variant = variant or (variants[0] if variants else None)
    token = Signer(store.secret_key()).token(UnsubscribeClaim(0, campaign.name, None))
    message = contact_message(
        compiled,
        step_key,
        Recipient(address, "Test", campaign.spec.timezone, language=language),
        LinkBase.of(campaign, store.settings.public_url).signed(token),
        delivery_id=f"test-{secrets.token_hex(6)}",
        date=now,
        is_test=True,
        variant=variant,
    )
    pool = SenderPool(sender, store.settings)
    try:
        (result,) = pool(campaign).send([message])
    finally:
        pool.close()
    return result
