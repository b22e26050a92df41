"""Language tags, translation file names, who gets which language, and the catalogs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel import Locale
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from campaigns.authoring.languages import (
    choose_language,
    language_of_file,
    normalise_language,
    translation_file,
)
from campaigns.authoring.spec import DEFAULT_GREETING, step_key
from campaigns.rendering.catalogs import LOCALE_DIRECTORY, catalog_language, translations
from campaigns.rendering.compile import DEFAULT_GREETING_MESSAGE
from campaigns.web.app import accepted_language

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("given", "tag"),
    [
        ("es", "es"),
        ("ES", "es"),
        ("pt-br", "pt-BR"),
        ("pt_BR", "pt-BR"),
        (" en-gb ", "en-GB"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("de-CH-1996", "de-CH-1996"),
    ],
)
def test_a_tag_is_written_in_its_usual_case(given, tag):
    assert normalise_language(given) == tag


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("spanish", "not a language tag"),
        ("xx", "not a language tag"),
        ("", "not a language tag"),
        ("es-XX", "'XX' is not a country or region"),
        ("es-Abcd", "'Abcd' is not a script"),
        ("es-" + "a" * 40, "not a language tag"),
    ],
)
def test_a_bad_tag_says_what_is_wrong(given, why):
    with pytest.raises(ValueError, match=why):
        normalise_language(given)


def test_a_contact_gets_their_language_else_its_primary_subtag_else_the_default():
    available = ["en", "es", "pt-BR"]
    assert choose_language("es", available, "en") == "es"
    assert choose_language("es-MX", available, "en") == "es"
    assert choose_language("ES-mx", available, "en") == "es"
    assert choose_language("pt", available, "en") == "pt-BR"
    assert choose_language("pt-PT", available, "en") == "pt-BR"
    assert choose_language("fr", available, "en") == "en"
    assert choose_language(None, available, "en") == "en"


def test_a_translation_lives_beside_its_step_under_the_same_key():
    assert translation_file("02-mental-health.md", "es") == "02-mental-health.es.md"
    assert translation_file("steps/02-x.md", "pt-BR") == "steps/02-x.pt-BR.md"
    assert language_of_file("02-mental-health.es.md") == ("02-mental-health.md", "es")
    assert language_of_file("02-mental-health.md") is None
    assert language_of_file("01-version-1.5.md") is None
    assert step_key("02-mental-health.es.md") == step_key("02-mental-health.md") == "mental-health"
    assert step_key("02-mental-health.pt-BR.md") == "mental-health"


def test_catalogs_fall_back_to_the_primary_subtag_then_english():
    assert catalog_language("es-MX") == "es"
    assert catalog_language("fr") == "en"
    assert translations("es-MX").gettext("Unsubscribe") == "Darse de baja"
    assert translations("fr").gettext("Unsubscribe") == "Unsubscribe"


def test_the_default_greeting_is_the_message_the_catalogs_translate():
    assert DEFAULT_GREETING_MESSAGE == DEFAULT_GREETING


def test_every_message_in_the_code_and_layouts_has_a_spanish_translation():
    """What `pybabel extract -F babel.cfg -k N_` finds, each translated in es, none fuzzy:
    the .po is the catalog dripmail compiles in memory, so it is the one to keep whole."""
    method_map = [
        ("campaigns/**.py", "python"),
        ("templates/**.j2", "jinja2"),
    ]
    options = {"templates/**.j2": {"extensions": "jinja2.ext.i18n"}}
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options, keywords=keywords
    ):
        found.add(message[0] if isinstance(message, tuple) else message)
    with (LOCALE_DIRECTORY / "es" / "LC_MESSAGES" / "dripmail.po").open("rb") as handle:
        catalog = read_po(handle)
    translated = {
        (m.id[0] if isinstance(m.id, tuple) else m.id): m
        for m in catalog
        if m.id and not m.fuzzy and all(m.string if isinstance(m.string, tuple) else [m.string])
    }
    assert "Part %(position)s of %(total)s" in found
    assert sorted(found - set(translated)) == []


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, "en"),
        ("es-MX,es;q=0.9,en;q=0.8", "es"),
        ("en;q=0.1, es;q=0.9", "es"),
        ("es;q=0.5;level=1", "es"),
        ("es;q=0", "en"),
        ("fr-CA,fr;q=0.9", "en"),
        ("es;q=abc", "en"),
        ("*", "en"),
        (";;;,,," + "x" * 5000, "en"),
    ],
)
def test_a_page_for_a_link_that_names_nobody_follows_accept_language(header, language):
    assert accepted_language(header) == language


def test_every_code_cldr_names_in_english_is_accepted_in_a_tag():
    """languages.py reads the codes from Babel's English data instead of keeping a
    Locale("en"): the same codes, so the same tags pass."""
    english = Locale("en")
    languages = [code for code in english.languages if re.fullmatch("[a-z]{2,3}", code)]
    assert len(languages) > 400
    for code in languages:
        assert normalise_language(code.upper()) == code
    for script in english.scripts:
        assert normalise_language(f"zh-{script.lower()}") == f"zh-{script}"
    for region in english.territories:
        assert normalise_language(f"es-{region.lower()}") == f"es-{region}"
