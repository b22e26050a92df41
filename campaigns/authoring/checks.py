"""The campaign linter (`dripmail check`): what would hurt delivery, the law or readers.

Each check is a small function over one email as a patient would get it (an `Email`:
the step personalised, with its headers and the file it came from) and returns
Findings, so the preview studio can show them beside each email (`check_step`) and
`dripmail check` can run them all (`check_campaign`). Offline: compiling opens no socket.

Errors: no postal address (CAN-SPAM), no unsubscribe link or List-Unsubscribe headers
(CAN-SPAM; Gmail and Yahoo require RFC 8058 one-click from bulk senders), HTML over
102 KB once personalised (Gmail clips the rest, unsubscribe link included), template
variables that do not exist, a plain http:// image or link, an image without alt text,
an empty text part. Warnings: HTML over 80 KB, a subject over 70 characters, no
preheader, a link that reads "click here", a link or image split left out (its note
line), a subject that is one generic word, a preheader that reads like a site menu.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from campaigns.authoring.conditions import click_problems
from campaigns.authoring.email_html import parse_html as _parse
from campaigns.authoring.liquid import NOTE_LINE
from campaigns.authoring.privacy_checks import privacy_findings
from campaigns.authoring.sources import campaign_file, line_containing, step_file
from campaigns.authoring.spec import CAMPAIGN_FILE, PLACEHOLDER, Campaign, Step, load_folder
from campaigns.authoring.translations import each_language, language_findings
from campaigns.authoring.variant_spec import label, variant_of
from campaigns.authoring.yamlio import line_of, load_with_lines
from campaigns.errors import ConfigurationError, InputError
from campaigns.rendering.catalogs import catalog_languages
from campaigns.rendering.compile import compile_campaign, compiled_variants, teaser_line
from campaigns.rendering.links import LinkBase, contact_message
from campaigns.rendering.links import check_public_url as check_url
from campaigns.rendering.markdown import greets
from campaigns.rendering.personalise import SAMPLE, CompiledCampaign, CompiledStep, Recipient
from campaigns.rendering.tokens import Signer, UnsubscribeClaim
from campaigns.settings import Settings
from campaigns.storage.publish import is_folder_ref, open_campaign
from campaigns.storage.store import Store

Severity = Literal["error", "warning"]

GMAIL_CLIP_BYTES = 102 * 1024  # Gmail hides everything past this behind "[Message clipped]"
HTML_WARN_BYTES = 80 * 1024
SUBJECT_MAX = 70  # longer subjects are cut in most inbox lists
# The longest first name import accepts: sizes are measured at the worst case.
LONG_NAME = ("Maximiliana-Alexandrina " * 9)[:200].strip()
_ID = 9_999_999_999  # a realistically long contact and delivery id inside the token


@dataclass(frozen=True)
class Finding:
    """One problem in one file; `step` is the step key when it is about one email."""

    severity: Severity
    code: str
    message: str
    file: str
    line: int | None = None
    step: str | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.message}"


@dataclass(frozen=True)
class Email:
    """One step as a patient gets it: what every email check reads."""

    campaign: Campaign
    step: Step
    file: str  # the step file as the user names it
    source: str  # the step file's text
    html: str  # personalised with LONG_NAME, for sizes
    text: str  # personalised with the sample name
    subject: str
    preheader: str | None
    headers: dict[str, str]
    unsubscribe_url: str
    preferences_url: str

    def line_of(self, needle: str) -> int | None:
        return line_containing(self.source, needle)


@dataclass
class CheckReport:
    """All findings for a campaign, errors first in step order."""

    campaign: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


# -------------------------------------------------------------------------------- checks


def _error(email: Email, code: str, message: str, line: int | None = None) -> Finding:
    return Finding("error", code, message, email.file, line, email.step.key)


def _warning(email: Email, code: str, message: str, line: int | None = None) -> Finding:
    return Finding("warning", code, message, email.file, line, email.step.key)


def check_postal_address(email: Email) -> list[Finding]:
    """CAN-SPAM: every commercial email carries the sender's valid physical postal address."""
    address = email.campaign.spec.brand.postal_address.strip()
    if not address or address.startswith(PLACEHOLDER):
        return [
            _error(
                email,
                "postal-address",
                "no postal address: set brand.postal_address in campaign.yaml "
                "(the law requires it in every email)",
            )
        ]
    lines = [line.strip() for line in address.splitlines() if line.strip()]
    shown = html_lib.unescape(email.html)
    if not all(line in shown and line in email.text for line in lines):
        return [_error(email, "postal-address", "the postal address is not in the email")]
    return []


def check_unsubscribe(email: Email) -> list[Finding]:
    """An unsubscribe link in both parts, and RFC 8058 one-click headers."""
    found = []
    links = _parse(email.html).links
    if not any(html_lib.unescape(link.href) == email.unsubscribe_url for link in links):
        found.append(_error(email, "unsubscribe-link", "no unsubscribe link in the HTML part"))
    if email.unsubscribe_url not in email.text:
        found.append(_error(email, "unsubscribe-link", "no unsubscribe link in the text part"))
    list_unsubscribe = email.headers.get("List-Unsubscribe", "")
    if "<https://" not in list_unsubscribe or (
        email.headers.get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click"
    ):
        found.append(
            _error(
                email,
                "unsubscribe-headers",
                "no one-click unsubscribe: List-Unsubscribe needs an https URL and "
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 8058; Gmail and "
                "Yahoo require it)",
            )
        )
    return found


def check_size(email: Email) -> list[Finding]:
    """Gmail clips HTML over ~102 KB, hiding the footer with the unsubscribe link."""
    size = len(email.html.encode("utf-8"))
    kb = f"{size / 1024:.0f} KB"
    if size > GMAIL_CLIP_BYTES:
        return [
            _error(
                email,
                "html-size",
                f"the HTML is {kb} with a long first name; Gmail clips it over 102 KB "
                "(shorten the email or split it)",
            )
        ]
    if size > HTML_WARN_BYTES:
        return [_warning(email, "html-size", f"the HTML is {kb}; Gmail clips it over 102 KB")]
    return []


def check_insecure_urls(email: Email) -> list[Finding]:
    """Plain http:// images and links: mixed content warnings, and a spam-filter signal."""
    collector = _parse(email.html)
    urls = [link.href for link in collector.links] + [image.src for image in collector.images]
    images = {html_lib.unescape(image.src) for image in collector.images}
    # Our own links are built on the public URL, which check_public_url judges once.
    found, seen = [], {email.unsubscribe_url, email.preferences_url}
    for url in (html_lib.unescape(u) for u in urls):
        if not url.lower().startswith("http://") or url in seen:
            continue
        seen.add(url)
        message = f"{'image' if url in images else 'link'} {url} is plain http://; use https://"
        line = email.line_of(url)
        if line is not None:
            found.append(_error(email, "http-url", message, line))
        else:  # a campaign.yaml value: website, cta_url or logo_url
            yaml_text = email.campaign.files.get(CAMPAIGN_FILE, "")
            file = campaign_file(email.campaign)
            found.append(
                Finding(
                    "error",
                    "http-url",
                    message,
                    file,
                    line_containing(yaml_text, url),
                    email.step.key,
                )
            )
    return found


def check_alt_text(email: Email) -> list[Finding]:
    """Every image needs alt text: screen readers read it, and blocked images show it."""
    return [
        _error(
            email,
            "alt-text",
            f"image {image.src} has no alt text (write ![what it shows]({image.src}))",
            email.line_of(image.src),
        )
        for image in _parse(email.html).images
        if not (image.alt or "").strip()
    ]


def check_text_part(email: Email) -> list[Finding]:
    """The text part must say something besides the header and footer."""
    body = email.text.split("\n-- \n", 1)[0]
    layout = {
        email.campaign.spec.brand.organisation,
        email.subject,
        f"Part {email.step.position} of {len(email.campaign.steps)}",
    }
    words = [line for line in body.splitlines() if line.strip() and line.strip() not in layout]
    # The layout's greeting opens the body and its teaser ends it: neither is the email's text.
    if words and email.campaign.spec.greeting and not greets(email.step.body):
        words = words[1:]
    if words and teaser_line(email.campaign, email.step):
        words = words[:-1]
    if not any(re.search(r"\w", line) for line in words):
        return [_error(email, "empty-text", "the text part is empty: the email has no text")]
    return []


def check_subject_length(email: Email) -> list[Finding]:
    if len(email.subject) > SUBJECT_MAX:
        return [
            _warning(
                email,
                "subject-length",
                f"the subject is {len(email.subject)} characters; inboxes cut it after "
                f"about {SUBJECT_MAX}",
                email.line_of(email.step.subject),
            )
        ]
    return []


def check_preheader(email: Email) -> list[Finding]:
    if not (email.preheader or "").strip():
        return [
            _warning(
                email,
                "preheader",
                "no preheader: the inbox shows the first words of the email instead "
                "(add `preheader:` to the front matter)",
            )
        ]
    return []


_VAGUE = re.compile(r"^(click here|here|click|this link|link)[.!]?$")


def check_link_text(email: Email) -> list[Finding]:
    """Link text should say where it goes ("click here" tells screen readers nothing)."""
    found = []
    for link in _parse(email.html).links:
        text = " ".join(link.text.split())
        if "click here" in text.lower() or _VAGUE.match(text.lower()):
            found.append(
                _warning(
                    email,
                    "link-text",
                    f'link text "{text}" does not say where it leads',
                    email.line_of(text),
                )
            )
    return found


def check_left_out(email: Email) -> list[Finding]:
    """Note lines split left where an article's link or image had a site template address."""
    return [
        _warning(
            email,
            "link-left-out",
            note.group("text"),
            email.source.count("\n", 0, note.start()) + 1,
        )
        for note in NOTE_LINE.finditer(email.source)
    ]


# Words a page's menu, breadcrumb or section label is made of: never an email's subject.
_GENERIC = frozenset(
    {"blog", "home", "news", "articles", "article", "posts", "post", "services", "about"}
    | {"contact", "resources", "updates", "newsletter", "menu", "welcome", "untitled", "faq"}
)


def check_generic_subject(email: Email) -> list[Finding]:
    """A subject that is one generic word ("Blog") is a menu item, not what the email says."""
    if email.step.subject.strip(" .:!").lower() not in _GENERIC:
        return []
    subject = email.step.subject
    message = f'the subject "{subject}" says nothing about the email: write what it is about'
    line = email.line_of(f"# {subject}") or email.line_of(f"subject: {subject}")
    return [_warning(email, "generic-subject", message, line)]


def check_menu_preheader(email: Email) -> list[Finding]:
    """A preheader of short capitalised words only ("Home Services Blog") is a site's menu."""
    words = (email.step.preheader or "").split()
    if len(words) < 2 or not all(w[:1].isupper() and len(w) <= 12 for w in words):
        return []
    if any(w[-1:] in ".!?," for w in words):
        return []
    message = (
        f'the preheader "{email.step.preheader}" is only short capitalised words (a site '
        "menu or a heading?): write the sentence the inbox should show under the subject"
    )
    return [_warning(email, "menu-preheader", message, email.line_of(email.step.preheader or ""))]


EmailCheck = Callable[[Email], list[Finding]]
EMAIL_CHECKS: tuple[EmailCheck, ...] = (
    check_postal_address,
    check_unsubscribe,
    check_size,
    check_insecure_urls,
    check_alt_text,
    check_text_part,
    check_subject_length,
    check_preheader,
    check_link_text,
    check_left_out,
    check_generic_subject,
    check_menu_preheader,
)


# ----------------------------------------------------------------------- campaign checks


def check_placeholders(campaign: Campaign) -> list[Finding]:
    """Values `split` left as TODO (the postal address is checked per email)."""
    _, lines = load_with_lines(campaign.files[CAMPAIGN_FILE], campaign_file(campaign))
    paths = {
        "brand.organisation": ("brand", "organisation"),
        "from.address": ("from", "address"),
        "from.name": ("from", "name"),
    }
    return [
        Finding(
            "error",
            "placeholder",
            f"{name} is still a placeholder",
            campaign_file(campaign),
            line_of(lines, paths[name]),
        )
        for name in campaign.placeholders()
        if name in paths
    ]


def check_public_url(campaign: Campaign) -> list[Finding]:
    """links.public_url, when set, is https (http only on a loopback address)."""
    url = campaign.spec.links.public_url
    try:
        check_url(url, name="links.public_url")
    except ConfigurationError as exc:
        _, lines = load_with_lines(campaign.files[CAMPAIGN_FILE], campaign_file(campaign))
        return [
            Finding(
                "error",
                "public-url",
                str(exc),
                campaign_file(campaign),
                line_of(lines, ("links", "public_url")),
            )
        ]
    return []


def check_click_conditions(campaign: Campaign) -> list[Finding]:
    """`when: {clicked: ...}` needs a sender that reports clicks (authoring/conditions.py)."""
    _, lines = load_with_lines(campaign.files[CAMPAIGN_FILE], campaign_file(campaign))
    steps = [(step.key, step.when) for step in campaign.steps]
    return [
        Finding("error", "condition", message, campaign_file(campaign), line)
        for message, line in click_problems(steps, campaign.spec.sender, lines)
    ]


CampaignCheck = Callable[[Campaign], list[Finding]]
CAMPAIGN_CHECKS: tuple[CampaignCheck, ...] = (
    check_placeholders,
    check_public_url,
    check_click_conditions,
)


# -------------------------------------------------------------------------------- running


def _template_finding(exc: InputError, campaign: Campaign, step: Step | None) -> Finding:
    file = exc.source or (step_file(campaign, step) if step else campaign_file(campaign))
    field_name = f"{exc.field}: " if exc.field else ""
    return Finding(
        "error",
        "template",
        f"{field_name}{exc.message}",
        file,
        exc.line,
        step.key if step else None,
    )


def compile_steps(campaign: Campaign) -> tuple[dict[str, CompiledStep], list[Finding]]:
    """Every step that compiles, and a finding for each that does not.

    The compiler stops at the first broken step; to name every broken step, each is
    then compiled on its own (as a one-step campaign with its own cache key).
    """
    try:
        return dict(compile_campaign(campaign).steps), []
    except InputError as exc:
        if exc.source and Path(exc.source).name == CAMPAIGN_FILE:
            return {}, [_template_finding(exc, campaign, None)]  # e.g. colour contrast
    steps: dict[str, CompiledStep] = {}
    findings: list[Finding] = []
    for step in campaign.steps:
        solo = Campaign(
            spec=campaign.spec,
            steps=(step,),
            files={**campaign.files, f".dripmail-check/{step.key}": ""},
            origin=campaign.origin,
        )
        try:
            steps.update(compile_campaign(solo).steps)
        except InputError as exc:
            findings.append(_template_finding(exc, campaign, step))
    return steps, findings


def build_email(
    campaign: Campaign, compiled: CompiledStep, *, settings: Settings | None = None
) -> Email:
    """A compiled step personalised as checks need it (long name for size, sample otherwise).

    Its links are built on the public URL in `settings` (default: the environment's).
    """
    settings = Settings.from_env() if settings is None else settings
    step = campaign.step(compiled.key)
    if compiled.variant:  # an A/B variant: its own subject, preheader and body file
        step = variant_of(step, compiled.variant)
    # A real-length signed token, so sizes are what patients get, not a short placeholder.
    token = Signer("dripmail-check").token(UnsubscribeClaim(_ID, campaign.name, _ID))
    links = LinkBase.of(campaign, settings.public_url).signed(token)
    message = contact_message(
        CompiledCampaign(campaign, {compiled.key: compiled}),
        compiled.key,
        SAMPLE,
        links,
        delivery_id=str(_ID),
        date=None,
    )
    longest = compiled.personalise(
        Recipient(SAMPLE.email, LONG_NAME, SAMPLE.timezone),
        unsubscribe_url=links.unsubscribe_url,
        preferences_url=links.preferences_url,
    )
    return Email(
        campaign=campaign,
        step=step,
        file=step_file(campaign, step),
        source=campaign.files.get(step.file, ""),
        html=longest.html,
        text=message.text,
        subject=message.subject,
        preheader=message.preheader,
        headers=dict(message.headers),
        unsubscribe_url=links.unsubscribe_url,
        preferences_url=links.preferences_url,
    )


def check_email(email: Email, checks: Iterable[EmailCheck] = EMAIL_CHECKS) -> list[Finding]:
    """Run email checks over one email."""
    return [finding for check in checks for finding in check(email)]


def check_step(
    campaign: Campaign, step_key: str, *, settings: Settings | None = None
) -> list[Finding]:
    """The findings for one email (the preview studio shows these beside it)."""
    steps, findings = compile_steps(campaign)
    findings = [f for f in findings if f.step in (step_key, None)]
    if step_key in steps:
        findings += check_email(build_email(campaign, steps[step_key], settings=settings))
    return findings


def check_campaign(campaign: Campaign, *, settings: Settings | None = None) -> CheckReport:
    """Every campaign check, and every email check over every step in each language."""
    settings = Settings.from_env() if settings is None else settings
    report = CheckReport(campaign.name)
    for check in CAMPAIGN_CHECKS:
        report.findings += check(campaign)
    for f in language_findings(campaign, catalog_languages()):
        report.findings.append(Finding(f.severity, "language", f.message, f.file, f.line))
    for p in privacy_findings(campaign):  # discreet emails: authoring/privacy_checks.py
        report.findings.append(Finding(p.severity, p.code, p.message, p.file, p.line, p.step))
    for spoken in each_language(campaign):  # an untranslated step is checked once
        steps, template_findings = compile_steps(spoken)
        report.findings += template_findings
        for step in spoken.steps:
            if step.key in steps:
                report.findings += check_email(
                    build_email(spoken, steps[step.key], settings=settings)
                )
    for compiled in compiled_variants(campaign):
        found = check_email(build_email(campaign, compiled, settings=settings))
        name = f"variant {label(compiled.variant or '')}"
        report.findings += [replace(f, message=f"{name}: {f.message}") for f in found]
    report.findings = list(dict.fromkeys(report.findings))
    order = {step.key: step.position for step in campaign.steps}
    report.findings.sort(
        key=lambda f: (f.severity != "error", order.get(f.step or "", 0), f.line or 0)
    )
    return report


def check_ref(
    ref: str | Path, *, db: str | None = None, settings: Settings | None = None
) -> CheckReport:
    """Check a campaign folder, or a published campaign by name (then the database is read)."""
    settings = Settings.from_env() if settings is None else settings
    if is_folder_ref(ref):
        return check_campaign(load_folder(Path(ref)), settings=settings)
    # Only a published name needs the database; reading one never creates it.
    store = Store(db, settings=settings, existing=True)
    return check_campaign(open_campaign(store, str(ref)), settings=settings)
