"""What the preview studio and the offline export show: timeline, checks, preview documents.

Both `dripmail preview` (campaigns/studio.py) and `dripmail render` (campaigns/export.py)
build their pages from these values and the shared macros in templates/studio/, so an
approver reading the exported index.html sees what staff saw in the studio.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined

import templates
from campaigns.authoring.checks import GMAIL_CLIP_BYTES, SUBJECT_MAX, Finding
from campaigns.authoring.spec import Campaign
from campaigns.planning.conditions import ContactFacts, outlook
from campaigns.planning.schedule import Delay
from campaigns.rendering.personalise import CompiledCampaign, Recipient, Rendered
from campaigns.reporting.reports import sample_calendar

__all__ = [
    "DESKTOP_WIDTH",
    "PHONE_WIDTH",
    "STUDIO_TEMPLATES",
    "CheckRow",
    "LinkInfo",
    "TimelineEntry",
    "check_rows",
    "describe_delay",
    "page_environment",
    "preview_document",
    "timeline",
]

STUDIO_TEMPLATES = templates.DIRECTORY / "studio"
DESKTOP_WIDTH = 600  # the layout's mj-body width: what desktop clients and webmail show
PHONE_WIDTH = 375  # an iPhone's CSS width: below MJML's 480 px breakpoint, so columns stack

_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}
Status = Literal["ok", "warning", "error"]


def describe_delay(delay: Delay) -> str:
    """`2d` -> "2 days after sign-up"; `0d` -> "at sign-up"."""
    if delay.amount == 0:
        return "at sign-up"
    unit = _UNITS.get(delay.unit, delay.unit)
    return f"{delay.amount} {unit}{'' if delay.amount == 1 else 's'} after sign-up"


@lru_cache(maxsize=1)
def page_environment() -> Environment:
    """Jinja for the studio's and the export's pages (autoescaped HTML)."""
    env = Environment(
        loader=FileSystemLoader(STUDIO_TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = format_when
    env.filters["kb"] = lambda size: f"{size / 1024:.1f} KB"
    return env


def format_when(moment: datetime) -> str:
    """`Mon 9 Mar 2026, 10:00 EDT`: how a patient's calendar would read it."""
    return f"{moment:%a} {moment.day} {moment:%b %Y, %H:%M %Z}".strip()


# ------------------------------------------------------------------------------ timeline


@dataclass(frozen=True)
class TimelineEntry:
    """One email of the sequence as the sample contact's inbox would list it."""

    key: str
    file: str
    position: int
    total: int
    delay: str  # "2 days after sign-up"
    day: int  # calendar days after the sign-up, in the contact's zone
    local: datetime  # when it goes out, in the contact's zone (send window applied)
    from_name: str
    subject: str
    preheader: str | None
    note: str = ""  # why it is not simply sign-up + delay (send window, DST), if anything
    # A step with `when:`: whether this contact would get it now, and why.
    condition: str = ""


def timeline(
    campaign: Campaign,
    compiled: CompiledCampaign,
    recipient: Recipient,
    *,
    signed_up_at: datetime,
    links: tuple[str, str],
    facts: ContactFacts | None = None,
) -> list[TimelineEntry]:
    """Every step in order, personalised for `recipient`, with its day and local send time.

    With `facts` (the sample contact's tags and attributes), a step with `when:` says
    whether this contact would get it now; without, what it is decided on.
    """
    unsubscribe_url, preferences_url = links
    if recipient.discreet:  # an enrolled contact who chose discreet emails (render --email)
        compiled = compiled.in_discreet()
    calendar = sample_calendar(campaign, signed_up_at=signed_up_at, zones=(recipient.timezone,))
    start = signed_up_at.astimezone(calendar[0].local.tzinfo) if calendar else signed_up_at
    entries = []
    for step, planned in zip(campaign.steps, calendar, strict=True):
        rendered = compiled.step(step.key).personalise(
            recipient, unsubscribe_url=unsubscribe_url, preferences_url=preferences_url
        )
        entries.append(
            TimelineEntry(
                key=step.key,
                file=step.file,
                position=step.position,
                total=len(campaign.steps),
                delay=describe_delay(step.delay),
                day=(planned.local.date() - start.date()).days,
                local=planned.local,
                from_name=compiled.from_name,  # the discreet name when discreet
                subject=rendered.subject,
                preheader=rendered.preheader,
                # reports.py explains moved times in newer versions; older ones say nothing.
                note=getattr(planned, "note", "") or "",
                condition=outlook(step.when, facts) if facts is not None else planned.condition,
            )
        )
    return entries


# -------------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class LinkInfo:
    """A link of the email, as the reader sees it and where it goes."""

    text: str
    href: str


class _Anatomy(HTMLParser):
    """Links and images of a rendered email, for the facts beside the checks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[LinkInfo] = []
        self.images = 0
        self._open: list[list[str]] = []
        self._hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self._open.append([])
            self._hrefs.append(values["href"] or "")
        elif tag == "img":
            self.images += 1
            if self._open:
                self._open[-1].append(values.get("alt") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open:
            text = " ".join("".join(self._open.pop()).split())
            self.links.append(LinkInfo(text or "(no text)", self._hrefs.pop()))

    def handle_data(self, data: str) -> None:
        for parts in self._open:
            parts.append(data)


@dataclass(frozen=True)
class CheckRow:
    """One line of the checks panel: what was checked, what was found, and the findings."""

    label: str
    status: Status
    fact: str
    findings: tuple[Finding, ...] = ()
    links: tuple[LinkInfo, ...] = field(default=())


# Which of checks.py's finding codes belong to which line of the panel; codes not listed
# (a template error, a placeholder, anything added later) go to "Other" so none is hidden.
_GROUPS: tuple[tuple[str, frozenset[str]], ...] = (
    ("Size", frozenset({"html-size"})),
    ("Images", frozenset({"alt-text"})),
    ("Links", frozenset({"http-url", "link-text"})),
    ("Unsubscribe", frozenset({"unsubscribe-link", "unsubscribe-headers"})),
    ("Postal address", frozenset({"postal-address"})),
    ("Subject", frozenset({"subject-length"})),
    ("Preheader", frozenset({"preheader"})),
    ("Text part", frozenset({"empty-text"})),
)


def _status(findings: Iterable[Finding]) -> Status:
    severities = {finding.severity for finding in findings}
    if "error" in severities:
        return "error"
    return "warning" if severities else "ok"


def check_rows(
    findings: list[Finding], rendered: Rendered, postal_address: str, folder: Path | None = None
) -> list[CheckRow]:
    """The checks panel for one email: checks.py's verdicts beside facts about this render.

    With `folder`, finding paths are shown relative to it (as the studio links them).
    """
    if folder is not None:
        findings = [replace(f, file=relative_to(f.file, folder)) for f in findings]
    anatomy = _Anatomy()
    anatomy.feed(rendered.html)
    anatomy.close()
    size = len(rendered.html.encode("utf-8"))
    words = len(re.findall(r"\w+", rendered.text))
    address = next((line.strip() for line in postal_address.splitlines() if line.strip()), "")
    facts = {
        "Size": f"{size / 1024:.0f} KB for this contact; Gmail clips beyond "
        f"{GMAIL_CLIP_BYTES // 1024} KB",
        "Images": f"{anatomy.images} image{'' if anatomy.images == 1 else 's'}"
        + (", each needs alt text" if anatomy.images else ""),
        "Links": f"{len(anatomy.links)} link{'' if len(anatomy.links) == 1 else 's'}",
        # Said only when checks.py found nothing wrong (the findings say what is missing).
        "Unsubscribe": "link in the HTML and text parts, one-click List-Unsubscribe headers",
        "Postal address": address or "none",
        "Subject": f"{len(rendered.subject)} characters; inboxes show about {SUBJECT_MAX}",
        "Preheader": f"{len(rendered.preheader)} characters"
        if rendered.preheader
        else "none (the inbox shows the email's first words)",
        "Text part": f"{words} words",
    }
    rows = []
    placed: set[int] = set()
    for label, codes in _GROUPS:
        mine = tuple(f for f in findings if f.code in codes)
        placed.update(id(f) for f in mine)
        rows.append(
            CheckRow(
                label,
                _status(mine),
                "" if mine and label == "Unsubscribe" else facts[label],
                mine,
                tuple(anatomy.links) if label == "Links" else (),
            )
        )
    other = tuple(f for f in findings if id(f) not in placed)
    if other:
        rows.append(CheckRow("Other", _status(other), "", other))
    return rows


def relative_to(path: str, folder: Path) -> str:
    """`path` relative to the campaign folder when it is inside it (shorter, and no home dir)."""
    try:
        return Path(path).resolve().relative_to(folder.resolve()).as_posix()
    except (ValueError, OSError):
        return path


# ----------------------------------------------------------------------- preview documents

_IMG_SRC = re.compile(r"(<img\b[^>]*?\ssrc\s*=\s*)([\"'])(.*?)\2", re.IGNORECASE | re.DOTALL)
_BACKGROUND_ATTR = re.compile(r"(\sbackground\s*=\s*)([\"'])\s*(?:https?:)?//.*?\2", re.I)
_CSS_URL = re.compile(r"url\(\s*([\"']?)\s*(?:https?:)?//[^)]*?\1\s*\)", re.IGNORECASE)
_HEAD = re.compile(r"<head\b[^>]*>", re.IGNORECASE)

# A patient's email client with dark mode on and an email that declares no dark styles
# (ours declares none) inverts the colours itself: Gmail's and Outlook's apps invert
# light backgrounds and dark text and leave images alone. We simulate that with a
# filter on the whole page that is undone on images. Emulating prefers-color-scheme
# instead would show nothing: the layout has no dark-mode media query to react to.
DARK_STYLE = (
    "<style>html{filter:invert(1) hue-rotate(180deg);background:#ffffff;}"
    "img,picture,video{filter:invert(1) hue-rotate(180deg);}</style>"
)


def _remote_image(match: re.Match[str]) -> str:
    src = html_lib.unescape(match.group(3)).strip()
    if not re.match(r"^(?:https?:)?//", src, re.IGNORECASE):
        return match.group(0)
    host = urlsplit(src if "://" in src else f"https:{src}").hostname or "another site"
    local = f"/_studio/remote-image.svg?host={quote(host)}"
    return f"{match.group(1)}{match.group(2)}{local}{match.group(2)}"


def preview_document(html: str, *, dark: bool = False) -> str:
    """An email as the studio's iframes show it: nothing fetched from elsewhere.

    Remote images become a local placeholder naming their host (the studio must not
    contact other machines; the alt text shows too); links open nowhere, because the
    iframe's sandbox blocks the new window `<base target="_blank">` asks for.
    """
    html = _IMG_SRC.sub(_remote_image, html)
    html = _BACKGROUND_ATTR.sub("", html)
    html = _CSS_URL.sub("none", html)
    head = '<base target="_blank">' + (DARK_STYLE if dark else "")
    match = _HEAD.search(html)
    if match is None:
        return head + html
    return html[: match.end()] + head + html[match.end() :]
