"""A saved web page: its main content by trafilatura, as Markdown, then read as Markdown.

Nothing here touches the network.
"""

from __future__ import annotations

from campaigns.authoring.article import Article, require_text
from campaigns.authoring.markdown_article import markdown_article
from campaigns.errors import InputError


def parse_html(html: str, *, source: str, title: str | None = None) -> Article:
    """A saved web page: main content by trafilatura (as Markdown, headings kept)."""
    import trafilatura  # imported here: it is slow to import and only HTML needs it

    require_text(html, source)
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
    return markdown_article(
        markdown,
        source=source,
        title=title,
        doc_title=doc_title,
        author=(metadata.author or None) if metadata is not None else None,
        date=(metadata.date or None) if metadata is not None else None,
    )
