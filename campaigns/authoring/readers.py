"""Read an article file (.txt, .md, .html) into an Article: the reader is chosen by extension.

Plain text (text_article) is read in the style of a page copied out of a browser, site
chrome dropped; Markdown (markdown_article) keeps each block's source text; HTML
(html_article) is reduced to its main content by trafilatura first. Nothing here touches
the network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from campaigns.authoring.article import Article
from campaigns.authoring.bounded import ARTICLE_LIMIT, read_bounded
from campaigns.authoring.html_article import parse_html
from campaigns.authoring.markdown_article import parse_markdown
from campaigns.authoring.text_article import parse_text
from campaigns.errors import InputError


def read_article(
    path: Path | str,
    *,
    title: str | None = None,
    url: str | None = None,
    max_size: int = ARTICLE_LIMIT,
) -> Article:
    """Read an article file, choosing the reader by its extension (.txt, .md, .html).

    `url` is the article's public address: a Markdown post's site paths join it. A file
    over `max_size` bytes, or one that is not a regular file, is refused before it is read.
    """
    source = str(path)
    file = Path(path)
    parser = _PARSERS.get(file.suffix.lower())
    raw = read_bounded(
        path,
        limit=max_size,
        noun="an article file",
        hint="raise the limit with --max-size, like --max-size 5MB",
    )
    if parser is None:
        kind = repr(file.suffix) if file.suffix else "a file without an extension"
        raise InputError(f"cannot read {kind} as an article: use .txt, .md or .html", source=source)
    if parser is parse_markdown:
        return parse_markdown(_decode(raw, source), source=source, title=title, url=url)
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


_PARSERS: dict[str, Callable[..., Article]] = {
    ".txt": parse_text,
    ".text": parse_text,
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".html": parse_html,
    ".htm": parse_html,
}
