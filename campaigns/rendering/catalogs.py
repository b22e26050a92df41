"""dripmail's own words in each language: gettext catalogs (Babel), read from their .po files.

The layouts' text (footer, "Part 2 of 6", the teaser line, the default greeting) and the
pages of `dripmail serve` are English in the source and translated by the catalogs in
templates/locale/<language>/LC_MESSAGES/dripmail.po. The .po files are the only copy in
the repository: each is compiled into memory by Babel on first use (no .mo to keep in
step with it, nothing written). A language without a catalog gets English.
"""

from __future__ import annotations

import gettext
import io
from functools import cache, lru_cache
from pathlib import Path

import templates

__all__ = [
    "DOMAIN",
    "LOCALE_DIRECTORY",
    "N_",
    "catalog_language",
    "catalog_languages",
    "translations",
]

DOMAIN = "dripmail"
LOCALE_DIRECTORY = templates.DIRECTORY / "locale"
SOURCE_LANGUAGE = "en"


def N_(message: str) -> str:
    """Mark `message` for `pybabel extract`; it is translated where it is shown."""
    return message


def _po_path(tag: str) -> Path:
    # pybabel init writes pt_BR for pt-BR.
    return LOCALE_DIRECTORY / tag.replace("-", "_") / "LC_MESSAGES" / f"{DOMAIN}.po"


@lru_cache(maxsize=1)
def catalog_languages() -> frozenset[str]:
    """The languages dripmail's own text is written in: English and every catalog shipped."""
    found = {SOURCE_LANGUAGE}
    if LOCALE_DIRECTORY.is_dir():
        for folder in LOCALE_DIRECTORY.iterdir():
            if (folder / "LC_MESSAGES" / f"{DOMAIN}.po").is_file():
                found.add(folder.name.replace("_", "-"))
    return frozenset(found)


def catalog_language(tag: str | None) -> str:
    """The catalog a language reads: its own, else its primary subtag's, else English."""
    if not tag:
        return SOURCE_LANGUAGE
    available = {language.lower(): language for language in catalog_languages()}
    for candidate in (tag.lower(), tag.split("-", 1)[0].lower()):
        if candidate in available:
            return available[candidate]
    return SOURCE_LANGUAGE


@cache
def translations(tag: str | None) -> gettext.NullTranslations:
    """The gettext translations for `tag` (see catalog_language); English: none needed."""
    language = catalog_language(tag)
    if language == SOURCE_LANGUAGE:
        return gettext.NullTranslations()
    # Babel's catalog reader is imported here, by the first catalog compiled, not with the
    # module: it brings babel.dates and pytz (25 modules, 1.3 MB), which a worker sending
    # only English would carry for nothing.
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    path = _po_path(language)
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language.replace("-", "_"), domain=DOMAIN)
    for message in list(catalog):
        # A plural entry not yet translated reads as ("", ""), which write_mo would keep
        # and gettext would then answer with an empty string: leave it out (English).
        if message.id and isinstance(message.string, tuple) and not all(message.string):
            del catalog[message.id]
    compiled = io.BytesIO()
    write_mo(compiled, catalog)  # fuzzy entries are left out, as `pybabel compile` does
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)
