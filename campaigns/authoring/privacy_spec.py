"""Discreet emails in the campaign file: `privacy`, the neutral texts and the sensitive words.

Health email shows on lock screens and in shared family inboxes. With `privacy: discreet`
every email's subject and preheader are neutral ("A note from Balanced Care") and the
From name is the organisation's; the body is unchanged. A patient can choose the same for
themselves (`contacts.discreet`), whatever the campaign says.

campaign.yaml:

    privacy: discreet                       # default: standard
    discreet_name: Balanced Care            # the From name and {{ organisation }} below
    discreet_subject: "A note from {{ organisation }}"
    discreet_preheader: "Open it when it suits you."
    sensitive_words: [esketamine, Spravato] # added to the bundled list `check` reads

A step's front matter may hold its own `discreet_subject` and `discreet_preheader`.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator

from campaigns.authoring.fields import OneLine

__all__ = [
    "ORGANISATION",
    "NeutralText",
    "Privacy",
    "PrivacySettings",
    "SensitiveWords",
    "bundled_sensitive_words",
    "fill_organisation",
    "find_words",
    "without_words",
]

# `{{ organisation }}` in a neutral text: the discreet name, filled in at compile time.
ORGANISATION = re.compile(r"\{\{\s*organisation\s*\}\}")
SENSITIVE_WORDS_FILE = "sensitive-words.txt"


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("write the text, or leave the key out for the default")
    return value


def _words(value: list[str]) -> list[str]:
    for word in value:
        if not re.search(r"\w", word):
            raise ValueError(f"{word!r} is not a word: list words or phrases")
    return value


# The campaign file's keys, declared in CampaignSpec (authoring/spec.py):
#   privacy             standard (default) or discreet
#   discreet_name       the name a discreet email goes out under (From, `{{ organisation }}`);
#                       default: brand.organisation without its sensitive words
#                       ("Balanced Ketamine": "Balanced")
#   discreet_subject    default: "A note from {{ organisation }}", in each language
#   discreet_preheader  default: "Your latest email from {{ organisation }}", in each language
#   sensitive_words     more words `check` looks for, on top of the bundled list
Privacy = Literal["standard", "discreet"]
NeutralText = Annotated[OneLine, AfterValidator(_not_blank)]
SensitiveWords = Annotated[list[OneLine], AfterValidator(_words)]


class PrivacySettings:
    """What CampaignSpec answers about discreet emails, from its keys above."""

    if TYPE_CHECKING:  # CampaignSpec's fields (pydantic would take these for its own)
        privacy: Privacy
        discreet_name: str | None
        discreet_subject: str | None
        discreet_preheader: str | None
        sensitive_words: list[str]

    @property
    def discreet(self) -> bool:
        return self.privacy == "discreet"

    @property
    def sensitive(self) -> tuple[str, ...]:
        """The bundled sensitive words and the campaign's own."""
        return tuple(dict.fromkeys((*bundled_sensitive_words(), *self.sensitive_words)))

    def sensitive_words_in(self, text: str) -> list[str]:
        """The sensitive words `text` holds (see find_words)."""
        return find_words(text, self.sensitive)


@cache
def bundled_sensitive_words() -> tuple[str, ...]:
    """The bundled list (campaigns/authoring/sensitive-words.txt): one word or phrase a
    line, `#` comments."""
    text = resources.files(__package__).joinpath(SENSITIVE_WORDS_FILE).read_text("utf-8")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return tuple(dict.fromkeys(line for line in lines if line))


def _pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    if not words:
        return None
    # Longest first, so "sleep disorder" is named rather than "sleep"; whole words,
    # whitespace inside a phrase matching any run of it.
    alternatives = sorted(
        (r"\s+".join(map(re.escape, w.split())) for w in words), key=len, reverse=True
    )
    return re.compile(rf"(?<!\w)(?:{'|'.join(alternatives)})(?!\w)", re.IGNORECASE)


_PATTERNS: dict[tuple[str, ...], re.Pattern[str] | None] = {}


def _compiled(words: tuple[str, ...]) -> re.Pattern[str] | None:
    if words not in _PATTERNS:
        _PATTERNS[words] = _pattern(words)
    return _PATTERNS[words]


def find_words(text: str, words: tuple[str, ...]) -> list[str]:
    """The words of `words` that `text` holds, whole-word and case-insensitive, as written
    in `text`, each once, in order."""
    pattern = _compiled(words)
    if pattern is None:
        return []
    found = (" ".join(m.group(0).split()) for m in pattern.finditer(text))
    return list(dict.fromkeys(found))


def without_words(text: str, words: tuple[str, ...]) -> str:
    """`text` with every word of `words` left out (and the spaces and dashes around it)."""
    pattern = _compiled(words)
    if pattern is not None:
        text = pattern.sub(" ", text)
    return " ".join(text.split()).strip(" -&,.:;/|")


def fill_organisation(text: str, name: str) -> str:
    """A neutral text with `{{ organisation }}` written out (the name is text, not a template)."""
    return ORGANISATION.sub(lambda _: name, text)
