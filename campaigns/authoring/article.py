"""Read an article (.txt, .md, .html) into an Article: a title and sections of Markdown blocks.

Plain text is read in the style of a page copied out of a browser (the clinic's article):
paragraphs separated by blank lines, headings as short standalone lines, and site chrome
("Skip to content", share buttons, cookie notices) mixed in, which is dropped. Markdown keeps
each block's source text; HTML is reduced to its main content by trafilatura first.
Nothing here touches the network.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

from campaigns.authoring.yamlio import load_with_lines
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

    @property
    def paragraphs(self) -> tuple[str, ...]:
        return tuple(block for section in self.sections for block in section.paragraphs)

    @property
    def words(self) -> int:
        return sum(section.words for section in self.sections)


# ---------------------------------------------------------------- files


def read_article(path: Path | str, *, title: str | None = None) -> Article:
    """Read an article file, choosing the reader by its extension (.txt, .md, .html)."""
    source = str(path)
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", source=source) from None
    except IsADirectoryError:
        raise InputError("is a folder, not an article file", source=source) from None
    except PermissionError:
        raise InputError("cannot read the file (permission denied)", source=source) from None
    parser = _PARSERS.get(file.suffix.lower())
    if parser is None:
        kind = repr(file.suffix) if file.suffix else "a file without an extension"
        raise InputError(f"cannot read {kind} as an article: use .txt, .md or .html", source=source)
    return parser(_decode(raw, source), source=source, title=title)


def _decode(raw: bytes, source: str) -> str:
    if not raw.strip():
        raise InputError("the article is empty", source=source)
    # A NUL byte never occurs in text; UTF-16 files have them too, and are refused alike.
    if b"\0" in raw:
        raise InputError("not a text file (it holds binary data)", source=source)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("not a text file (it is not UTF-8 text)", source=source) from None
    if not text.strip():
        raise InputError("the article is empty", source=source)
    return text


def _require_text(text: str, source: str) -> None:
    if not text.strip():
        raise InputError("the article is empty", source=source)


def _finish(
    sections: Iterable[Section], *, source: str, title: str | None, doc_title: str | None
) -> Article:
    kept = tuple(section for section in sections if section.paragraphs)
    if not kept:
        raise InputError(
            "no article text left after removing site navigation and other page furniture",
            source=source,
        )
    final = _one_line(title or "") or _one_line(doc_title or "") or title_from_name(source)
    return Article(title=final, sections=kept, source=source)


def _one_line(text: str) -> str:
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


# ---------------------------------------------------------------- words and chrome

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
    text = _IMAGE.sub(r"\1", markdown)
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


# Whole lines that are page furniture, not article text. Only short lines are tested, so a
# sentence that merely mentions "home" or "menu" is never dropped.
_CHROME = re.compile(
    r"""^(?:
      skip\ to\ (?:the\ )?(?:main\ )?(?:content|navigation)|skip\ navigation
    | share(?:\ this)?(?:\ (?:post|article|page|story))?(?:\ (?:on|via|with)\ [\w ]+)?
    | facebook|twitter|x|linkedin|pinterest|instagram|youtube|whatsapp|reddit|tweet|pin\ it
    | e-?mail(?:\ this)?(?:\ (?:post|article|page))?|copy\ link|×
    | print(?:\ this)?(?:\ (?:post|article|page))?|print\ friendly|print\ or\ pdf
    | related(?:\ (?:posts?|articles?|stories|content|reading|links|resources))?
    | you\ (?:may|might)\ also\ (?:like|enjoy|be\ interested\ in)
    | recommended(?:\ (?:for\ you|reading|articles?|posts?))?
    | (?:recent|popular|latest|more|trending)\ (?:posts|articles|stories|news)|read\ next
    | today\ on\ .{1,60}
    | (?:subscribe|sign\ up)(?:\ (?:to|for))?\ (?:our|the)\ (?:free\ )?
      (?:newsletter|mailing\ list|blog)\b.*
    | (?:join|get)\ our\ (?:free\ )?(?:newsletter|mailing\ list)\b.*|newsletter|subscribe(?:\ now)?
    | accept(?:\ all)?(?:\ cookies)?|reject(?:\ all)?(?:\ cookies)?|decline|got\ it|i\ agree
    | manage\ (?:cookies|preferences|consent)|cookie\ (?:settings|preferences|policy|notice|consent)
    | (?:main\ |open\ |close\ )?menu|toggle\ navigation|navigation|home|search|close
    | back\ to\ top|scroll\ to\ top|top\ of\ page
    | (?:previous|next)(?:\ (?:post|article|page|story))?
    | leave\ a\ (?:comment|reply)|\d*\ ?comments?
    | (?:posted|filed)\ (?:in|under|on)\ .*|tags?\s*:.*|categor(?:y|ies)\s*:.*|tagged\ .*
    | (?:©|copyright\ ©?\s*\d{4}).*|all\ rights\ reserved
    )[\s.:!»›→>|]*$""",
    re.IGNORECASE | re.VERBOSE,
)
# A cookie notice is a sentence or two, so it gets a longer allowance.
_COOKIES = re.compile(
    r"\b(?:we|this\ (?:web)?site|our\ (?:web)?site)\ uses?\ cookies\b", re.IGNORECASE | re.VERBOSE
)
# Lines that open a block of links to other pages (related posts, "Today on ..."): the short
# lines that follow them are link titles, not article text.
_CHROME_HEADER = re.compile(
    r"""^(?:related(?:\ (?:posts?|articles?|stories|content|reading|links|resources))?
    | you\ (?:may|might)\ also\ (?:like|enjoy|be\ interested\ in)
    | recommended(?:\ (?:for\ you|reading|articles?|posts?))?
    | (?:recent|popular|latest|more|trending)\ (?:posts|articles|stories|news)|read\ next
    | today\ on\ .{1,60}
    | share(?:\ this)?(?:\ (?:post|article|page|story))?
    )[\s.:!»›→>|]*$""",
    re.IGNORECASE | re.VERBOSE,
)


def _words(line: str) -> int:
    return len(line.split())


def is_chrome(line: str) -> bool:
    """True for a line of site furniture: navigation, share buttons, cookie and newsletter lines."""
    text = " ".join(plain_text(line).split())
    if not text:
        return False
    if _words(text) <= HEADING_MAX_WORDS and _CHROME.match(text):
        return True
    return _words(text) <= 60 and bool(_COOKIES.search(text))


def _is_chrome_header(line: str) -> bool:
    text = " ".join(plain_text(line).split())
    return _words(text) <= HEADING_MAX_WORDS and bool(_CHROME_HEADER.match(text))


def _is_chrome_block(block: str) -> bool:
    lines = [line for line in block.splitlines() if line.strip()]
    return bool(lines) and all(is_chrome(line) for line in lines)


# ---------------------------------------------------------------- plain text

_BULLET = re.compile(r"^(?:[-*+•·▪◦–]|\d{1,3}[.)])\s+")
_NUMBERED = re.compile(r"^(\d{1,2})[.)]\s+(\S.*)$")
_END_PUNCTUATION = ".!;:,…"
_CLOSERS = "\"'”’)]»"


def _is_short(line: str) -> bool:
    return _words(line) <= HEADING_MAX_WORDS and len(line) <= HEADING_MAX_CHARS


def is_heading_like(line: str) -> bool:
    """A short standalone line without end punctuation (a question mark is fine)."""
    line = line.strip()
    if not line or not _is_short(line) or _BULLET.match(line):
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
    _require_text(text, source)
    blocks = _drop_chrome(_text_blocks(text))
    doc_title, blocks = _take_title(blocks)
    sections = _text_sections(blocks)
    return _finish(sections, source=source, title=title, doc_title=doc_title)


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
            if _is_chrome_header(line):
                in_links = True
            elif is_chrome(line):
                continue
            elif in_links and _is_short(line):
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


def _text_sections(blocks: list[list[str]]) -> list[Section]:
    """Decide which blocks are headings, then gather the rest under them."""
    numbered = _numbered_headings(blocks)
    items: list[tuple[str, str]] = []  # ("heading", text) or ("block", markdown)
    index = 0
    while index < len(blocks):
        block = blocks[index]
        if index in numbered:
            items.append(("heading", _numbered_heading(block[0]) or block[0]))
            index += 1
            continue
        if not _is_single_heading_like(block):
            items.extend(("block", md) for md in _block_markdown(block))
            index += 1
            continue
        run = [block[0]]
        while (
            index + len(run) < len(blocks)
            and (index + len(run)) not in numbered
            and _is_single_heading_like(blocks[index + len(run)])
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
    return _gather(items)


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
    if all(_BULLET.match(line) for line in block):
        return [_markdown_list(block)]
    if _BULLET.match(block[0]) and all(
        _BULLET.match(line) or not line[:1].isupper() for line in block
    ):
        return [_markdown_list(_join_continuations(block))]
    lead, rest = block[0], block[1:]
    if lead.rstrip().endswith(":") and (
        all(_BULLET.match(line) for line in rest) or (len(rest) >= 2 and _looks_like_list(rest))
    ):
        return [lead, _markdown_list(rest)]
    if _looks_like_list(block):
        return [_markdown_list(block)]
    return [" ".join(block)]  # a paragraph hard-wrapped over several lines


def _looks_like_list(lines: list[str]) -> bool:
    """Short lines that each start afresh (not a paragraph wrapped at a fixed width)."""
    if len(lines) < 2 or not all(_is_short(line) for line in lines):
        return False
    for line, following in itertools.pairwise(lines):
        ends_open = line.rstrip(_CLOSERS)[-1:] not in ".!?…" and not is_heading_like(line)
        if line.endswith(",") or (ends_open and following[:1].islower()):
            return False
        if following[:1].islower() and not _BULLET.match(following):
            return False
    return True


def _join_continuations(lines: list[str]) -> list[str]:
    items: list[str] = []
    for line in lines:
        if _BULLET.match(line) or not items:
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
            out.append("- " + _BULLET.sub("", line, count=1))
    return "\n".join(out)


def _gather(items: list[tuple[str, str]]) -> list[Section]:
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


# ---------------------------------------------------------------- Markdown


def parse_markdown(text: str, *, source: str, title: str | None = None) -> Article:
    """Markdown: front matter `title:`, a leading `#` as the title, `#`/`##` sections."""
    _require_text(text, source)
    doc_title, body = _front_matter(text, source)
    return _markdown_article(body, source=source, title=title, doc_title=doc_title)


def _front_matter(text: str, source: str) -> tuple[str | None, str]:
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
    found = (meta or {}).get("title")
    return (str(found) if found else None), body


def _markdown_article(
    body: str, *, source: str, title: str | None, doc_title: str | None
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
            skipping = _is_chrome_header(text) or is_chrome(text)
            if not skipping:
                items.append(("heading", text))
            continue
        if skipping and (level or _is_list(text) or _is_short(plain_text(text))):
            continue
        skipping = False
        if _is_chrome_header(text):
            skipping = True
            continue
        if level:
            items.append(("block", "#" * level + " " + text))
        elif not _is_chrome_block(text):
            items.append(("block", text))
    return _finish(_gather(items), source=source, title=title, doc_title=doc_title)


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
    return _one_line("".join(parts))


def _is_list(block: str) -> bool:
    lines = [line for line in block.splitlines() if line.strip()]
    return bool(lines) and bool(_BULLET.match(lines[0].lstrip()))


# ---------------------------------------------------------------- HTML


def parse_html(html: str, *, source: str, title: str | None = None) -> Article:
    """A saved web page: main content by trafilatura (as Markdown, headings kept)."""
    import trafilatura  # imported here: it is slow to import and only HTML needs it

    _require_text(html, source)
    options = {
        "output_format": "markdown",
        "include_links": True,
        "include_images": True,
        "include_formatting": True,  # without it, h2 headings come out as plain paragraphs
        "include_tables": True,
        "include_comments": False,
        "deduplicate": False,
        "with_metadata": False,
    }
    # Precision first: it leaves out more of the navigation, share and related blocks.
    markdown = trafilatura.extract(html, favor_precision=True, **options)
    if not markdown:
        markdown = trafilatura.extract(html, **options)
    if not markdown or not markdown.strip():
        raise InputError(
            "no article text found in the page (is it a saved web page?)", source=source
        )
    metadata = trafilatura.extract_metadata(html)
    doc_title = metadata.title if metadata is not None and metadata.title else None
    return _markdown_article(markdown, source=source, title=title, doc_title=doc_title)


_PARSERS: dict[str, Callable[..., Article]] = {
    ".txt": parse_text,
    ".text": parse_text,
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".html": parse_html,
    ".htm": parse_html,
}
