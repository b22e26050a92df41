"""Languages: BCP 47 tags, the campaign file's `languages` and `translations`, who gets which.

A tag is checked against CLDR's names (through Babel) and written in its usual case:
`pt-br` -> `pt-BR`, `ZH-hant-tw` -> `zh-Hant-TW`. A step's translation lives beside it,
`02-mental-health.es.md` beside `02-mental-health.md`, under the same step key. A
contact gets their own language when the campaign has it (exactly, then by the primary
subtag: `es-MX` gets `es`), else the campaign's default; never an error.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Annotated, Any

from babel import Locale, localedata
from pydantic import BeforeValidator

from campaigns.authoring.fields import FileModel, OneLine, Url

__all__ = [
    "LanguageTag",
    "LanguageTexts",
    "Languages",
    "choose_language",
    "language_name",
    "language_of_file",
    "normalise_language",
    "translation_file",
]

# language[-Script][-REGION][-variant...]: the subset of BCP 47 (RFC 5646) people write.
_SHAPE = re.compile(
    r"(?P<language>[a-z]{2,3})"
    r"(?:-(?P<script>[a-z]{4}))?"
    r"(?:-(?P<region>[a-z]{2}|[0-9]{3}))?"
    r"(?P<variants>(?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*)",
    re.IGNORECASE,
)
MAX_TAG = 35  # RFC 5646 4.4.1: a tag of up to 35 characters must be kept whole


@dataclass(frozen=True)
class _Codes:
    """The language, script and region codes CLDR has English names for."""

    languages: frozenset[str]
    scripts: frozenset[str]
    territories: frozenset[str]


@lru_cache(maxsize=1)
def _names() -> _Codes:
    # The codes only, read from Babel's English data as babel.localedata reads it (the
    # root locale it inherits from names none): a Locale("en") would keep all of CLDR's
    # English (dates, numbers, units: 4.6 MB) in Babel's cache for the life of every
    # worker that loads a campaign, to answer three membership tests.
    with open(localedata.resolve_locale_filename("en"), "rb") as handle:
        data = pickle.load(handle)  # Babel's own file, installed with it
    return _Codes(
        frozenset(data["languages"]), frozenset(data["scripts"]), frozenset(data["territories"])
    )


def normalise_language(value: Any) -> str:
    """A BCP 47 tag in its usual case (`pt-br` -> `pt-BR`); ValueError saying what is wrong."""
    text = str(value if value is not None else "").strip().replace("_", "-")
    match = _SHAPE.fullmatch(text) if len(text) <= MAX_TAG else None
    names = _names()
    if match is None or match["language"].lower() not in names.languages:
        raise ValueError(f"{value!r} is not a language tag: write one like es, en or pt-BR")
    parts = [match["language"].lower()]
    if match["script"]:
        script = match["script"].title()
        if script not in names.scripts:
            raise ValueError(f"{value!r}: {script!r} is not a script (like Latn or Hant)")
        parts.append(script)
    if match["region"]:
        region = match["region"].upper()
        if region not in names.territories:
            raise ValueError(f"{value!r}: {region!r} is not a country or region (like MX or BR)")
        parts.append(region)
    parts.extend(v.lower() for v in match["variants"].split("-") if v)
    return "-".join(parts)


def _language_list(value: Any) -> Any:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError("list the campaign's languages, like [en, es]")
    tags: list[str] = []
    for item in value:
        tag = normalise_language(item)
        if tag not in tags:
            tags.append(tag)
    return tags


LanguageTag = Annotated[str, BeforeValidator(normalise_language)]
# `languages:` in campaign.yaml: every language the campaign is written in; the default
# (`language:`) is always one of them, whether listed or not.
Languages = Annotated[list[str], BeforeValidator(_language_list)]


class LanguageTexts(FileModel):
    """`translations.<tag>` in campaign.yaml: the campaign's own texts in that language.

    What the steps do not hold: the display title (unsubscribe pages), the greeting
    line, the From name, the disclaimer and where the website and button lead.
    """

    title: OneLine | None = None
    greeting: str | None = None
    from_name: OneLine | None = None
    disclaimer: str | None = None
    website: Url | None = None
    cta_url: Url | None = None


def language_name(tag: str) -> str:
    """`es` -> `Spanish`, `pt-BR` -> `Portuguese (Brazil)`: how `check` names a language."""
    try:
        return Locale.parse(tag, sep="-").get_display_name("en") or tag
    except (ValueError, LookupError):
        return tag


def choose_language(wanted: str | None, available: Sequence[str], default: str) -> str:
    """The language a contact gets: `wanted` if available, else one with its primary subtag
    (`es-MX` -> `es`, `pt` -> `pt-BR`), else `default`."""
    if not wanted:
        return default
    lowered = {tag.lower(): tag for tag in available}
    wanted = wanted.lower()
    if wanted in lowered:
        return lowered[wanted]
    primary = wanted.split("-", 1)[0]
    if primary in lowered:
        return lowered[primary]
    for tag in available:
        if tag.split("-", 1)[0].lower() == primary:
            return tag
    return default


def translation_file(step_file: str, tag: str) -> str:
    """Where the `tag` translation of a step file lives: `02-x.md` -> `02-x.es.md`."""
    path = PurePosixPath(step_file)
    return str(path.with_name(f"{path.stem}.{tag}{path.suffix}"))


def language_of_file(file_name: str) -> tuple[str, str] | None:
    """(`02-x.md`, `es`) for a translation's file name `02-x.es.md`; None for a step's own."""
    path = PurePosixPath(file_name)
    stem, dot, suffix = path.stem.rpartition(".")
    if not dot or not stem:
        return None
    try:
        tag = normalise_language(suffix)
    except ValueError:
        return None
    return str(path.with_name(f"{stem}{path.suffix}")), tag


def translation_names(languages: Any, step_files: Iterable[str]) -> list[str]:
    """Each listed language's file for each step (whether it exists or not); `languages`
    as campaign.yaml has it (a list, one tag, or anything else: then none)."""
    listed = [languages] if isinstance(languages, str) else languages
    tags = []
    for item in listed if isinstance(listed, list) else []:
        try:
            tags.append(normalise_language(item))
        except ValueError:
            continue  # the campaign file's validation names it
    return [translation_file(name, tag) for name in step_files for tag in tags]
