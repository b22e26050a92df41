"""Time zones as people type them: an IANA place name, or a refusal that suggests one.

A contact's zone decides when their emails arrive, so a name that the zone database
knows but that means the wrong thing is refused too: an abbreviation (`EST`) or a fixed
offset (`GMT+5`) has no summer time, so half the year a patient in New York would get
the 9:00 email at 10:00. `contact_zone` is the one rule, used by `import`, `enroll
--timezone`, the sign-up API and the studio's contact picker. Pure: reads only the
installed zone database.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from zoneinfo import available_timezones

# Where a canonical place name starts; legacy links (US/Eastern, GB) stay valid but are
# never suggested.
_REGIONS = (
    "Africa/", "America/", "Antarctica/", "Asia/", "Atlantic/", "Australia/", "Europe/",
    "Indian/", "Pacific/",
)  # fmt: skip
_NOT_PLACES = frozenset({"Factory", "localtime", "posixrules"})

# What people usually mean by an abbreviation: the zone most of its users are in.
_ABBREVIATIONS = {
    **dict.fromkeys(("EST", "EDT", "ET", "EST5EDT"), "America/New_York"),
    **dict.fromkeys(("CST", "CDT", "CT", "CST6CDT"), "America/Chicago"),
    **dict.fromkeys(("MST", "MDT", "MT", "MST7MDT"), "America/Denver"),
    **dict.fromkeys(("PST", "PDT", "PT", "PST8PDT"), "America/Los_Angeles"),
    **dict.fromkeys(("AKST", "AKDT"), "America/Anchorage"),
    **dict.fromkeys(("HST", "HDT"), "Pacific/Honolulu"),
    **dict.fromkeys(("AST", "ADT"), "America/Halifax"),
    **dict.fromkeys(
        ("GMT", "BST", "GMT0", "GREENWICH", "ETC/GMT", "ETC/GREENWICH"), "Europe/London"
    ),
    **dict.fromkeys(("WET", "WEST"), "Europe/Lisbon"),
    **dict.fromkeys(("CET", "CEST", "MET", "MEST"), "Europe/Paris"),
    **dict.fromkeys(("EET", "EEST"), "Europe/Athens"),
    "MSK": "Europe/Moscow",
    "IST": "Asia/Kolkata",
    "PKT": "Asia/Karachi",
    "SGT": "Asia/Singapore",
    "HKT": "Asia/Hong_Kong",
    "JST": "Asia/Tokyo",
    "KST": "Asia/Seoul",
    **dict.fromkeys(("AEST", "AEDT"), "Australia/Sydney"),
    **dict.fromkeys(("ACST", "ACDT"), "Australia/Adelaide"),
    "AWST": "Australia/Perth",
    **dict.fromkeys(("NZST", "NZDT"), "Pacific/Auckland"),
}
# A place with each common offset from UTC (in minutes), to suggest for `GMT+5` or `-05:00`.
_BY_OFFSET = {
    -600: "Pacific/Honolulu", -540: "America/Anchorage", -480: "America/Los_Angeles",
    -420: "America/Denver", -360: "America/Chicago", -300: "America/New_York",
    -240: "America/Halifax", -180: "America/Sao_Paulo", 0: "Europe/London", 60: "Europe/Paris",
    120: "Europe/Athens", 180: "Europe/Moscow", 240: "Asia/Dubai", 300: "Asia/Karachi",
    330: "Asia/Kolkata", 345: "Asia/Kathmandu", 360: "Asia/Dhaka", 420: "Asia/Bangkok",
    480: "Asia/Singapore", 540: "Asia/Tokyo", 570: "Australia/Adelaide", 600: "Australia/Sydney",
    720: "Pacific/Auckland",
}  # fmt: skip
_OFFSET = re.compile(
    r"(?P<etc>etc/)?(?:gmt|utc|ut)?\s*(?P<sign>[+\-\u2212])\s*(?P<h>\d{1,2})(?::?(?P<m>\d{2}))?",
    re.IGNORECASE,
)
_EXAMPLE = "use an IANA name like Europe/London"


def contact_zone(name: str) -> str:
    """`name` when it is a place's IANA time zone (or UTC); ValueError suggesting one if not.

    `EST`, `PST`, `GMT+5`, `-05:00` are refused (no summer time), as are near misses
    (`London`, `America/New York`, `europe/london`), each with "did you mean ...?".
    """
    problem = _problem(str(name).strip())
    if problem:
        raise ValueError(problem)
    return str(name).strip()


@lru_cache(maxsize=1024)
def _problem(name: str) -> str | None:
    # Cached by name: an import of 100,000 rows asks about the same few zones, and a
    # suggestion (a fuzzy search over every zone) costs milliseconds.
    if not name:
        return f"no time zone given ({_EXAMPLE})"
    summer = "not a place's time zone (it has no summer time)"
    abbreviation = _ABBREVIATIONS.get(name.upper())
    if abbreviation:
        return f"{name!r} is an abbreviation, {summer}: did you mean {abbreviation}?"
    offset = _OFFSET.fullmatch(name)
    if offset:
        minutes = int(offset["h"]) * 60 + int(offset["m"] or 0)
        # Etc/GMT+5 is POSIX-style, five hours *behind* UTC; people mean GMT+5 as ahead.
        sign = -1 if (offset["sign"] == "+") == bool(offset["etc"]) else 1
        place = _BY_OFFSET.get(sign * minutes)
        hint = f"did you mean {place}?" if place else f"{_EXAMPLE} for the contact's city"
        return f"{name!r} is a fixed offset, {summer}: {hint}"
    if name in _zones():
        return None
    near = suggest_zone(name)
    if near:
        return f"unknown time zone {name!r}: did you mean {near}?"
    return f"unknown time zone {name!r} ({_EXAMPLE})"


def suggest_zone(name: str) -> str | None:
    """The place zone `name` most likely meant (`London` -> Europe/London), or None."""
    key = _key(name)
    places = _places()
    if key in places:
        return places[key]
    found = difflib.get_close_matches(key, places, n=1, cutoff=0.8)
    return places[found[0]] if found else None


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones() - _NOT_PLACES)


@lru_cache(maxsize=1)
def _places() -> dict[str, str]:
    """Typed-form key -> canonical zone, for whole names and for city names alone."""
    canonical = [*sorted(z for z in _zones() if z.startswith(_REGIONS)), "UTC"]
    places: dict[str, str] = {}
    for zone_name in canonical:
        places.setdefault(_key(zone_name.rsplit("/", 1)[-1]), zone_name)
    for zone_name in canonical:  # a whole name wins over a city of the same spelling
        places[_key(zone_name)] = zone_name
    return places


def _key(name: str) -> str:
    """Case, spaces, underscores and hyphens do not matter to a person typing a zone."""
    return re.sub(r"[\s_\-]+", "", name).lower()
