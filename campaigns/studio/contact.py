"""The sample contact the studio personalises for, from the page's picker."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from campaigns.authoring.conditions import check_attribute_name
from campaigns.authoring.languages import choose_language
from campaigns.authoring.spec import Campaign
from campaigns.authoring.translations import campaign_languages
from campaigns.planning.conditions import ContactFacts
from campaigns.planning.contacts import parse_tags
from campaigns.planning.schedule import parse_instant, zone
from campaigns.planning.zones import contact_zone
from campaigns.rendering.personalise import SAMPLE, Recipient


@dataclass(frozen=True)
class Contact:
    """The sample contact the page is personalised for, from the picker."""

    name: str
    timezone: str
    signed_up_at: datetime  # aware, in `timezone`
    problems: tuple[str, ...] = ()
    # What steps' `when:` and `{{ attributes.x }}` read: tags and attributes as typed.
    tags: tuple[str, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    language: str = "en"  # one of the campaign's languages

    def recipient(self) -> Recipient:
        return Recipient(
            SAMPLE.email,
            self.name,
            self.timezone,
            attributes=self.attributes,
            language=self.language,
        )

    def facts(self) -> ContactFacts:
        """The sample contact's facts for step conditions (a sample clicked nothing)."""
        return ContactFacts(frozenset(self.tags), self.attributes)

    def query(self) -> dict[str, str]:
        return {
            "name": self.name,
            "tz": self.timezone,
            "signup": self.signed_up_at.strftime("%Y-%m-%dT%H:%M"),
            "tags": "; ".join(self.tags),
            "attrs": attributes_text(self.attributes),
            "lang": self.language,
        }


def attributes_text(attributes: dict[str, str]) -> str:
    """`patient_type=new; clinic=North`: how the picker writes attributes."""
    return "; ".join(f"{name}={value}" for name, value in attributes.items())


def read_attributes(text: str, problems: list[str]) -> dict[str, str]:
    """`patient_type=new; clinic=North` -> a dict; an unusable pair is left out, said why."""
    attributes: dict[str, str] = {}
    for pair in text.split(";"):
        if not pair.strip():
            continue
        name, equals, value = pair.partition("=")
        try:
            check_attribute_name(name.strip())
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if not equals:
            problems.append(f"{pair.strip()!r}: write name=value")
            continue
        attributes[name.strip()] = " ".join(value.split())[:200]
    return dict(list(attributes.items())[:50])


def read_contact(params: Any, campaign: Campaign, now: datetime) -> Contact:
    """The picker's values, falling back (and saying so) where one is unusable."""
    problems: list[str] = []
    name = str(params.get("name", SAMPLE.first_name or ""))[:100].strip()
    timezone = str(params.get("tz") or campaign.spec.timezone).strip()
    try:
        # A picked zone follows the rule every contact's does (no EST, no GMT+5).
        tz = zone(contact_zone(timezone) if params.get("tz") else timezone)
    except ValueError as exc:
        problems.append(f"{exc}; showing {campaign.spec.timezone}")
        timezone = campaign.spec.timezone
        tz = zone(timezone)
    signed_up_at = now.astimezone(tz).replace(second=0, microsecond=0)
    if params.get("signup"):
        try:
            signed_up_at = parse_instant(str(params["signup"]), tz).astimezone(tz)
        except ValueError:
            problems.append(f"{params['signup']!r} is not a date and time; showing now")
    try:
        tags = tuple(parse_tags(str(params.get("tags") or "")[:1000].replace(",", ";")))
    except ValueError as exc:
        problems.append(str(exc))
        tags = ()
    attributes = read_attributes(str(params.get("attrs") or "")[:4000], problems)
    languages = campaign_languages(campaign.spec)
    language = choose_language(str(params.get("lang") or ""), languages, languages[0])
    return Contact(name, timezone, signed_up_at, tuple(problems), tags, attributes, language)
