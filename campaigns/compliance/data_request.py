"""A patient's own data requests from the preference centre: "send me my data", "erase me".

"Send me my data" mails the `contacts export` JSON (compliance/privacy.py) to the
contact's address as an attachment, through the sender of the campaign the link came
from, at most once per UTC day per contact: the request is an event (provider
"dripmail", type `data_export`) whose key names the contact and the day, so a second
request that day, from any link or any `serve` process, finds it and is refused. A
sender that refuses the email (not one that may have sent it) removes the record, so the
patient can ask again. "Erase me" runs `contacts forget` for the link's contact once
they have confirmed (web/preference_pages.py asks), then records the erasure as an
event, which holds ids only.
"""

from __future__ import annotations

import enum
import html
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from campaigns.authoring.languages import choose_language
from campaigns.authoring.spec import Campaign
from campaigns.authoring.translations import campaign_languages, in_language
from campaigns.compliance.preferences import contact_of, record_choice
from campaigns.compliance.privacy import export_contact, forget_contact
from campaigns.compliance.suppressions import DRIPMAIL_PROVIDER, delivery_of, insert_new
from campaigns.errors import DripmailError
from campaigns.rendering.catalogs import N_, translations
from campaigns.rendering.tokens import UnsubscribeClaim
from campaigns.storage.publish import load_version
from campaigns.storage.store import Store
from campaigns.storage.tables import events
from senders.addresses import wire_address
from senders.base import Attachment, Message, Outcome, Sender

log = logging.getLogger("dripmail.privacy")

DATA_EXPORT = "data_export"  # the event of a data email sent (or under way)
ERASED = "erasure"  # the event of a patient's own erasure
FILENAME = "my-data.json"

SUBJECT = N_("Your data from %(organisation)s")
BODY = N_(
    "You asked for a copy of everything %(organisation)s holds about you. It is "
    "attached to this email as a JSON file (%(filename)s)."
)
NOT_YOU = N_("If you did not ask for it, you can ignore this email: nothing has changed.")

SenderFor = Callable[[Campaign], Sender]


class DataSent(enum.StrEnum):
    """What became of a "send me my data" request."""

    SENT = "sent"  # handed to the sender (or it may have gone: not sent again today)
    ALREADY = "already"  # one went today already: refused
    FAILED = "failed"  # the sender refused it; the patient may ask again
    NOBODY = "nobody"  # the link names no contact we hold (erased, or a test send)


@dataclass(frozen=True)
class DataRequest:
    outcome: DataSent
    event_id: int | None = None


def export_key(contact_id: int, now: datetime) -> str:
    """The event key of a contact's data email on `now`'s UTC day: one per day."""
    return f"dripmail:{DATA_EXPORT}:{contact_id}:{now.date().isoformat()}"


def sent_today(store: Store, contact_id: int, *, now: datetime) -> bool:
    """Whether the contact's data went to them on `now`'s UTC day."""
    with store.connect() as conn:
        key = export_key(contact_id, now)
        return conn.scalar(select(events.c.id).where(events.c.provider_event_id == key)) is not None


def send_my_data(
    store: Store, claim: UnsubscribeClaim, sender_for: SenderFor, *, now: datetime
) -> DataRequest:
    """Mail the contact their `contacts export` JSON, once per UTC day."""
    key = export_key(claim.contact_id, now)
    with store.begin() as conn:
        contact = contact_of(conn, claim)
        if contact is None:
            return DataRequest(DataSent.NOBODY)
        values = {
            "provider": DRIPMAIL_PROVIDER,
            "provider_event_id": key,
            "delivery_id": delivery_of(conn, claim),
            "type": DATA_EXPORT,
            "occurred_at": now,
            "created_at": now,
            "campaign": claim.campaign,
        }
        if not insert_new(conn, events, values):
            return DataRequest(DataSent.ALREADY)
        event_id = conn.scalar(select(events.c.id).where(events.c.provider_event_id == key))
        campaign = load_version(conn, claim.campaign)
        address, language = contact.email, contact.language
    data = export_contact(store, address)
    message = data_message(campaign, address, language, data, event_id=event_id, now=now)
    try:
        (result,) = sender_for(campaign).send([message])
        outcome = result.outcome
    except DripmailError:  # a sender without settings, a refused connection
        outcome = Outcome.TRANSIENT
    if outcome in (Outcome.SENT, Outcome.AMBIGUOUS):
        log.info("data export: contact %d, sent (event %d)", claim.contact_id, event_id)
        return DataRequest(DataSent.SENT, event_id)
    with store.begin() as conn:  # never went: the patient may ask again today
        conn.execute(delete(events).where(events.c.id == event_id))
    # Not the sender's words: a provider's refusal may quote the address.
    log.warning("data export: contact %d, not sent (%s)", claim.contact_id, outcome)
    return DataRequest(DataSent.FAILED)


def data_message(
    campaign: Campaign,
    address: str,
    language: str | None,
    data: dict,
    *,
    event_id: int,
    now: datetime,
) -> Message:
    """The email carrying the export, in the contact's language, from the campaign's
    address under the organisation's name (never a series title with a health term)."""
    spec = campaign.spec
    tag = choose_language(language, campaign_languages(spec), spec.language)
    spoken = in_language(campaign, tag).spec
    text_of = translations(tag).gettext
    organisation = spec.brand.organisation or spoken.from_.name
    subject = text_of(SUBJECT) % {"organisation": organisation}
    body = text_of(BODY) % {"organisation": organisation, "filename": FILENAME}
    not_you = text_of(NOT_YOU)
    domain = wire_address(spec.from_.address)[0].rpartition("@")[2]
    payload = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True).encode()
    return Message(
        delivery_id=f"export-{event_id}",
        from_name=organisation,
        from_address=spec.from_.address,
        to_address=address,
        to_name=None,
        subject=subject,
        preheader=None,
        html=f'<html lang="{html.escape(tag)}"><body><p>{html.escape(body)}</p>'
        f"<p>{html.escape(not_you)}</p></body></html>",
        text=f"{body}\n\n{not_you}\n",
        reply_to=spec.reply_to,
        headers={"Message-ID": f"<dripmail.export-{event_id}@{domain}>"},
        date=now,
        attachments=(Attachment(FILENAME, "application/json", payload),),
    )


def erase_me(store: Store, claim: UnsubscribeClaim, *, now: datetime) -> bool:
    """`contacts forget` for the link's contact; False when there was nobody to erase."""
    with store.connect() as conn:
        contact = contact_of(conn, claim)
    if contact is None:
        return False
    forget_contact(store, contact.email, now=now)
    with store.begin() as conn:
        record_choice(conn, claim, ERASED, now=now)
    return True
