"""A clinic's defaults for new campaigns: organisation, sender, postal address, links, zone.

Read from a defaults file (YAML, one text value per key) and the command line, and
checked like the campaign would check them before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from campaigns.authoring.bounded import CAMPAIGN_FILE_LIMIT, read_bounded
from campaigns.authoring.fields import EmailAddress, Url
from campaigns.authoring.yamlio import load_with_lines
from campaigns.errors import InputError
from campaigns.planning import schedule


@dataclass(frozen=True)
class CampaignDefaults:
    """Organisation details for a new campaign (from the CLI or a defaults file)."""

    organisation: str | None = None
    from_name: str | None = None
    from_address: str | None = None
    reply_to: str | None = None
    postal_address: str | None = None
    website: str | None = None
    cta_url: str | None = None
    logo_url: str | None = None
    disclaimer: str | None = None
    timezone: str | None = None


_DEFAULT_KEYS = tuple(f.name for f in fields(CampaignDefaults))
_CHECKS: dict[str, Any] = {
    "from_address": TypeAdapter(EmailAddress),
    "reply_to": TypeAdapter(EmailAddress),
    "website": TypeAdapter(Url),
    "cta_url": TypeAdapter(Url),
    "logo_url": TypeAdapter(Url),
}


def load_defaults(path: Path | str) -> CampaignDefaults:
    """Read a defaults file: YAML with the keys of CampaignDefaults, each a text value."""
    source = str(path)
    raw = read_bounded(path, limit=CAMPAIGN_FILE_LIMIT, noun="a defaults file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", source=source) from None
    data, lines = load_with_lines(text, source)
    if data is None:
        return CampaignDefaults()
    if not isinstance(data, dict):
        raise InputError("must be key: value lines", source=source, line=1)
    values: dict[str, str | None] = {}
    for key, value in data.items():
        line = lines.get((key,))
        if key not in _DEFAULT_KEYS:
            raise InputError(
                f"unknown key {key!r} (expected one of: {', '.join(_DEFAULT_KEYS)})",
                source=source,
                line=line,
                field=str(key),
            )
        if isinstance(value, (dict, list)):
            raise InputError("must be a single text value", source=source, line=line, field=key)
        values[key] = None if value is None or str(value).strip() == "" else str(value).strip()
    defaults = CampaignDefaults(**values)
    check_defaults(defaults, source=source, lines=lines)
    return defaults


def check_defaults(
    defaults: CampaignDefaults,
    *,
    source: str | None = None,
    lines: Mapping[tuple, int] | None = None,
) -> None:
    """Raise InputError for an address, web address or time zone the campaign would refuse."""
    for key, adapter in _CHECKS.items():
        value = getattr(defaults, key)
        if value is None:
            continue
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            message = exc.errors()[0]["msg"].removeprefix("Value error, ")
            line = (lines or {}).get((key,))
            raise InputError(message, source=source, line=line, field=key) from None
    if defaults.timezone is not None:
        try:
            schedule.zone(defaults.timezone)
        except ValueError as exc:
            line = (lines or {}).get(("timezone",))
            raise InputError(str(exc), source=source, line=line, field="timezone") from None


def resolve_defaults(
    defaults_file: Path | str | None,
    *,
    organisation: str | None = None,
    sender: str | None = None,
    postal_address: str | None = None,
) -> CampaignDefaults:
    """The defaults file (if any) with command-line values winning; `sender` is
    "Name <address>" or a bare address. Checked before anything is written."""
    defaults = load_defaults(defaults_file) if defaults_file else CampaignDefaults()
    overrides: dict[str, str] = {}
    if organisation:
        overrides["organisation"] = organisation
    if postal_address:
        overrides["postal_address"] = postal_address
    if sender:
        display, address = parseaddr(sender)
        if not address or "@" not in address:
            raise InputError(f"{sender!r} is not 'Name <address>' or an address", field="from")
        overrides["from_address"] = address
        if display:
            overrides["from_name"] = display
    defaults = replace(defaults, **overrides)
    check_defaults(defaults)
    return defaults
