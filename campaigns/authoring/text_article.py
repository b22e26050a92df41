"""Plain text read in the style of a page copied out of a browser (the clinic's article).

Paragraphs are separated by blank lines, headings are short standalone lines, and site
chrome ("Skip to content", share buttons, cookie notices, menu lines) mixed in is dropped.
Above the first paragraph a section label ("Blog"), the byline and the date line go too
(the article keeps them as author and date). A signature after a closing line ("Warm
regards,") or in the byline's name is never a heading. Lines without bullets that are
clearly a list become a Markdown list.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Set as AbstractSet

from campaigns.authoring.article import (
    BULLET,
    Article,
    Section,
    finish_article,
    gather_sections,
    is_short,
    require_text,
)
from campaigns.authoring.chrome import (
    about_line,
    is_chrome,
    is_chrome_header,
    is_closing,
    is_menu_line,
    is_nav_word,
    is_reading_time,
)

_NUMBERED = re.compile(r"^(\d{1,2})[.)]\s+(\S.*)$")
_END_PUNCTUATION = ".!;:,…"
_CLOSERS = "\"'”’)]»"


def is_heading_like(line: str) -> bool:
    """A short standalone line without end punctuation (a question mark is fine)."""
    line = line.strip()
    if not line or not is_short(line) or BULLET.match(line):
        return False
    if not any(c.isalpha() for c in line):
        return False
    last = line.rstrip(_CLOSERS)[-1:] or line[-1]
    return last not in _END_PUNCTUATION


def _numbered_heading(line: str) -> str | None:
    """`1. Sleep hygiene` -> `Sleep hygiene` when the line is heading-like once unnumbered."""
    match = _NUMBERED.match(line.strip())
    if match and is_heading_like(match.group(2)):
        return match.group(2).strip()
    return None


def parse_text(text: str, *, source: str, title: str | None = None) -> Article:
    """Plain text: blank-line paragraphs, short standalone lines as headings, chrome dropped."""
    require_text(text, source)
    blocks = _drop_chrome(_text_blocks(text))
    blocks, author, date = _drop_page_head(blocks)
    doc_title, blocks = _take_title(blocks)
    sections = _text_sections(blocks, _signatures(blocks, author))
    return finish_article(
        sections, source=source, title=title, doc_title=doc_title, author=author, date=date
    )


def _drop_page_head(
    blocks: list[list[str]],
) -> tuple[list[list[str]], str | None, str | None]:
    """Before the first paragraph: section labels, byline and date lines go; the byline's
    name and the date are kept for the summary."""
    author = date = None
    out: list[list[str]] = []
    for index, block in enumerate(blocks):
        if not all(is_short(line) for line in block):  # the first paragraph: the head ends
            return out + blocks[index:], author, date
        kept = []
        for line in block:
            about = about_line(line)
            if about is not None:
                author, date = author or about[0], date or about[1]
            elif not (is_nav_word(line) or is_reading_time(line)):
                kept.append(line)
        if kept:
            out.append(kept)
    return out, author, date


def _signatures(blocks: list[list[str]], author: str | None) -> set[int]:
    """Blocks that sign the article off: never a heading."""
    name = (author or "").split(",")[0].strip().lower()
    found = set()
    for index, block in enumerate(blocks):
        if len(block) != 1 or not is_heading_like(block[0]):
            continue
        line = block[0].lstrip("—–- ").split(",")[0].strip().lower()
        after_closing = index > 0 and is_closing(blocks[index - 1][-1])
        if after_closing or (name and line == name) or block[0].startswith(("—", "–")):
            found.add(index)
    return found


def _text_blocks(text: str) -> list[list[str]]:
    """Runs of non-blank lines, each line stripped."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.strip()
        if line:
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _is_prose_block(block: list[str]) -> bool:
    return len(block) > 1 or not is_heading_like(block[0])


def _drop_chrome(blocks: list[list[str]]) -> list[list[str]]:
    """Remove chrome lines, and the link titles under a "Related posts"-style header."""
    out: list[list[str]] = []
    in_links = False
    for index, block in enumerate(blocks):
        kept: list[str] = []
        for line in block:
            if is_chrome_header(line):
                in_links = True
            elif is_chrome(line) or is_menu_line(line):
                continue
            elif in_links and is_short(line):
                # The last short line right before a paragraph is a heading, not a link title.
                following = blocks[index + 1] if index + 1 < len(blocks) else None
                if len(block) == 1 and following is not None and _is_prose_block(following):
                    in_links = False
                    kept.append(line)
            else:
                in_links = False
                kept.append(line)
        if kept:
            out.append(kept)
    return out


def _take_title(blocks: list[list[str]]) -> tuple[str | None, list[list[str]]]:
    """A first line that stands alone, looks like a heading and is followed by prose."""
    if len(blocks) >= 2 and len(blocks[0]) == 1:
        first = blocks[0][0]
        if is_heading_like(first) and not _NUMBERED.match(first) and _is_prose_block(blocks[1]):
            return first, blocks[1:]
    return None, blocks


def _text_sections(
    blocks: list[list[str]], signatures: AbstractSet[int] = frozenset()
) -> list[Section]:
    """Decide which blocks are headings, then gather the rest under them."""
    numbered = _numbered_headings(blocks)

    def heading_like(position: int) -> bool:
        return position not in signatures and _is_single_heading_like(blocks[position])

    items: list[tuple[str, str]] = []  # ("heading", text) or ("block", markdown)
    index = 0
    while index < len(blocks):
        block = blocks[index]
        if index in numbered:
            items.append(("heading", _numbered_heading(block[0]) or block[0]))
            index += 1
            continue
        if not heading_like(index):
            items.extend(("block", md) for md in _block_markdown(block))
            index += 1
            continue
        run = [block[0]]
        while (
            index + len(run) < len(blocks)
            and (index + len(run)) not in numbered
            and heading_like(index + len(run))
        ):
            run.append(blocks[index + len(run)][0])
        has_body = index + len(run) < len(blocks) and (index + len(run)) not in numbered
        if len(run) >= 2:
            # A run of bare short lines is a list written without bullets, never headings.
            items.append(("block", _markdown_list(run)))
        elif has_body and not numbered:
            items.append(("heading", run[0]))
        else:
            items.append(("block", run[0]))
        index += len(run)
    return gather_sections(items)


def _is_single_heading_like(block: list[str]) -> bool:
    return len(block) == 1 and is_heading_like(block[0])


def _numbered_headings(blocks: list[list[str]]) -> set[int]:
    """Indexes of "1. ..." lines that head a body, when the article numbers its headings."""
    found = set()
    for index, block in enumerate(blocks):
        if len(block) != 1 or _numbered_heading(block[0]) is None:
            continue
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        if following is not None and not (
            len(following) == 1 and _numbered_heading(following[0]) is not None
        ):
            found.add(index)
    # One numbered line is a list item or a date; numbered headings come at least in pairs.
    return found if len(found) >= 2 else set()


def _block_markdown(block: list[str]) -> list[str]:
    """A block of lines as Markdown: a paragraph, a list, or a lead-in line and its list."""
    if len(block) == 1:
        return [block[0]]
    if all(BULLET.match(line) for line in block):
        return [_markdown_list(block)]
    if BULLET.match(block[0]) and all(
        BULLET.match(line) or not line[:1].isupper() for line in block
    ):
        return [_markdown_list(_join_continuations(block))]
    lead, rest = block[0], block[1:]
    if lead.rstrip().endswith(":") and (
        all(BULLET.match(line) for line in rest) or (len(rest) >= 2 and _looks_like_list(rest))
    ):
        return [lead, _markdown_list(rest)]
    if _looks_like_list(block):
        return [_markdown_list(block)]
    return [" ".join(block)]  # a paragraph hard-wrapped over several lines


def _looks_like_list(lines: list[str]) -> bool:
    """Short lines that each start afresh (not a paragraph wrapped at a fixed width)."""
    if len(lines) < 2 or not all(is_short(line) for line in lines):
        return False
    for line, following in itertools.pairwise(lines):
        ends_open = line.rstrip(_CLOSERS)[-1:] not in ".!?…" and not is_heading_like(line)
        if line.endswith(",") or (ends_open and following[:1].islower()):
            return False
        if following[:1].islower() and not BULLET.match(following):
            return False
    return True


def _join_continuations(lines: list[str]) -> list[str]:
    items: list[str] = []
    for line in lines:
        if BULLET.match(line) or not items:
            items.append(line)
        else:
            items[-1] += " " + line
    return items


def _markdown_list(lines: list[str]) -> str:
    """Lines as a Markdown list: numbered lines keep their numbers, the rest get "- "."""
    out = []
    for line in lines:
        numbered = re.match(r"^(\d{1,3})[.)]\s+(.*)$", line)
        if numbered:
            out.append(f"{numbered.group(1)}. {numbered.group(2)}")
        else:
            out.append("- " + BULLET.sub("", line, count=1))
    return "\n".join(out)
