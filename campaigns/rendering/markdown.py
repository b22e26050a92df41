"""Step Markdown to HTML and to readable plain text (CommonMark and tables, raw HTML off)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.token import Token

__all__ = ["markdown_html", "markdown_text", "with_heading"]

_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    "table"
)
_MD_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def with_heading(markdown: str, subject: str) -> str:
    """The body with the subject as its `# ` heading on top when it has no `# ` heading."""
    if any(t.type == "heading_open" and t.tag == "h1" for t in _MD.parse(markdown)):
        return markdown
    heading = _MD_PUNCTUATION.sub(r"\\\1", subject)  # the subject is text, not Markdown
    return f"# {heading}\n\n{markdown}"


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
