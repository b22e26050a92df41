"""A Markdown article: front matter `title:`, a leading `#` as the title, `#`/`##` sections.

Each block keeps its Markdown source text; sections of related links are dropped. A post
with front matter is a static-site generator's: its template tags are read first
(campaigns.authoring.liquid); without front matter only link and image targets are.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

from campaigns.authoring.article import (
    BULLET,
    Article,
    finish_article,
    gather_sections,
    is_short,
    one_line,
    plain_text,
    require_text,
)
from campaigns.authoring.chrome import is_chrome, is_chrome_block, is_chrome_header
from campaigns.authoring.liquid import resolve_liquid, take_notes
from campaigns.authoring.yamlio import load_with_lines
from campaigns.errors import InputError


def parse_markdown(
    text: str, *, source: str, title: str | None = None, url: str | None = None
) -> Article:
    """Markdown: front matter `title:`, a leading `#` as the title, `#`/`##` sections.

    `url` is the article's public address: site paths in links and images join it.
    """
    require_text(text, source)
    meta, body = _front_matter(text, source)
    resolved = resolve_liquid(body, url, links_only=meta is None)
    about = meta or {}
    return markdown_article(
        resolved.text,
        source=source,
        title=title,
        doc_title=_text(about.get("title")),
        dropped=tuple(resolved.dropped),
        author=_text(about.get("author")),
        date=_text(about.get("date")),
    )


def _text(value: object) -> str | None:
    """A front matter value as one line (a date or date-time as its day)."""
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.isoformat()
    text = one_line(str(value)) if value is not None else ""
    stamp = re.match(r"^(\d{4}-\d{2}-\d{2})[ T]\d", text)  # a post's date-time: its day
    return (stamp.group(1) if stamp else text) or None


def _front_matter(text: str, source: str) -> tuple[dict | None, str]:
    """The front matter's keys (None when there is none) and the body after it."""
    text = text.lstrip("\ufeff")
    if not re.match(r"^---[ \t]*\r?\n", text):
        return None, text
    end = re.search(r"^(?:---|\.\.\.)[ \t]*$", text[3:], flags=re.MULTILINE)
    if end is None:
        raise InputError("front matter opened with --- is never closed", source=source, line=1)
    header = text[3 : 3 + end.start()].lstrip("\r\n")
    body = text[3 + end.end() :].lstrip("\r\n")
    try:
        meta, _ = load_with_lines(header, source)
    except InputError as exc:  # its line counts from the first line after the ---
        raise InputError(exc.message, source=source, line=(exc.line or 0) + 1) from None
    if meta is not None and not isinstance(meta, dict):
        raise InputError("front matter must be key: value lines", source=source, line=2)
    return meta or {}, body


def markdown_article(
    body: str, *, source: str, title: str | None, doc_title: str | None, **about: Any
) -> Article:
    blocks = _markdown_blocks(body)
    if blocks and blocks[0][0] == 1 and doc_title is None:
        doc_title = blocks[0][1]
    if blocks and blocks[0][0] == 1:
        blocks = blocks[1:]  # the leading h1 is the article's title, not a section
    levels = [level for level, _ in blocks if level]
    section_level = max(2, min(levels)) if levels else 2
    items: list[tuple[str, str]] = []
    skipping = False  # inside a "Related articles" section or the list after such a line
    for level, text in blocks:
        if level and level <= section_level:
            skipping = is_chrome_header(text) or is_chrome(text)
            if not skipping:
                items.append(("heading", text))
            continue
        if skipping and (level or _is_list(text) or is_short(plain_text(text))):
            continue
        skipping = False
        if is_chrome_header(text):
            skipping = True
            continue
        if level:
            items.append(("block", "#" * level + " " + text))
        elif not is_chrome_block(text):
            items.append(("block", text))
    return finish_article(
        gather_sections(items), source=source, title=title, doc_title=doc_title, **about
    )


_MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def _markdown_blocks(body: str) -> list[tuple[int, str]]:
    """Top-level blocks: (heading level, plain heading text) or (0, the block's source)."""
    lines = body.splitlines()
    tokens = _MD.parse(body)
    out: list[tuple[int, str]] = []
    for index, token in enumerate(tokens):
        if token.level != 0 or token.nesting == -1 or token.map is None:
            continue
        if token.type == "heading_open":
            text = _inline_text(tokens[index + 1])
            if text:
                out.append((int(token.tag[1]), text))
            continue
        if token.type == "hr":
            continue  # a visual separator means nothing once the text is split into emails
        source = "\n".join(lines[token.map[0] : token.map[1]]).strip("\n").rstrip()
        if token.type == "html_block" and source.lstrip().startswith("<!--"):
            continue
        source = take_notes(source)  # a link left out leaves a note line for `check`
        if source.strip():
            out.append((0, source))
    return out


def _inline_text(token: Token) -> str:
    parts = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(child.content)
    return one_line("".join(parts))


def _is_list(block: str) -> bool:
    lines = [line for line in block.splitlines() if line.strip()]
    return bool(lines) and bool(BULLET.match(lines[0].lstrip()))
