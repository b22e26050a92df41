"""Step Markdown to HTML and to readable plain text (CommonMark and tables, raw HTML off)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

__all__ = [
    "IMAGE_WIDTH",
    "greets",
    "markdown_html",
    "markdown_text",
    "with_greeting",
    "with_heading",
]

_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    "table"
)
_MD_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# The layout's content column: 600px less 24px of padding each side. Desktop Outlook
# ignores max-width and shows an image without a width attribute at its full size.
IMAGE_WIDTH = 552
# A step that already opens with a greeting (as split wrote them before the layout did).
_GREETING_WORDS = re.compile(
    r"^(hi|hello|hey|dear|greetings|good (morning|afternoon|evening)|welcome)\b", re.IGNORECASE
)
_LEADING_STATEMENTS = re.compile(r"^(?:\{%.*?%\}\s*)+")
_default_image = _MD.renderer.rules["image"]


def _image(renderer: Any, tokens: list[Token], index: int, options: Any, env: Any) -> str:
    """markdown-it's image (alt text from the label), with the column's width."""
    tokens[index].attrSet("width", str(IMAGE_WIDTH))
    return _default_image(tokens, index, options, env)


_MD.add_render_rule("image", _image)


def with_heading(markdown: str, subject: str) -> str:
    """The body with the subject as its `# ` heading on top when it has no `# ` heading."""
    if any(t.type == "heading_open" and t.tag == "h1" for t in _MD.parse(markdown)):
        return markdown
    heading = _MD_PUNCTUATION.sub(r"\\\1", subject)  # the subject is text, not Markdown
    return f"# {heading}\n\n{markdown}"


def _opening(tokens: list[Token]) -> int | None:
    """The index of the body's first paragraph's inline token when only a `# ` heading
    comes before it, else None."""
    index = 0
    if tokens and tokens[0].type == "heading_open" and tokens[0].tag == "h1":
        index = 3
    if index + 1 < len(tokens) and tokens[index].type == "paragraph_open":
        return index + 1
    return None


def greets(markdown: str) -> bool:
    """Whether the body already opens (after its heading) with a short greeting line."""
    tokens = _MD.parse(markdown)
    index = _opening(tokens)
    if index is None:
        return False
    # `{% if first_name %}Hi {{ first_name }},{% else %}Hello,{% endif %}` greets too.
    line = _LEADING_STATEMENTS.sub("", tokens[index].content.strip())
    if "\n" in line or len(line) > 80:
        return False
    return bool(_GREETING_WORDS.match(line)) or ("first_name" in line and line.endswith(","))


def with_greeting(markdown: str, greeting: str) -> str:
    """The body with `greeting` (text, not Markdown) as a paragraph after its `# ` heading."""
    line = _MD_PUNCTUATION.sub(r"\\\1", greeting)
    tokens = _MD.parse(markdown)
    heading = tokens[0] if tokens and tokens[0].type == "heading_open" else None
    if heading is None or heading.tag != "h1" or heading.map is None:
        return f"{line}\n\n{markdown}"
    lines = markdown.split("\n")
    end = heading.map[1]
    return "\n".join([*lines[:end], "", line, "", *lines[end:]])


def markdown_html(markdown: str) -> str:
    """Step Markdown -> HTML (CommonMark + tables; raw HTML off, so `<` shows as typed)."""
    return _MD.render(markdown)


@dataclass
class _OpenList:
    number: int | None  # the next item's number; None in a bullet list
    tight: bool  # items without blank lines between them
    items: int = 0

    def marker(self) -> str:
        if self.number is None:
            return "- "
        self.number += 1
        return f"{self.number - 1}. "


def markdown_text(markdown: str, url: Callable[[str], str] = str) -> str:
    """Step Markdown -> readable plain text, not hard-wrapped.

    Paragraphs are separated by blank lines, list items start with "- " (or "1. "),
    links read "text (url)", images become their alt text. `url` maps each link
    target before it is written (the compiler makes placeholders URL-safe with it).
    """
    out: list[str] = []
    lists: list[_OpenList] = []
    item_first: str | None = None  # the marker still to be written for the open list item
    quote = 0
    rows: list[list[str]] = []
    cells: list[str] = []

    def indent() -> str:
        return "> " * quote + "   " * max(len(lists) - 1, 0)

    def emit(text: str, first: str, rest: str, blank: bool) -> None:
        if out and blank:
            out.append("")
        lines = text.split("\n")
        out.append((first + lines[0]).rstrip())
        out.extend((rest + line).rstrip() for line in lines[1:])

    tokens = _MD.parse(markdown)
    for index, token in enumerate(tokens):
        kind = token.type
        if kind in ("bullet_list_open", "ordered_list_open"):
            start = int(token.attrGet("start") or 1) if kind == "ordered_list_open" else None
            tight = index + 2 < len(tokens) and tokens[index + 2].hidden
            lists.append(_OpenList(start, tight))
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open":
            item_first = lists[-1].marker()
        elif kind == "blockquote_open":
            quote += 1
        elif kind == "blockquote_close":
            quote -= 1
        elif kind == "inline" and tokens[index - 1].type in ("th_open", "td_open"):
            cells.append(_inline_text(token, url))
        elif kind == "tr_close":
            rows.append(cells)
            cells = []
        elif kind == "table_close":
            emit("\n".join(" | ".join(row) for row in rows), indent(), indent(), True)
            rows = []
        elif kind == "inline":
            text = _inline_text(token, url)
            if lists and item_first is not None:
                current = lists[-1]
                # Items of a tight list sit on consecutive lines; the list itself is a block.
                blank = not current.tight or (current.items == 0 and len(lists) == 1)
                current.items += 1
                pad = indent()
                emit(text, pad + item_first, pad + " " * len(item_first), blank)
                item_first = None
            else:
                pad = indent() + ("   " if lists else "")
                emit(text, pad, pad, True)
        elif kind in ("fence", "code_block"):
            emit(token.content.rstrip("\n"), indent() + "    ", indent() + "    ", True)
        elif kind == "hr":
            emit("----", indent(), indent(), True)
    return "\n".join(out)


def _inline_text(token: Token, url: Callable[[str], str]) -> str:
    """One inline run (paragraph, heading, list item, cell) as plain text."""
    parts: list[str] = []
    links: list[tuple[int, str]] = []
    for child in token.children or []:
        kind = child.type
        if kind in ("text", "code_inline"):
            parts.append(child.content)
        elif kind == "softbreak":
            parts.append(" ")  # not hard-wrapped: the reader's client wraps
        elif kind == "hardbreak":
            parts.append("\n")
        elif kind == "image":
            parts.append("".join(c.content for c in child.children or []))
        elif kind == "link_open":
            links.append((len(parts), str(child.attrGet("href") or "")))
        elif kind == "link_close" and links:
            start, href = links.pop()
            label = "".join(parts[start:]).strip()
            if href and label not in (href, href.removeprefix("mailto:")):
                parts.append(f" ({url(href)})")
    return "".join(parts)
