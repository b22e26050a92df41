"""The sample contact the studio personalises for, from the page's picker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from campaigns.authoring.languages import choose_language
from campaigns.authoring.spec import Campaign
from campaigns.authoring.translations import campaign_languages
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
    language: str = "en"  # one of the campaign's languages

    def recipient(self) -> Recipient:
        return Recipient(SAMPLE.email, self.name, self.timezone, self.language)

    def query(self) -> dict[str, str]:
        return {
            "name": self.name,
            "tz": self.timezone,
            "signup": self.signed_up_at.strftime("%Y-%m-%dT%H:%M"),
            "lang": self.language,
        }


def read_contact(params: Any, campaign: Campaign, now: datetime) -> Contact:
    """The picker's values, falling back (and saying so) where one is unusable."""
    problems = []
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
    languages = campaign_languages(campaign.spec)
    language = choose_language(str(params.get("lang") or ""), languages, languages[0])
    return Contact(name, timezone, signed_up_at, tuple(problems), language)
