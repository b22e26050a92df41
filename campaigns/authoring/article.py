"""An article as the readers leave it: a title and sections of Markdown blocks.

Also what the readers (campaigns.authoring.readers picks one per file type) share: the
words a reader sees in a block, the short-line test, the title from a file name, and
the gathering of headings and blocks into sections.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from campaigns.errors import InputError

HEADING_MAX_WORDS = 12  # a standalone line longer than this is a one-line paragraph
HEADING_MAX_CHARS = 100


@dataclass(frozen=True)
class Section:
    """A heading and the Markdown blocks under it; the intro has no heading."""

    heading: str | None  # None only for the intro (text before the first heading)
    paragraphs: tuple[str, ...]  # Markdown blocks in order: a paragraph, a whole list, an image

    @property
    def words(self) -> int:
        return sum(word_count(block) for block in self.paragraphs)


@dataclass(frozen=True)
class Article:
    """An article read from a file: its title and sections in reading order."""

    title: str
    sections: tuple[Section, ...]
    source: str  # the file path as given, for error messages
    dropped: tuple[str, ...] = ()  # site template tags left out: no text of their own
    author: str | None = None  # from a byline or front matter, when the article has one
    date: str | None = None  # the article's date line, as written

    @property
    def paragraphs(self) -> tuple[str, ...]:
        return tuple(block for section in self.sections for block in section.paragraphs)

    @property
    def words(self) -> int:
        return sum(section.words for section in self.sections)


def require_text(text: str, source: str) -> None:
    """Refuse an article with no text at all."""
    if not text.strip():
        raise InputError("the article is empty", source=source)


def finish_article(
    sections: Iterable[Section],
    *,
    source: str,
    title: str | None,
    doc_title: str | None,
    **about: Any,
) -> Article:
    """The Article: non-empty sections, titled by `title`, the document's, or the file name."""
    kept = tuple(section for section in sections if section.paragraphs)
    if not kept:
        raise InputError(
            "no article text left after removing site navigation and other page furniture",
            source=source,
        )
    final = one_line(title or "") or one_line(doc_title or "") or title_from_name(source)
    return Article(title=final, sections=kept, source=source, **about)


def one_line(text: str) -> str:
    """`text` with every run of whitespace (line breaks included) as one space."""
    return " ".join(text.split())


_SMALL_WORDS = frozenset(
    {"a", "an", "and", "as", "at", "but", "by", "for", "from", "in", "into", "nor", "of"}
    | {"on", "or", "per", "the", "to", "via", "vs", "with"}
)


def title_from_name(source: str) -> str:
    """`ketamine-and-sleep.txt` -> `Ketamine and Sleep` (small words lower-case)."""
    words = re.split(r"[\s_\-.]+", Path(source).stem)
    words = [word for word in words if re.search(r"\w", word)]
    if not words:
        return "Untitled article"
    titled = []
    for position, word in enumerate(words):
        lower = word.lower()
        if 0 < position < len(words) - 1 and lower in _SMALL_WORDS:
            titled.append(lower)
        else:
            titled.append(word[0].upper() + word[1:])
    return " ".join(titled)


# ---------------------------------------------------------------- words

# A note line split leaves for `check` (campaigns.authoring.liquid): never a reader's words.
_NOTE = re.compile(r"^\[//\]: #.*$", re.MULTILINE)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_AUTOLINK = re.compile(r"<(?:https?://|mailto:)[^>]*>")
_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+", re.MULTILINE)
_HEADING_MARKER = re.compile(r"^\s*#{1,6}\s+", re.MULTILINE)
_BLOCKQUOTE = re.compile(r"^\s*>\s?", re.MULTILINE)
_EMPHASIS = re.compile(r"(\*\*|__|\*|_|~~|`)(?=\S)(.+?)(?<=\S)\1")


def plain_text(markdown: str) -> str:
    """The words a reader sees in a Markdown block: no link targets, markers or emphasis."""
    text = _IMAGE.sub(r"\1", _NOTE.sub("", markdown))
    text = _LINK.sub(r"\1", text)
    text = _AUTOLINK.sub("", text)
    text = _TAG.sub("", text)
    text = _HEADING_MARKER.sub("", text)
    text = _BLOCKQUOTE.sub("", text)
    text = _LIST_MARKER.sub("", text)
    for _ in range(2):  # nested emphasis such as ***word***
        text = _EMPHASIS.sub(r"\2", text)
    return text


def word_count(markdown: str) -> int:
    """Words a reader sees in a Markdown text (tokens holding a letter or digit)."""
    return sum(1 for token in plain_text(markdown).split() if any(c.isalnum() for c in token))


def line_words(line: str) -> int:
    """Words of a line as whitespace splits them (word_count counts only what a reader sees)."""
    return len(line.split())


BULLET = re.compile(r"^(?:[-*+•·▪◦–]|\d{1,3}[.)])\s+")


def is_short(line: str) -> bool:
    """Short enough to be a heading (or a link title, a list item written without a bullet)."""
    return line_words(line) <= HEADING_MAX_WORDS and len(line) <= HEADING_MAX_CHARS


def gather_sections(items: list[tuple[str, str]]) -> list[Section]:
    """Headings and blocks in order -> sections; a heading with no text under it is kept
    as bold text so no words are lost."""
    sections: list[Section] = []
    heading: str | None = None
    blocks: list[str] = []
    pending: list[str] = []  # headings that had no body of their own
    for kind, text in items:
        if kind == "heading":
            if heading is not None and not blocks:
                pending.append(f"**{heading}**")
            elif heading is not None or blocks:
                sections.append(Section(heading, tuple(blocks)))
            heading, blocks = text, list(pending)
            pending = []
            continue
        blocks.append(text)
    if heading is not None and not blocks and sections:
        last = sections.pop()
        blocks = [*last.paragraphs, *pending, f"**{heading}**"]
        heading = last.heading
    if heading is not None or blocks:
        sections.append(Section(heading, tuple(blocks)))
    return sections
