"""Compile a campaign's steps once per version; personalise them per contact with Jinja only.

Compile (once per step, cached by campaign version + layout hash):

    step Markdown -> HTML (markdown-it) -> templates/email.mjml.j2 -> MJML -> mjml-python
    -> premailer (CSS inlined, @media kept) -> a Jinja template that still holds the
    per-contact placeholders; the same step -> templates/email.txt.j2 -> a text template.

Staff may write `{{ first_name }}`, `{{ first_name | default("there") }}` or
`{% if first_name %}...{% endif %}` in a step's subject, preheader, CTA label and body.
Markdown, MJML and premailer would each mangle such a tag (premailer URL-encodes it
inside href), so every tag is swapped for an opaque alphanumeric token first and put
back after premailer. A tag is one whole `{{ ... }}` or `{% ... %}` on one line;
everything else, including a stray `{{`, `{%` or `{#` in the article, is literal text
and is escaped so that Jinja prints it as written. In Markdown, `\\{{ x }}` (a
backslash first) shows `{{ x }}` as typed.

Personalise (per contact): four renders of precompiled templates, nothing else. The
only variables are first_name ("" when unknown), unsubscribe_url and preferences_url;
a contact's data is a value, never template source.

Batch form (per step, at compile time): when the HTML and text use the variables only
as plain values, each such expression becomes a substitution tag in one shared copy
of the content, and a contact's values come from a few tiny renders. A provider can
then send one body for many contacts (SendGrid personalizations with substitutions).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import cssutils
import mjml
import premailer
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateSyntaxError,
    Undefined,
    meta,
    nodes,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

import templates
from campaigns.authoring.spec import Campaign, Colors, Step
from campaigns.errors import InputError, NotFoundError
from campaigns.rendering.tokens import (
    PLACEHOLDER_PUBLIC_URL,  # used when no public URL is configured
)
from senders.base import BatchForm, Message, TaggedContent

__all__ = [
    "PLACEHOLDER_PUBLIC_URL",
    "SAMPLE",
    "VARIABLES",
    "CompiledCampaign",
    "CompiledStep",
    "Palette",
    "Recipient",
    "Rendered",
    "campaign_category",
    "clear_cache",
    "compile_campaign",
    "contrast_ratio",
    "layout_environment",
    "markdown_html",
    "markdown_text",
    "palette",
    "render_sample",
    "sample_links",
]

VARIABLES = frozenset({"first_name", "unsubscribe_url", "preferences_url"})
FONT_STACK = "-apple-system, BlinkMacSystemFont, Segoe UI, Helvetica, Arial, sans-serif"
WCAG_AA = 4.5
_DOCTYPE = "<!doctype html>\n"

log = logging.getLogger("dripmail.render")

# cssutils reports every Outlook-only property (mso-*) MJML writes as an error.
cssutils.log.setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class Recipient:
    """Who a step is personalised for."""

    email: str
    first_name: str | None = None
    timezone: str = "UTC"


SAMPLE = Recipient("sample.patient@example.com", "Sam", "America/New_York")


@dataclass(frozen=True, slots=True)
class Rendered:
    """One personalised email."""

    subject: str
    preheader: str | None
    html: str
    text: str


# --------------------------------------------------------------------------- placeholders

# A placeholder is one whole `{{ ... }}` or `{% ... %}` on one line with no other
# delimiter inside it; any other brace is article text and shows as written.
_TAG = re.compile(
    r"""
    (?<!\\)                                  # `\{{` is Markdown for a literal brace
    (?: \{\{ (?!\{) (?:(?!\{[{%#]).)*? \}\}     # {{ expression }}; in `{{{ x }}}` the inner one
      | \{% (?:(?!\{[{%#]).)*? %\}              # {% statement %}
    )
    """,
    re.VERBOSE,
)
_STATEMENT = re.compile(r"^\{%[-+]?\s*(\w+)")
_STATEMENTS = frozenset({"if", "elif", "else", "endif"})
_URL_ATTRIBUTE = re.compile(r'((?:href|src)=")([^"]*)(")')


class _Tokens:
    """Opaque alphanumeric stand-ins for Jinja tags while text goes through the pipeline.

    Letters and digits mean nothing to Markdown, MJML, lxml or premailer, so a token
    comes out exactly as it went in, wherever it lands (text, attribute, URL).
    """

    def __init__(self, seed: str) -> None:
        salt = 0
        while True:  # a prefix that the content cannot contain, so no text is mistaken for one
            nonce = hashlib.sha256(f"{salt}:{seed}".encode()).hexdigest()[:10]
            self.prefix = f"DMX{nonce}N"
            if self.prefix not in seed:
                break
            salt += 1
        self._pattern = re.compile(re.escape(self.prefix) + r"\d+X")
        self._literal = re.compile(r"\{(?=[{%#]|" + re.escape(self.prefix) + ")")
        self.tags: dict[str, str] = {}
        self._by_tag: dict[str, str] = {}

    def token(self, tag: str) -> str:
        """The token for one Jinja tag (the same tag always gets the same token)."""
        if tag not in self._by_tag:
            token = f"{self.prefix}{len(self.tags)}X"
            self.tags[token] = tag
            self._by_tag[tag] = token
        return self._by_tag[tag]

    def protect(self, text: str) -> str:
        """Replace every Jinja tag in `text` with its token."""
        return _TAG.sub(lambda m: self.token(m.group(0)), text)

    def in_url(self, url: str) -> str:
        """Make each `{{ ... }}` inside a URL (not at its start) URL-encode its value.

        A first name in a query string must not end it at a space or `&`; a tag at
        the start is a whole URL (`{{ unsubscribe_url }}`) and is left alone.
        """

        def encode(match: re.Match[str]) -> str:
            tag = self.tags[match.group(0)]
            if match.start() == 0 or not tag.startswith("{{"):
                return match.group(0)
            expression = tag[2:-2].strip("-+ \t")
            return self.token(f"{{{{ ({expression}) | urlencode }}}}")

        return self._pattern.sub(encode, url)

    def source(self, text: str) -> str:
        """Jinja source for `text`: literal delimiters escaped, then tokens back to tags."""
        # `{` starts a Jinja delimiter only before `{`, `%` or `#`; a `{` right before a
        # token would join the restored tag's own `{{`, so it is escaped too.
        escaped = self._literal.sub('{{ "{" }}', text)
        return self._pattern.sub(lambda m: self.tags[m.group(0)], escaped)


# ------------------------------------------------------------------------------ markdown

_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    "table"
)
_MD_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def _with_heading(markdown: str, subject: str) -> str:
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


# ------------------------------------------------------------------------------- colours


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _luminance(color: str) -> float:
    """WCAG 2.1 relative luminance of `#rrggbb`."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2.1 contrast ratio of two `#rrggbb` colours (1 to 21)."""
    light, dark = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _mix(color: str, other: str, share: float) -> str:
    """`color` with `share` of `other` blended in."""
    a = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    b = [int(other[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * share):02x}" for x, y in zip(a, b, strict=True))


@dataclass(frozen=True)
class Palette:
    """Every colour the layout uses; `pairs()` lists each text colour with its background."""

    text: str
    muted: str  # footer and progress text
    primary: str  # header band, links, button
    button_text: str  # on primary
    background: str  # around the card and behind the footer
    surface: str = "#ffffff"  # the card the step is written on

    def pairs(self) -> list[tuple[str, str, str]]:
        """(field, text colour, background colour) for every text the layout writes."""
        return [
            ("brand.colors.text", self.text, self.surface),
            ("brand.colors.primary", self.primary, self.surface),
            ("brand.colors.primary", self.primary, self.background),
            ("brand.colors.button_text", self.button_text, self.primary),
            ("brand.colors.text", self.muted, self.surface),
            ("brand.colors.background", self.muted, self.background),
        ]


def palette(colors: Colors) -> Palette:
    """The layout's colours from the brand's; the muted grey is the lightest that stays AA."""
    surface = "#ffffff"
    muted = colors.text
    for share in (0.35, 0.3, 0.25, 0.2, 0.15, 0.1):
        candidate = _mix(colors.text, surface, share)
        worst = min(contrast_ratio(candidate, bg) for bg in (surface, colors.background))
        if worst >= WCAG_AA:
            muted = candidate
            break
    return Palette(
        text=colors.text,
        muted=muted,
        primary=colors.primary,
        button_text=colors.button_text,
        background=colors.background,
        surface=surface,
    )


def _checked_palette(campaign: Campaign) -> Palette:
    colours = palette(campaign.spec.brand.colors)
    for field, foreground, background in colours.pairs():
        ratio = contrast_ratio(foreground, background)
        if ratio < WCAG_AA:
            raise InputError(
                f"text {foreground} on {background} has a contrast of {ratio:.1f}:1; "
                f"WCAG 2.1 AA needs {WCAG_AA}:1 (pick a darker or lighter colour)",
                source=_campaign_file(campaign),
                field=field,
            )
    return colours


# ----------------------------------------------------------------------------- templates


def _default(value: Any, default_value: str = "", boolean: bool = True) -> Any:
    """Jinja's `default`, but an empty first name counts as missing too."""
    if isinstance(value, Undefined) or (boolean and not value):
        return default_value
    return value


@lru_cache(maxsize=1)
def _contact_env() -> Environment:
    # Sandboxed because a published version's steps come from the database too;
    # printing a plain variable costs the same as in an ordinary Environment.
    env = ImmutableSandboxedEnvironment(
        autoescape=True,  # the text parts switch it off with {% autoescape false %}
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.globals.clear()  # only VARIABLES exist: no range(), lipsum(), dict() ...
    env.filters["default"] = env.filters["d"] = _default
    del env.filters["safe"]  # `{{ first_name | safe }}` would put a contact's HTML in the email
    return env


@lru_cache(maxsize=1)
def layout_environment() -> Environment:
    """The compile-time Jinja environment for templates/ (autoescape on except *.txt.j2)."""
    return Environment(
        loader=FileSystemLoader(templates.DIRECTORY),
        autoescape=lambda name: name is not None and not name.endswith(".txt.j2"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _campaign_file(campaign: Campaign) -> str:
    return str(Path(campaign.origin) / "campaign.yaml") if campaign.origin else "campaign.yaml"


def _step_file(campaign: Campaign, step: Step) -> str:
    return str(Path(campaign.origin) / step.file) if campaign.origin else step.file


def _line_of(text: str, needle: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    return None


def _check_staff_text(
    text: str, field: str | None, tokens: _Tokens, campaign: Campaign, step: Step
) -> None:
    """Reject a broken tag or an unknown variable in staff text, naming file, line, field."""
    source = _step_file(campaign, step)
    file_text = campaign.files.get(step.file, "")

    def error(message: str, needle: str) -> InputError:
        return InputError(message, source=source, line=_line_of(file_text, needle), field=field)

    for tag in _TAG.findall(text):
        statement = _STATEMENT.match(tag)
        if statement and statement.group(1) not in _STATEMENTS:
            raise error(
                f"{tag} is not supported in an email: use {{% if %}} ... {{% endif %}}, "
                "and braces that are not a placeholder show as written",
                tag,
            )
    try:
        tree = _contact_env().parse(tokens.source(tokens.protect(text)))
        _contact_env().compile(tree)  # an unknown filter is found here, not by parse()
    except TemplateSyntaxError as exc:
        # Escaping adds no line breaks, so the error's line is a line of `text`.
        lines = text.splitlines() or [""]
        raise error(
            f"placeholder error: {exc.message}", lines[min(exc.lineno, len(lines)) - 1].strip()
        ) from None
    unknown = sorted(meta.find_undeclared_variables(tree) - VARIABLES)
    if unknown:
        name = unknown[0]
        tag = next((t for t in _TAG.findall(text) if re.search(rf"\b{name}\b", t)), name)
        raise error(
            f"unknown placeholder {name!r} in {tag}; "
            f"the variables are {', '.join(sorted(VARIABLES))}",
            tag,
        )


def _step_source(subject: str, preheader: str | None, html: str, text: str) -> str:
    """One template whose blocks are the four parts, so a contact needs one context, not four."""
    parts = [("subject", subject, False), ("html", html, True), ("text", text, False)]
    if preheader is not None:
        parts.append(("preheader", preheader, False))
    return "".join(
        f"{{% block {name} %}}"
        + (part if escape else f"{{% autoescape false %}}{part}{{% endautoescape %}}")
        + "{% endblock %}"
        for name, part, escape in parts
    )


_concat = "".join


# ---------------------------------------------------------------------------- batch form

# What a per-contact expression may be for its step to have a batch form: a variable,
# a constant, `default` with constant arguments, or `urlencode` (which the compiler
# puts on a name inside a link). Anything else, `{% if first_name %}` above all, makes
# the content's shape differ per contact, so the step goes one rendered email at a time.
_PLAIN_FILTERS = frozenset({"default", "d", "urlencode"})


def _plain(expr: nodes.Node) -> bool:
    """Whether `expr` is a plain per-contact value (see _PLAIN_FILTERS)."""
    if isinstance(expr, nodes.Const):
        return True
    if isinstance(expr, nodes.Name):
        return expr.name in VARIABLES
    if isinstance(expr, nodes.Filter):
        return (
            expr.name in _PLAIN_FILTERS
            and expr.node is not None
            and _plain(expr.node)
            and all(isinstance(arg, nodes.Const) for arg in expr.args)
            and all(isinstance(kwarg.value, nodes.Const) for kwarg in expr.kwargs)
            and expr.dyn_args is None
            and expr.dyn_kwargs is None
        )
    return False


_Part = str | tuple[nodes.Expr, bool]  # literal text, or (expression, autoescaped)


def _flatten(body: list[nodes.Node], autoescape: bool, out: list[_Part]) -> bool:
    """A block as literal text and plain expressions, in order; False if it has anything else."""
    for node in body:
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if isinstance(child, nodes.TemplateData):
                    out.append(child.data)  # written as it is, escaping or not
                elif _plain(child):
                    out.append((child, autoescape))
                else:
                    return False
        elif isinstance(node, nodes.Scope):
            if not _flatten(node.body, autoescape, out):
                return False
        elif isinstance(node, nodes.ScopedEvalContextModifier):  # {% autoescape false %}
            options = {option.key: option.value for option in node.options}
            setting = options.pop("autoescape", None)
            if options or not isinstance(setting, nodes.Const):
                return False
            if not _flatten(node.body, bool(setting.value), out):
                return False
        else:
            return False
    return True


class _Batch:
    """A step's tagged content, and the template whose blocks give one contact's tag values.

    Every distinct (expression, escaping) gets one tag `-<marker>h<n>-` (HTML, the value
    escaped) or `-<marker>t<n>-` (text, raw): SendGrid applies one value per key to
    all content, so a value escaped for HTML cannot serve the text part. The marker
    holds a nonce absent from the step's literal text, so no text is mistaken for a
    tag; the closing `-` keeps `h1` from matching the start of `h10`. Letters, digits
    and `-` survive every place a tag lands (text, attribute, URL) unchanged. A value
    could still hold the marker (a contact's name is theirs to choose): BatchForm.clashes
    finds that and such a message goes rendered in full.
    """

    def __init__(self, parts: dict[str, list[_Part]], key: str, seed: str) -> None:
        literal = seed + _concat(p for ps in parts.values() for p in ps if isinstance(p, str))
        salt = 0
        while True:
            self.marker = "dm" + hashlib.sha256(f"{salt}:{literal}".encode()).hexdigest()[:12]
            if self.marker not in literal:
                break
            salt += 1
        # One block per distinct (expression, escaping), in order of first use.
        slots: dict[tuple[str, bool], tuple[nodes.Expr, bool]] = {}
        for ps in parts.values():
            for part in ps:
                if not isinstance(part, str):
                    slots.setdefault((repr(part[0]), part[1]), part)
        values = _values_template(list(slots.values()))
        fills: dict[tuple[str, bool], str] = {}  # what goes in the content for each
        self._slots: list[tuple[str, Callable[[Any], Any]]] = []  # (tag, its block)
        for number, (slot, (expr, escape)) in enumerate(slots.items()):
            block = values.blocks[f"v{number}"]
            if isinstance(expr, nodes.Name) or any(expr.find_all(nodes.Name)):
                fills[slot] = tag = f"-{self.marker}{'h' if escape else 't'}{number}-"
                self._slots.append((tag, block))
            else:  # a constant, like `{{ "{" }}` for a literal brace: its text
                fills[slot] = _concat(block(values.new_context({}, shared=True)))

        def content(name: str) -> str:
            return _concat(
                p if isinstance(p, str) else fills[repr(p[0]), p[1]] for p in parts[name]
            )

        self.content = TaggedContent(key, content("html"), content("text"), self.marker)
        self._new_context = values.new_context

    def form(self, variables: dict[str, str]) -> BatchForm:
        """One contact's value for each tag."""
        context = self._new_context(variables, shared=True)
        return BatchForm(self.content, {tag: _concat(block(context)) for tag, block in self._slots})


def _values_template(expressions: list[tuple[nodes.Expr, bool]]) -> Template:
    """A template with one block `v<n>` per expression, escaping as where it was found.

    Compiled from the step's own expression nodes, so each value is exactly what the
    full render writes in that place (same filters, same escaping, same sandbox).
    """
    env = _contact_env()
    body: list[nodes.Node] = []
    for number, (expr, escape) in enumerate(expressions):
        output: list[nodes.Node] = [nodes.Output([expr])]
        if not escape:
            off = nodes.Keyword("autoescape", nodes.Const(False))
            output = [nodes.ScopedEvalContextModifier([off], output)]
        body.append(nodes.Block(f"v{number}", output, False, False))
    code = env.compile(nodes.Template(body))
    return env.template_class.from_code(env, code, env.make_globals(None))


def _batch(source: str, key: str, seed: str) -> _Batch | None:
    """The step's batch form, or None when its HTML or text is more than plain values."""
    blocks = {block.name: block for block in _contact_env().parse(source).find_all(nodes.Block)}
    parts: dict[str, list[_Part]] = {"html": [], "text": []}
    for name, out in parts.items():
        if not _flatten(blocks[name].body, True, out):
            return None
    return _Batch(parts, key, seed)


# -------------------------------------------------------------------------------- compile


class CompiledStep:
    """One step's frozen subject, preheader, HTML and text, as blocks of one Jinja template.

    `tagged` is the step's batch form (None when it has none): see _Batch.
    """

    __slots__ = ("_batch", "_blocks", "_new_context", "file", "key", "position", "total")

    def __init__(
        self,
        *,
        key: str,
        file: str,
        position: int,
        total: int,
        template: Template,
        batch: _Batch | None = None,
    ):
        self.key = key
        self.file = file
        self.position = position
        self.total = total
        self._new_context = template.new_context
        blocks = template.blocks
        self._blocks = (blocks["subject"], blocks.get("preheader"), blocks["html"], blocks["text"])
        self._batch = batch

    def __repr__(self) -> str:
        return f"CompiledStep({self.key!r}, {self.position} of {self.total})"

    @property
    def tagged(self) -> TaggedContent | None:
        return self._batch.content if self._batch is not None else None

    def personalise(
        self, recipient: Recipient, *, unsubscribe_url: str, preferences_url: str
    ) -> Rendered:
        """Render this step for one contact: Jinja renders of precompiled templates only."""
        # shared=True: the environment has no globals to merge into the context.
        context = self._new_context(
            _variables(recipient, unsubscribe_url, preferences_url), shared=True
        )
        subject, preheader, html, text = self._blocks
        return Rendered(
            _concat(subject(context)),
            _concat(preheader(context)) if preheader is not None else None,
            _concat(html(context)),
            _concat(text(context)),
        )

    def batch_form(
        self, recipient: Recipient, *, unsubscribe_url: str, preferences_url: str
    ) -> BatchForm | None:
        """The contact's values for the step's tagged content; None when the step has none."""
        if self._batch is None:
            return None
        return self._batch.form(_variables(recipient, unsubscribe_url, preferences_url))

    def drop_batch_form(self) -> None:
        """Send this step rendered in full only (its batch form failed the compile check)."""
        self._batch = None


def _variables(recipient: Recipient, unsubscribe_url: str, preferences_url: str) -> dict[str, str]:
    return {
        "first_name": recipient.first_name or "",
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
    }


class CompiledCampaign:
    """A campaign version with every step compiled, ready to personalise per contact."""

    def __init__(self, campaign: Campaign, steps: dict[str, CompiledStep]) -> None:
        self.campaign = campaign
        self.steps = steps  # in step order

    def __repr__(self) -> str:
        return f"CompiledCampaign({self.campaign.name!r}, version={self.campaign.version!r})"

    def step(self, step_key: str) -> CompiledStep:
        try:
            return self.steps[step_key]
        except KeyError:
            raise NotFoundError(
                f"campaign {self.campaign.name!r} has no step {step_key!r}"
            ) from None

    def message(
        self,
        step_key: str,
        recipient: Recipient,
        *,
        delivery_id: str,
        unsubscribe_url: str,
        unsubscribe_mailto: str,
        preferences_url: str,
        date: datetime | None,
        message_id: str | None = None,
        is_test: bool = False,
        batch_form: bool = True,
    ) -> Message:
        """The personalised step as a Message with its list and identity headers.

        `batch_form=False` leaves out the step's batch form (a sender that sends one
        message per request has no use for it, and it costs a few renders).
        """
        spec = self.campaign.spec
        step = self.step(step_key)
        rendered = step.personalise(
            recipient, unsubscribe_url=unsubscribe_url, preferences_url=preferences_url
        )
        domain = spec.from_.address.rpartition("@")[2]
        if not unsubscribe_mailto.startswith("mailto:"):
            unsubscribe_mailto = f"mailto:{unsubscribe_mailto}"
        headers = {
            "Message-ID": message_id
            or f"<dripmail.{_atom(delivery_id)}.{self.campaign.version}@{domain}>",
            # RFC 2369 list of URIs; RFC 8058 one-click needs the https one and the Post header.
            "List-Unsubscribe": f"<{unsubscribe_url}>, <{unsubscribe_mailto}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        if is_test:
            headers["X-Dripmail-Test"] = "yes"
        return Message(
            delivery_id=delivery_id,
            from_name=spec.from_.name,
            from_address=spec.from_.address,
            to_address=recipient.email,
            to_name=recipient.first_name or None,
            subject=f"[TEST] {rendered.subject}" if is_test else rendered.subject,
            preheader=rendered.preheader,
            html=rendered.html,
            text=rendered.text,
            reply_to=spec.reply_to,
            headers=headers,
            date=date,
            categories=(campaign_category(self.campaign.name), f"s-{_short_hash(step_key)}"),
            is_test=is_test,
            batch=step.batch_form(
                recipient, unsubscribe_url=unsubscribe_url, preferences_url=preferences_url
            )
            if batch_form
            else None,
        )


def campaign_category(name: str) -> str:
    """The opaque id a provider sees for a campaign (its name may be about health)."""
    return f"c-{_short_hash(name)}"


@lru_cache(maxsize=1024)  # per message: a few campaign and step names, again and again
def _short_hash(value: str) -> str:
    """An opaque id: providers see this, never a campaign or step name about health."""
    return hashlib.sha256(value.encode()).hexdigest()[:10]


def _atom(value: str) -> str:
    # The left part of a Message-ID must be an RFC 5322 dot-atom.
    return re.sub(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]", "-", str(value)).strip(".") or "x"


def _inline_css(html: str) -> str:
    """premailer with no network, media queries and classes kept, and the doctype put back."""
    inlined = premailer.transform(
        html,
        allow_network=False,
        keep_style_tags=True,  # the @media rule that stacks columns lives in a style tag
        remove_classes=False,  # ... and targets MJML's column classes
        strip_important=False,  # MJML's media rules need their !important
        disable_validation=True,
        # premailer copies CSS width/height onto attributes and overwrites the pixel
        # width MJML gave an image (Outlook sizes images by it) with "100%".
        disable_basic_attributes=["width", "height"],
        cssutils_logging_level=logging.CRITICAL,
    )
    # premailer serialises through lxml and drops the doctype (standards mode needs it).
    if not inlined.lstrip().lower().startswith("<!doctype"):
        inlined = _DOCTYPE + inlined
    return inlined.rstrip() + "\n"


def _short_lines(html: str, limit: int = 500) -> str:
    """Break long lines at a space between attributes, where a newline means the same.

    premailer writes the body on one line of many kilobytes; with lines under 998
    characters (RFC 5322 2.1.1) and ASCII only, the part needs no transfer encoding.
    """
    lines = []
    for line in html.split("\n"):
        if len(line) <= limit:
            lines.append(line)
            continue
        out: list[str] = []
        since, in_tag, quote = 0, False, ""
        for char in line:
            if quote:
                quote = "" if char == quote else quote
            elif in_tag:
                if char in "\"'":
                    quote = char
                elif char == ">":
                    in_tag = False
                elif char == " " and since >= limit:
                    out.append("\n")
                    since = 0
                    continue
            elif char == "<":
                in_tag = True
            out.append(char)
            since += 1
        lines.append("".join(out))
    return "\n".join(lines)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _layout_values(
    campaign: Campaign, step: Step, tokens: _Tokens, colours: Palette
) -> dict[str, Any]:
    """What the layouts get: brand values as text, staff text and per-contact values as tokens."""
    spec = campaign.spec
    brand, links = spec.brand, spec.links
    return {
        "language": spec.language,
        "subject": tokens.protect(step.subject),
        "preheader": tokens.protect(step.preheader) if step.preheader else None,
        "organisation": brand.organisation,
        "logo_url": brand.logo_url,
        "website": links.website,
        "position": step.position,
        "total": len(campaign.steps),
        "cta_label": tokens.protect(step.cta) if step.cta else None,
        "cta_url": links.cta_url,
        "postal_lines": _lines(brand.postal_address),
        "disclaimer": brand.disclaimer,
        "unsubscribe_url": tokens.token("{{ unsubscribe_url }}"),
        "preferences_url": tokens.token("{{ preferences_url }}"),
        "font_stack": FONT_STACK,
        "c": colours,
    }


def _compile_step(campaign: Campaign, step: Step, colours: Palette) -> CompiledStep:
    # Seeded with every text that reaches the layout, so no text can contain a token.
    tokens = _Tokens(campaign.files.get("campaign.yaml", "") + campaign.files.get(step.file, ""))
    for text, field in (
        (step.subject, "subject"),
        (step.preheader or "", "preheader"),
        (step.cta or "", "cta"),
        (step.body, None),
    ):
        _check_staff_text(text, field, tokens, campaign, step)

    values = _layout_values(campaign, step, tokens, colours)
    body = _with_heading(tokens.protect(step.body), values["subject"])
    env = layout_environment()
    mjml_source = env.get_template("email.mjml.j2").render(
        values, body_html=Markup(markdown_html(body))
    )
    html = _inline_css(mjml.mjml2html(mjml_source, fonts={}))
    html = _URL_ATTRIBUTE.sub(lambda m: m.group(1) + tokens.in_url(m.group(2)) + m.group(3), html)
    # Non-ASCII as character references: the same page, and quoted-printable
    # encoding of an all-ASCII part per message is a fraction of the cost.
    html = _short_lines(html.encode("ascii", "xmlcharrefreplace").decode("ascii"))
    text = env.get_template("email.txt.j2").render(
        values, body_text=markdown_text(body, tokens.in_url)
    )
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"

    source = _step_source(
        tokens.source(values["subject"]),
        tokens.source(values["preheader"]) if values["preheader"] else None,
        tokens.source(html),
        tokens.source(text),
    )
    compiled = CompiledStep(
        key=step.key,
        file=step.file,
        position=step.position,
        total=values["total"],
        template=_contact_env().from_string(source),
        batch=_batch(
            source,
            key=f"{campaign.version}:{templates.digest()}:{step.key}",
            seed=campaign.files.get("campaign.yaml", "") + campaign.files.get(step.file, ""),
        ),
    )
    _try_render(compiled, campaign, step)
    return compiled


def _try_render(compiled: CompiledStep, campaign: Campaign, step: Step) -> None:
    """Render once with and once without a first name: errors surface now, not per contact.

    The batch form must give the very same HTML and text; if it ever did not, the step
    goes rendered in full rather than risk a different email.
    """
    for first_name in ("Sam", ""):
        recipient = Recipient("check@example.com", first_name)
        links = {
            "unsubscribe_url": f"{PLACEHOLDER_PUBLIC_URL}/u/check",
            "preferences_url": f"{PLACEHOLDER_PUBLIC_URL}/p/check",
        }
        try:
            rendered = compiled.personalise(recipient, **links)
            form = compiled.batch_form(recipient, **links)
        except Exception as exc:  # a staff expression can raise anything; name the file
            raise InputError(
                f"placeholder fails when first_name is {first_name!r}: {exc}",
                source=_step_file(campaign, step),
            ) from None
        if form is not None and form.render() != (rendered.html, rendered.text):
            log.warning("step %s: the batch form differs from the render; not used", step.key)
            compiled.drop_batch_form()


_CACHE: OrderedDict[tuple[str, str], CompiledCampaign] = OrderedDict()
_CACHE_SIZE = 32
_CACHE_LOCK = threading.Lock()


def compile_campaign(campaign: Campaign) -> CompiledCampaign:
    """Compile every step of `campaign`, once per campaign version and layout version."""
    key = (campaign.version, templates.digest())
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    colours = _checked_palette(campaign)
    steps = {step.key: _compile_step(campaign, step, colours) for step in campaign.steps}
    compiled = CompiledCampaign(campaign, steps)
    with _CACHE_LOCK:
        compiled = _CACHE.setdefault(key, compiled)  # another thread may have won the race
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return compiled


def clear_cache() -> None:
    """Forget every compiled campaign (the preview studio calls this after a layout edit)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def sample_links(public_url: str | None = None) -> tuple[str, str]:
    """(unsubscribe_url, preferences_url) for previews; real signed tokens come from elsewhere."""
    base = (public_url or PLACEHOLDER_PUBLIC_URL).rstrip("/")
    return f"{base}/u/sample-token", f"{base}/p/sample-token"


def render_sample(
    campaign: Campaign,
    step_key: str,
    recipient: Recipient = SAMPLE,
    *,
    public_url: str = PLACEHOLDER_PUBLIC_URL,
) -> Rendered:
    """One step personalised for a sample recipient, with placeholder unsubscribe links."""
    unsubscribe_url, preferences_url = sample_links(public_url)
    return (
        compile_campaign(campaign)
        .step(step_key)
        .personalise(recipient, unsubscribe_url=unsubscribe_url, preferences_url=preferences_url)
    )
