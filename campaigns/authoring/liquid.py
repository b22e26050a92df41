"""Site-generator template tags in an article (Jekyll/Liquid, Hugo, Eleventy), and the
article's own braces written so that a step file (a Jinja template) prints them as typed.

An article is never template source. `resolve_liquid` reads the tags a static-site post
carries: a link or image target whose path can be read (`{{ site.baseurl }}/x`,
`{{ "/x/" | url }}`, `{{ '/x' | relative_url }}`) becomes an absolute URL against the
article's public address; without one (or when the path cannot be read) the link is
dropped, its text kept, and a note line left for `dripmail check`. `{% highlight %}`
becomes a code block, `{% raw %}` text stays as written, paired Hugo shortcodes keep
their text, a figure becomes an image, and a tag with no readable text (an include, an
embed) is dropped and reported. Code blocks and code spans are never touched.

`literal_braces` is the other half: whatever `{{` and `{%` remain are article text, and
the step file wraps them in `{% raw %}...{% endraw %}`, which the renderer prints as is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

# A note line: a Markdown link reference definition nobody uses renders as nothing.
NOTE_PREFIX = "[//]: # (dripmail: "
NOTE_LINE = re.compile(r"^\[//\]: # \(dripmail: (?P<text>.*)\)\s*$", re.MULTILINE)
# Marks where a link was dropped, until its block is known (a private-use character).
_MARK = "\ue010"
_GONE = "\ue011"  # where a dropped tag stood
_STASH = re.compile("\ue000(\\d+)\ue001")

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_RAW_MARKER = re.compile(r"\{%-?\s*(?:end)?raw\s*-?%\}")
_RAW = re.compile(r"\{%-?\s*raw\s*-?%\}(.*?)\{%-?\s*endraw\s*-?%\}", re.DOTALL)
_COMMENT = re.compile(r"\{%-?\s*comment\s*-?%\}.*?\{%-?\s*endcomment\s*-?%\}", re.DOTALL)
_HIGHLIGHT = re.compile(
    r"\{%-?\s*highlight\s+(\w[\w+#-]*)[^%]*%\}\n?(.*?)\n?\{%-?\s*endhighlight\s*-?%\}"
    r"|\{\{<\s*highlight\s+(\w[\w+#-]*)[^>]*>\}\}\n?(.*?)\n?\{\{<\s*/highlight\s*>\}\}",
    re.DOTALL,
)
_FIGURE = re.compile(r"\{\{[<%]\s*figure\s+(.*?)\s*[>%]\}\}")
_ATTRIBUTE = re.compile(r"""(\w+)\s*=\s*(?:"([^"]*)"|'([^']*)'|(\S+))""")
_PAIRED = re.compile(r"\{\{([<%])\s*/?\s*[\w-]+\s*[^{}]*?[>%]\}\}")
_LINK = re.compile(r"(!?)\[([^\]\n]*)\]\(\s*([^()\s]*(?:\{[{%][^\n]*?[}%]\}[^()\s]*)+)\s*\)")
# A tag may run over lines, never over a blank line (an unclosed `{{` takes no paragraph).
_INSIDE = r"(?:(?!\n[ \t]*\n).)*?"
_TAG = re.compile(
    rf"\{{\{{[<%]{_INSIDE}[>%]\}}\}}|\{{%{_INSIDE}%\}}|\{{\{{{_INSIDE}\}}\}}", re.DOTALL
)
_STRING = re.compile(r"""^\s*(?:"([^"]*)"|'([^']*)')\s*(.*)$""")
_SITE_PREFIX = re.compile(
    r"\{\{-?\s*(?:site\.url|site\.baseurl|site\.base_url|baseurl|base_url)\s*-?\}\}"
)
# Filters that turn a site path into a link (Eleventy `url`, Jekyll `relative_url` ...).
_PATH_FILTERS = re.compile(
    r"^(?:\|\s*(?:url|relative_url|absolute_url|prepend:\s*site\.(?:base_?url|url))\s*)+$"
)


@dataclass
class LiquidResult:
    """The article's Markdown without template tags, and what was lost on the way."""

    text: str
    dropped: list[str] = field(default_factory=list)  # tags with no readable text


def resolve_liquid(
    markdown: str, base_url: str | None = None, *, links_only: bool = False
) -> LiquidResult:
    """Read a static-site post's template tags; see the module docstring.

    `links_only` (an article that is no site's post): only link and image targets are
    read; other braces are the article's text, written literally.
    """
    result = LiquidResult("")
    stash: list[str] = []

    def keep(text: str) -> str:
        stash.append(text)
        return f"\ue000{len(stash) - 1}\ue001"

    # Jekyll's {% raw %} escape is markup in a site's post, the article's text elsewhere.
    unraw: Callable[[str], str] = (lambda code: code) if links_only else _no_raw_markers
    text = _stash_fences(markdown, lambda code: keep(unraw(code)))
    if not links_only:
        text = _RAW.sub(lambda m: keep(m.group(1)), text)
    text = _CODE_SPAN.sub(lambda m: keep(unraw(m.group(0))), text)
    if not links_only:
        text = _COMMENT.sub("", text)
        text = _HIGHLIGHT.sub(lambda m: keep(_fence(m)), text)
    text = _FIGURE.sub(lambda m: _figure(m.group(1), base_url), text)
    text = _LINK.sub(lambda m: _link(m, base_url), text)
    text = _references(text, base_url)
    if links_only:
        return LiquidResult(_unstash(text, stash))
    text = _PAIRED.sub(lambda m: _paired(m.group(0), result), text)
    text = _TAG.sub(lambda m: _output(m.group(0), result), text)
    # Where a tag stood: mid-sentence one space is left, before punctuation none.
    text = re.sub(f"[ \t]*{_GONE}+[ \t]*(?=[.,;:!?]|$)", "", text, flags=re.MULTILINE)
    text = re.sub(f"(?<=\\S)[ \t]*{_GONE}+[ \t]*(?=\\S)", " ", text)
    text = re.sub(f"^[ \t]*{_GONE}+[ \t]*", "", text, flags=re.MULTILINE).replace(_GONE, "")
    result.text = _unstash(text, stash)
    return result


def _no_raw_markers(code: str) -> str:
    return _RAW_MARKER.sub("", code)


def _unstash(text: str, stash: list[str]) -> str:
    while _STASH.search(text):
        text = _STASH.sub(lambda m: stash[int(m.group(1))], text)
    return text


def _stash_fences(markdown: str, keep: Callable[[str], str]) -> str:
    """Fenced code blocks into the stash, where no tag is read."""
    out: list[str] = []
    block: list[str] = []
    fence = ""
    for line in markdown.splitlines(keepends=True):
        if not fence:
            opening = _FENCE.match(line)
            if opening:
                fence, block = opening.group(1), [line]
            else:
                out.append(line)
            continue
        block.append(line)
        closing = line.strip()
        if closing and set(closing) == {fence[0]} and len(closing) >= len(fence):
            out.append(keep("".join(block)))
            fence = ""
    if fence:
        out.append(keep("".join(block)))
    return "".join(out)


def _fence(match: re.Match[str]) -> str:
    language = match.group(1) or match.group(3)
    code = _RAW_MARKER.sub("", match.group(2) if match.group(1) else match.group(4))
    return f"```{language}\n{code.strip(chr(10))}\n```"


def site_path(target: str) -> str | None:
    """The path or URL a Liquid link target stands for, or None when it cannot be read."""
    target = _SITE_PREFIX.sub("", target.strip())

    def literal(match: re.Match[str]) -> str:
        inner = match.group(0)[2:-2].strip("-+ \t")
        found = _STRING.match(inner)
        if found and (not found.group(3) or _PATH_FILTERS.match(found.group(3))):
            return found.group(1) if found.group(1) is not None else found.group(2)
        return match.group(0)

    target = re.sub(r"\{\{.*?\}\}", literal, target)
    if "{{" in target or "{%" in target or not target:
        return None
    return target


def absolute(target: str, base_url: str | None) -> str | None:
    """An https/http/mailto target as is; a site path joined to `base_url`, or None."""
    scheme = urlsplit(target).scheme.lower()
    if scheme in ("http", "https", "mailto", "tel"):
        return target
    if scheme or not base_url:
        return None
    return urljoin(base_url, target)


def _link(match: re.Match[str], base_url: str | None) -> str:
    bang, text, target = match.groups()
    path = site_path(target)
    url = absolute(path, base_url) if path is not None else None
    if url is not None:
        return f"{bang}[{text}]({url})"
    kind = "image" if bang else "link"
    return f"{text if not bang else ''}{_MARK}{kind}\x1f{text}{_MARK}"


_DEFINITION = re.compile(r"^ {0,3}\[([^\]\n]+)\]:[ \t]*(\S*\{[{%].*?)[ \t]*$", re.MULTILINE)


def _references(text: str, base_url: str | None) -> str:
    """`[id]: {{ site.baseurl }}/x` definitions: resolved, or gone with their links' marks."""
    unresolved: set[str] = set()

    def definition(match: re.Match[str]) -> str:
        path = site_path(match.group(2))
        url = absolute(path, base_url) if path is not None else None
        if url is not None:
            return f"[{match.group(1)}]: {url}"
        unresolved.add(match.group(1).lower())
        return ""

    text = _DEFINITION.sub(definition, text)
    if not unresolved:
        return text

    def use(match: re.Match[str]) -> str:
        bang, label, ref = match.groups()
        if (ref or label).lower() not in unresolved:
            return match.group(0)
        kind = "image" if bang else "link"
        return f"{label if not bang else ''}{_MARK}{kind}\x1f{label}{_MARK}"

    return re.sub(r"(!?)\[([^\]\n]+)\](?:\[([^\]\n]*)\])?(?![(:])", use, text)


def _figure(attributes: str, base_url: str | None) -> str:
    values = {m.group(1): next(g for g in m.groups()[1:] if g is not None) for m in
              _ATTRIBUTE.finditer(attributes)}  # fmt: skip
    alt = values.get("alt") or values.get("title") or values.get("caption") or ""
    caption = values.get("caption", "")
    path = site_path(values.get("src", ""))
    url = absolute(path, base_url) if path is not None else None
    image = f"![{alt}]({url})" if url else f"{_MARK}image\x1f{alt}{_MARK}"
    return image + (f"\n\n*{caption}*" if caption and caption != alt else "")


def _paired(tag: str, result: LiquidResult) -> str:
    """A Hugo shortcode: a paired one (`{{% note %}}...{{% /note %}}`) keeps its text."""
    name = re.match(r"\{\{[<%]\s*/?\s*([\w-]+)", tag)
    if name and name.group(1) in _CONTAINERS:
        return _GONE
    _report(result, tag)
    return _GONE


# Hugo shortcodes that wrap the author's own text (opening and closing tags are dropped).
_CONTAINERS = frozenset(
    {"note", "tip", "warning", "info", "notice", "hint", "callout", "alert", "admonition"}
    | {"details", "quote", "center", "aside", "caution", "important", "expand", "columns"}
)


def _output(tag: str, result: LiquidResult) -> str:
    """`{{ "text" }}` keeps its text; any other tag (include, embed, variable) is dropped."""
    if tag.startswith("{{") and not tag.startswith(("{{<", "{{%")):
        found = _STRING.match(tag[2:-2].strip("-+ \t"))
        if found and not found.group(3):
            return found.group(1) if found.group(1) is not None else found.group(2)
    _report(result, tag)
    return _GONE


def _report(result: LiquidResult, tag: str) -> None:
    """Each distinct tag once: split's summary names it, not every place it stood."""
    tag = " ".join(tag.split())
    if tag not in result.dropped:
        result.dropped.append(tag)


def take_notes(block: str) -> str:
    """A block's dropped-link marks -> its text, plus one note line per dropped link."""
    if _MARK not in block:
        return block
    notes: list[str] = []

    def note(match: re.Match[str]) -> str:
        kind, text = match.group(1).split("\x1f")
        shown = " ".join(text.replace("(", "").replace(")", "").split()) or "without text"
        if kind == "image":
            notes.append(
                f"{NOTE_PREFIX}the image “{shown}” was left out: its address in the article "
                "was a site template tag; add the image by hand or split again with --url, "
                "then delete this line)"
            )
        else:
            notes.append(
                f"{NOTE_PREFIX}the link on “{shown}” was left out: its address in the article "
                "was a site template tag; add the link by hand or split again with --url, "
                "then delete this line)"
            )
        return ""

    text = re.sub(f"{_MARK}(.*?){_MARK}", note, block, flags=re.DOTALL)
    text = "\n".join(line.rstrip() for line in text.strip("\n").splitlines())
    return "\n\n".join(part for part in [text.strip(), *notes] if part)


def literal_braces(text: str) -> str:
    """`text` with every `{{ ... }}` and `{% ... %}` wrapped in `{% raw %}`, so Jinja
    prints it as written (a `{% endraw %}` in the text keeps only its brace wrapped)."""

    def wrap(match: re.Match[str]) -> str:
        span = match.group(0)
        if "endraw" in span:
            return "{% raw %}" + span[:2] + "{% endraw %}" + literal_braces(span[2:])
        return "{% raw %}" + span + "{% endraw %}"

    return re.sub(r"\{[{%](?:[^\n]*?[}%]\})?", wrap, text)
