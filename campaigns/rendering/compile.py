"""Compile a campaign's steps once per version (cached by campaign version + layout hash).

    step Markdown -> HTML (markdown-it) -> templates/email.mjml.j2 -> MJML -> mjml-python
    -> premailer (CSS inlined, @media kept) -> a Jinja template that still holds the
    per-contact placeholders; the same step -> templates/email.txt.j2 -> a text template.

Placeholders are swapped for opaque tokens on the way in and put back after premailer
(see campaigns.rendering.placeholders); each step is rendered once at compile time, so
a broken placeholder is an error now, not per contact.
"""

from __future__ import annotations

import gettext
import logging
import re
import threading
from collections import OrderedDict
from functools import cache
from pathlib import Path
from typing import Any

import cssutils
import mjml
import premailer
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

import templates
from campaigns.authoring.sources import step_file
from campaigns.authoring.spec import CAMPAIGN_FILE, DEFAULT_GREETING, Campaign, Step
from campaigns.authoring.translations import campaign_languages, in_language
from campaigns.authoring.variant_spec import variant_step
from campaigns.errors import InputError
from campaigns.planning.schedule import Delay
from campaigns.rendering.batch import step_batch
from campaigns.rendering.catalogs import N_, translations
from campaigns.rendering.discreet import PREVIEW_PADDING, discreet_name, discreet_step
from campaigns.rendering.links import sample_links
from campaigns.rendering.markdown import (
    greets,
    markdown_html,
    markdown_text,
    with_greeting,
    with_heading,
)
from campaigns.rendering.palette import Palette, checked_palette
from campaigns.rendering.personalise import (
    SAMPLE,
    CompiledCampaign,
    CompiledStep,
    Recipient,
    Rendered,
    step_source,
)
from campaigns.rendering.placeholders import (
    PlaceholderTokens,
    check_staff_text,
    contact_environment,
)
from campaigns.rendering.tokens import PLACEHOLDER_PUBLIC_URL

__all__ = [
    "clear_cache",
    "compile_campaign",
    "compile_step",
    "compiled_variants",
    "layout_environment",
    "render_sample",
    "teaser_line",
    "until_next",
]

FONT_STACK = "-apple-system, BlinkMacSystemFont, Segoe UI, Helvetica, Arial, sans-serif"
_DOCTYPE = "<!doctype html>\n"

log = logging.getLogger("dripmail.render")

# cssutils reports every Outlook-only property (mso-*) MJML writes as an error.
cssutils.log.setLevel(logging.CRITICAL)

# The layout's default greeting (spec.DEFAULT_GREETING), marked for `pybabel extract`:
# a campaign that keeps it gets it in each of its languages.
DEFAULT_GREETING_MESSAGE = N_('Hi {{ first_name | default("there") }},')

_URL_ATTRIBUTE = re.compile(r'((?:href|src)=")([^"]*)(")')


@cache
def layout_environment(language: str = "en") -> Environment:
    """The compile-time Jinja environment for templates/ (autoescape on except *.txt.j2),
    its `{% trans %}` text from `language`'s gettext catalog (rendering/catalogs.py)."""
    env = Environment(
        loader=FileSystemLoader(templates.DIRECTORY),
        autoescape=lambda name: name is not None and not name.endswith(".txt.j2"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    return env


def _inline_css(html: str) -> str:
    """premailer with no network, media queries and classes kept, and the doctype put back."""
    inlined = premailer.transform(
        html,
        allow_network=False,
        keep_style_tags=True,  # the @media rule that stacks columns lives in a style tag
        remove_classes=False,  # ... and targets MJML's column classes
        strip_important=False,  # MJML's media rules need their !important
        disable_validation=True,
        # premailer copies CSS width/height onto attributes and overwrites the pixel
        # width MJML gave an image (Outlook sizes images by it) with "100%".
        disable_basic_attributes=["width", "height"],
        cssutils_logging_level=logging.CRITICAL,
    )
    # premailer serialises through lxml and drops the doctype (standards mode needs it).
    if not inlined.lstrip().lower().startswith("<!doctype"):
        inlined = _DOCTYPE + inlined
    return inlined.rstrip() + "\n"


def _short_lines(html: str, limit: int = 500) -> str:
    """Break long lines at a space between attributes, where a newline means the same.

    premailer writes the body on one line of many kilobytes; with lines under 998
    characters (RFC 5322 2.1.1) and ASCII only, the part needs no transfer encoding.
    """
    lines = []
    for line in html.split("\n"):
        if len(line) <= limit:
            lines.append(line)
            continue
        out: list[str] = []
        since, in_tag, quote = 0, False, ""
        for char in line:
            if quote:
                quote = "" if char == quote else quote
            elif in_tag:
                if char in "\"'":
                    quote = char
                elif char == ">":
                    in_tag = False
                elif char == " " and since >= limit:
                    out.append("\n")
                    since = 0
                    continue
            elif char == "<":
                in_tag = True
            out.append(char)
            since += 1
        lines.append("".join(out))
    return "\n".join(lines)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def until_next(
    current: Delay, following: Delay, words: gettext.NullTranslations | None = None
) -> str:
    """When the next email comes, in words: `tomorrow`, `in 2 days`, `in 1 week`, `in 6 hours`.

    Days and weeks keep the contact's local time of day, so they are counted in days;
    otherwise as elapsed time. The send window may move either email a little: the
    words say what the campaign file says. `words` translates them (default: English).
    """
    words = words or gettext.NullTranslations()
    _ = words.gettext
    if current.is_calendar and following.is_calendar:
        days = (following.as_timedelta() - current.as_timedelta()).days
        if days <= 0:
            return _("later today")
        if days == 1:
            return _("tomorrow")
        if days % 7 == 0:
            return words.ngettext("in %(num)d week", "in %(num)d weeks", days // 7) % {
                "num": days // 7
            }
        return words.ngettext("in %(num)d day", "in %(num)d days", days) % {"num": days}
    minutes = int((following.as_timedelta() - current.as_timedelta()).total_seconds() // 60)
    if minutes <= 0:
        return _("shortly")
    if minutes % 1440 == 0:
        count = minutes // 1440
        if count == 1:
            return _("tomorrow")
        return words.ngettext("in %(num)d day", "in %(num)d days", count) % {"num": count}
    if minutes % 60 == 0:
        count = minutes // 60
        return words.ngettext("in %(num)d hour", "in %(num)d hours", count) % {"num": count}
    return words.ngettext("in %(num)d minute", "in %(num)d minutes", minutes) % {"num": minutes}


def teaser_line(campaign: Campaign, step: Step) -> str | None:
    """`Next, in 2 days: What About Physical Health?`, or None for the last email.

    In the campaign's language (a translated campaign's is its own: authoring/translations.py).
    """
    if not campaign.spec.teaser or step.position >= len(campaign.steps):
        return None
    following = campaign.steps[step.position]  # positions are 1-based
    words = translations(campaign.spec.language)
    when = until_next(step.delay, following.delay, words)
    return words.gettext("Next, %(when)s: %(subject)s") % {
        "when": when,
        "subject": following.subject,
    }


def _greeted(body: str, campaign: Campaign, step: Step, tokens: PlaceholderTokens) -> str:
    """`body` (protected Markdown) with the campaign's greeting, unless the step has its own."""
    greeting = campaign.spec.greeting
    if not greeting or greets(step.body):
        return body
    if greeting == DEFAULT_GREETING:  # the layout's own line: in the campaign's language
        greeting = translations(campaign.spec.language).gettext(DEFAULT_GREETING_MESSAGE)
    try:
        check_staff_text(greeting, "greeting", tokens, campaign, step)
    except InputError as exc:  # the greeting is campaign.yaml's, not the step file's
        source = str(Path(campaign.origin) / CAMPAIGN_FILE) if campaign.origin else CAMPAIGN_FILE
        raise InputError(exc.message, source=source, field="greeting") from None
    return with_greeting(body, tokens.protect(greeting))


def _layout_values(
    campaign: Campaign, step: Step, tokens: PlaceholderTokens, colours: Palette, discreet: bool
) -> dict[str, Any]:
    """What the layouts get: brand values as text, staff text and per-contact values as tokens."""
    spec = campaign.spec
    brand, links = spec.brand, spec.links
    return {
        # A discreet email (rendering/discreet.py): its preview line padded, and its text
        # part opening with the discreet name and the neutral preheader.
        "discreet": discreet,
        "discreet_name": discreet_name(spec),
        "preview_padding": Markup(PREVIEW_PADDING),
        "language": spec.language,
        "subject": tokens.protect(step.subject),
        "preheader": tokens.protect(step.preheader) if step.preheader else None,
        "organisation": brand.organisation,
        "logo_url": brand.logo_url,
        "website": links.website,
        "position": step.position,
        "total": len(campaign.steps),
        "cta_label": tokens.protect(step.cta) if step.cta else None,
        "cta_url": links.cta_url,
        "teaser": tokens.protect(teaser) if (teaser := teaser_line(campaign, step)) else None,
        "postal_lines": _lines(brand.postal_address),
        "disclaimer": brand.disclaimer,
        "unsubscribe_url": tokens.token("{{ unsubscribe_url }}"),
        "preferences_url": tokens.token("{{ preferences_url }}"),
        "font_stack": FONT_STACK,
        "c": colours,
    }


def compile_step(
    campaign: Campaign,
    step: Step,
    colours: Palette,
    *,
    variant: str | None = None,
    discreet: bool = False,
) -> CompiledStep:
    """One step through the whole pipeline, uncached (compile_campaign caches whole versions).

    `variant` names the A/B variant `step` is the email of (variant_spec.variant_step):
    its batch form gets a key of its own, so a batch never mixes two variants' content.
    `discreet` compiles it as a discreet email (rendering/discreet.py), its own key too.
    """
    if discreet:
        step = discreet_step(campaign, step)
    # Seeded with every text that reaches the layout, so no text can contain a token.
    tokens = PlaceholderTokens(
        campaign.files.get("campaign.yaml", "") + campaign.files.get(step.file, "")
    )
    for text, field in (
        (step.subject, "subject"),
        (step.preheader or "", "preheader"),
        (step.cta or "", "cta"),
        (step.body, None),
    ):
        check_staff_text(text, field, tokens, campaign, step)

    values = _layout_values(campaign, step, tokens, colours, discreet)
    body = with_heading(tokens.protect(step.body), values["subject"])
    body = _greeted(body, campaign, step, tokens)
    env = layout_environment(campaign.spec.language)
    mjml_source = env.get_template("email.mjml.j2").render(
        values, body_html=Markup(markdown_html(body))
    )
    html = _inline_css(mjml.mjml2html(mjml_source, fonts={}))
    html = _URL_ATTRIBUTE.sub(lambda m: m.group(1) + tokens.in_url(m.group(2)) + m.group(3), html)
    # Non-ASCII as character references: the same page, and quoted-printable
    # encoding of an all-ASCII part per message is a fraction of the cost.
    html = _short_lines(html.encode("ascii", "xmlcharrefreplace").decode("ascii"))
    text = env.get_template("email.txt.j2").render(
        values, body_text=markdown_text(body, tokens.in_url)
    )
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"

    source = step_source(
        tokens.source(values["subject"]),
        tokens.source(values["preheader"]) if values["preheader"] else None,
        tokens.source(html),
        tokens.source(text),
    )
    compiled = CompiledStep(
        key=step.key,
        file=step.file,
        position=step.position,
        total=values["total"],
        variant=variant,
        template=contact_environment().from_string(source),
        batch=step_batch(
            source,
            # The language and the variant too: messages of one key share one body
            # (SendGrid's batches).
            key=f"{campaign.version}:{templates.digest()}:{step.key}:{campaign.spec.language}"
            + (f":{variant}" if variant else "")
            + (":discreet" if discreet else ""),
            seed=campaign.files.get("campaign.yaml", "") + campaign.files.get(step.file, ""),
        ),
    )
    _try_render(compiled, campaign, step)
    return compiled


def _try_render(compiled: CompiledStep, campaign: Campaign, step: Step) -> None:
    """Render once with and once without a first name: errors surface now, not per contact.

    The batch form must give the very same HTML and text; if it ever did not, the step
    goes rendered in full rather than risk a different email.
    """
    for first_name in ("Sam", ""):
        # With a value for every attribute (markup in it), then with none.
        recipient = Recipient("check@example.com", first_name, attributes=_EveryAttribute())
        if not first_name:
            recipient = Recipient("check@example.com", first_name)
        links = {
            "unsubscribe_url": f"{PLACEHOLDER_PUBLIC_URL}/u/check",
            "preferences_url": f"{PLACEHOLDER_PUBLIC_URL}/p/check",
        }
        try:
            rendered = compiled.personalise(recipient, **links)
            form = compiled.batch_form(recipient, **links)
        except Exception as exc:  # a staff expression can raise anything; name the file
            raise InputError(
                f"placeholder fails when first_name is {first_name!r}: {exc}",
                source=step_file(campaign, step),
            ) from None
        if form is not None and form.render() != (rendered.html, rendered.text):
            log.warning("step %s: the batch form differs from the render; not used", step.key)
            compiled.drop_batch_form()


class _EveryAttribute(dict):
    """Attributes for the check render: every name has a value, with markup to escape."""

    def get(self, key: object, default: object = None) -> str:
        return f"<{key}> & more"


_CACHE: OrderedDict[tuple[str, ...], CompiledCampaign] = OrderedDict()
_CACHE_SIZE = 32
_CACHE_LOCK = threading.Lock()


def compile_campaign(campaign: Campaign) -> CompiledCampaign:
    """Compile every step of `campaign` in each of its languages, once per campaign version
    and layout version: each (step, language) once. The default language's steps are the
    result's own; each other language's are in `languages` (see CompiledCampaign.message).
    """
    languages = campaign_languages(campaign.spec)
    key = (campaign.version, templates.digest(), *languages)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    colours = checked_palette(campaign)
    discreet = campaign.spec.discreet
    compiled = CompiledCampaign(
        campaign,
        *_compile_steps(campaign, colours, discreet=discreet),
        languages={tag: compile_campaign(in_language(campaign, tag)) for tag in languages[1:]},
        discreet=discreet,
        # A standard campaign's discreet emails, for the contacts who chose them: compiled
        # when the first is needed, not for every campaign that has none.
        discreet_version=None
        if discreet
        else lambda: CompiledCampaign(
            campaign, *_compile_steps(campaign, colours, discreet=True), discreet=True
        ),
    )
    with _CACHE_LOCK:
        compiled = _CACHE.setdefault(key, compiled)  # another thread may have won the race
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return compiled


def _compile_steps(
    campaign: Campaign, colours: Palette, *, discreet: bool
) -> tuple[dict[str, CompiledStep], dict[str, dict[str, CompiledStep]]]:
    """Every step, and every A/B variant (a whole email of its step, compiled once like it)."""
    steps = {
        step.key: compile_step(campaign, step, colours, discreet=discreet)
        for step in campaign.steps
    }
    variants = {
        step.key: {
            variant.name: compile_step(
                campaign,
                variant_step(step, variant),
                colours,
                variant=variant.name,
                discreet=discreet,
            )
            for variant in step.variants
        }
        for step in campaign.steps
        if step.variants
    }
    return steps, variants


def compiled_variants(campaign: Campaign) -> list[CompiledStep]:
    """Every A/B variant of every step, compiled; none when the campaign does not compile
    (`check` names why, step by step)."""
    try:
        compiled = compile_campaign(campaign)
    except InputError:
        return []
    return [variant for by_name in compiled.variants.values() for variant in by_name.values()]


def clear_cache() -> None:
    """Forget every compiled campaign (the preview studio calls this after a layout edit)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def render_sample(
    campaign: Campaign,
    step_key: str,
    recipient: Recipient = SAMPLE,
    *,
    public_url: str = PLACEHOLDER_PUBLIC_URL,
    variant: str | None = None,
) -> Rendered:
    """One step (or one of its variants) personalised for a sample recipient, with
    placeholder unsubscribe links."""
    unsubscribe_url, preferences_url = sample_links(public_url)
    return (
        compile_campaign(campaign)
        .step(step_key, variant)
        .personalise(recipient, unsubscribe_url=unsubscribe_url, preferences_url=preferences_url)
    )
