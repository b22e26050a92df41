"""The double opt-in confirmation email: short, one button, the campaign's brand.

It goes through the same layout and pipeline as every step (rendering/compile.py: MJML,
premailer, the text part, the footer with the unsubscribe link and postal address, the
List-Unsubscribe headers), as a one-email campaign whose one step is written here, in
dripmail's own words from the gettext catalogs, so it speaks the patient's language.
It says nothing about health: only the organisation's name (a mistyped address must
not tell a stranger what the clinic treats). The button's link is the patient's signed
confirm URL (`/c/<token>`), put in place of a fixed marker after personalising: it is
dripmail's own value, never template source. Compiled once per campaign version and
language.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime

import templates
from campaigns.authoring.languages import choose_language
from campaigns.authoring.spec import Campaign, Step
from campaigns.authoring.translations import campaign_languages, in_language
from campaigns.planning.schedule import parse_delay
from campaigns.rendering.catalogs import N_, translations
from campaigns.rendering.compile import compile_step
from campaigns.rendering.discreet import discreet_name
from campaigns.rendering.palette import checked_palette
from campaigns.rendering.personalise import CompiledCampaign, Recipient
from campaigns.rendering.tokens import ContactLinks
from senders.base import Message

STEP_KEY = "confirm"
STEP_FILE = "confirm.md"
MARKER = "https://confirm.dripmail.invalid/link"  # replaced by the patient's confirm URL

SUBJECT = N_("Please confirm your email for %(organisation)s")
PREHEADER = N_("One click, and your emails from %(organisation)s begin.")
BODY = N_(
    "You (or someone using your address) asked to get emails from %(organisation)s. "
    "Please confirm that this is your address."
)
IGNORE = N_(
    "If it was not you, ignore this email: nothing more will be sent, "
    "and the request expires by itself."
)
BUTTON = N_("Confirm my email")

_cache: dict[tuple[str, str, str, bool], CompiledCampaign] = {}
_lock = threading.Lock()


def _markdown_text(text: str) -> str:
    """An organisation's name as Markdown text: its punctuation shown, not read as markup."""
    return "".join("\\" + char if char in "\\`*_{}[]<>()#+-.!|~" else char for char in text)


def confirmation_campaign(campaign: Campaign, language: str, *, discreet: bool = False) -> Campaign:
    """`campaign` as a one-email campaign whose email is the confirmation, in `language`.

    `discreet` (the campaign's `privacy: discreet`, or the patient's own choice): the
    subject and preheader name the organisation as discreet emails' From does
    (rendering/discreet.py: "Balanced", not "Balanced Ketamine"); the body is unchanged.
    """
    spoken = in_language(campaign, language) if language != campaign.spec.language else campaign
    spec = spoken.spec
    words = translations(spec.language)
    organisation = spec.brand.organisation
    shown = discreet_name(spec) if discreet else organisation  # on the lock screen
    named = {"organisation": _markdown_text(organisation)}
    step = Step(
        key=STEP_KEY,
        file=STEP_FILE,
        delay=parse_delay("0d"),
        position=1,
        subject=words.gettext(SUBJECT) % {"organisation": shown},
        preheader=words.gettext(PREHEADER) % {"organisation": shown},
        cta=words.gettext(BUTTON),
        body=words.gettext(BODY) % named + "\n\n" + words.gettext(IGNORE) + "\n",
        body_line=1,
    )
    links = spec.links.model_copy(update={"cta_url": MARKER})
    return Campaign(
        spec=spec.model_copy(update={"links": links, "teaser": False}),
        steps=(step,),
        files={"campaign.yaml": spoken.files.get("campaign.yaml", ""), STEP_FILE: step.body},
        origin=spoken.origin,
        closed=spoken.closed,
    )


def compiled_confirmation(
    campaign: Campaign, language: str | None, *, discreet: bool = False
) -> CompiledCampaign:
    """The confirmation email of `campaign` for a contact reading `language` (and who
    chose discreet emails, or not), compiled once."""
    spec = campaign.spec
    chosen = choose_language(language, campaign_languages(spec), spec.language)
    discreet = discreet or spec.discreet
    key = (campaign.version, chosen, templates.digest(), discreet)
    with _lock:
        found = _cache.get(key)
    if found is None:
        one = confirmation_campaign(campaign, chosen, discreet=discreet)
        step = compile_step(one, one.steps[0], checked_palette(one))
        found = CompiledCampaign(one, {STEP_KEY: step}, discreet=discreet)
        with _lock:
            _cache[key] = found
            while len(_cache) > 64:
                _cache.pop(next(iter(_cache)))
    return found


def confirmation_message(
    campaign: Campaign,
    recipient: Recipient,
    links: ContactLinks,
    *,
    confirm_url: str,
    message_id: str,
    date: datetime | None,
) -> Message:
    """The patient's confirmation email, its button linking to `confirm_url`."""
    compiled = compiled_confirmation(campaign, recipient.language, discreet=recipient.discreet)
    message = compiled.message(
        STEP_KEY,
        replace(recipient, language=None, discreet=False),  # both chosen above
        delivery_id=message_id,
        unsubscribe_url=links.unsubscribe_url,
        unsubscribe_mailto=links.unsubscribe_mailto,
        preferences_url=links.preferences_url,
        date=date,
        batch_form=False,  # the link is put in after personalising: no shared body
    )
    return replace(
        message,
        html=message.html.replace(MARKER, confirm_url),
        text=message.text.replace(MARKER, confirm_url),
    )
